/*
 * One (connection, group) stream of sequence numbers: proto/PROTOCOL.md §6.3
 * says a group's seq rises by exactly 1 per message and every member sees
 * the same order, so a member that joined at seq S must see S+1, S+2, ...
 * with nothing skipped, repeated or reordered. The chat thread writes a
 * stream; the main thread reads `last` (LOAD) to audit the end.
 */
#include "soak.h"

void soak_stream_join(soak_stream *s, uint64_t seq)
{
    s->next = seq + 1;
    STORE(s->last, seq);
}

soak_seq soak_stream_take(soak_stream *s, uint64_t seq, uint64_t *skipped)
{
    *skipped = 0;
    if (s->next == 0)
        return SOAK_SEQ_EARLY;
    s->received++;
    if (seq == s->next) {
        s->next = seq + 1;
        STORE(s->last, seq);
        return SOAK_SEQ_NEXT;
    }
    if (seq > s->next) {
        *skipped = seq - s->next;
        s->next = seq + 1;
        STORE(s->last, seq);
        return SOAK_SEQ_GAP;
    }
    return seq + 1 == s->next ? SOAK_SEQ_DUP : SOAK_SEQ_BEHIND;
}
