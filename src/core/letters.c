/* Dead-letter reason names, as proto/PROTOCOL.md §9 spells them on the wire. */
#include "core/letters.h"

static const char *const reason_names[RC_LETTER_REASONS] = {
    [RC_LETTER_SLOW_CONSUMER] = "slow_consumer",
    [RC_LETTER_OVERLOADED] = "overloaded",
    [RC_LETTER_EXPIRED] = "expired",
    [RC_LETTER_SHUTDOWN] = "shutdown",
    [RC_LETTER_POISON] = "poison",
};

const char *rc_letter_reason_name(rc_letter_reason r)
{
    return (unsigned)r < RC_LETTER_REASONS ? reason_names[r] : "unknown";
}
