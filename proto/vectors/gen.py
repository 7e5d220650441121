#!/usr/bin/env python3
"""Generates the wire protocol v1 test vectors (proto/vectors/*.txt).

MessagePack is encoded by hand (no msgpack module needed), so every byte of
every vector is visible here. The `expect:` lines of valid vectors are derived
from the maps below through the contract's own table of fields per type
(TYPE_FIELDS, from proto/PROTOCOL.md), not from the C codec.

    python3 proto/vectors/gen.py            # rewrites the .txt files next to it
    python3 proto/vectors/gen.py --check    # exits 1 if they are out of date

The format of the files is described in proto/vectors/README.md.
"""
import os
import struct
import sys

# --------------------------------------------------------------------------
# MessagePack encoding
# --------------------------------------------------------------------------


class Map:
    """An ordered map that may repeat keys (for duplicate-key vectors)."""

    def __init__(self, *pairs):
        self.pairs = list(pairs)

    def get(self, key):
        for k, v in self.pairs:
            if k == key:
                return v
        return None


class Raw:
    """Bytes written as they are; `value` is what they mean (for expect lines)."""

    def __init__(self, data, value=None):
        self.data = data
        self.value = value


def enc(v):
    if isinstance(v, Raw):
        return v.data
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        return enc_int(v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        return enc_str(v.encode("utf-8"))
    if isinstance(v, (bytes, bytearray)):
        return enc_bin(bytes(v))
    if isinstance(v, list):
        return enc_array_header(len(v)) + b"".join(enc(x) for x in v)
    if isinstance(v, Map):
        return enc_map_header(len(v.pairs)) + b"".join(enc(k) + enc(x) for k, x in v.pairs)
    raise TypeError(v)


def enc_int(n):
    if 0 <= n < 0x80:
        return bytes([n])
    if 0 <= n <= 0xFF:
        return b"\xcc" + struct.pack(">B", n)
    if 0 <= n <= 0xFFFF:
        return b"\xcd" + struct.pack(">H", n)
    if 0 <= n <= 0xFFFFFFFF:
        return b"\xce" + struct.pack(">I", n)
    if 0 <= n <= 0xFFFFFFFFFFFFFFFF:
        return b"\xcf" + struct.pack(">Q", n)
    if -32 <= n < 0:
        return bytes([0xE0 | (n + 32)])
    if -0x80 <= n < 0:
        return b"\xd0" + struct.pack(">b", n)
    if -0x8000 <= n < 0:
        return b"\xd1" + struct.pack(">h", n)
    if -0x80000000 <= n < 0:
        return b"\xd2" + struct.pack(">i", n)
    return b"\xd3" + struct.pack(">q", n)


def enc_str(b):
    n = len(b)
    if n < 32:
        return bytes([0xA0 | n]) + b
    if n <= 0xFF:
        return b"\xd9" + struct.pack(">B", n) + b
    if n <= 0xFFFF:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def enc_bin(b):
    n = len(b)
    if n <= 0xFF:
        return b"\xc4" + struct.pack(">B", n) + b
    if n <= 0xFFFF:
        return b"\xc5" + struct.pack(">H", n) + b
    return b"\xc6" + struct.pack(">I", n) + b


def enc_array_header(n):
    if n < 16:
        return bytes([0x90 | n])
    if n <= 0xFFFF:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def enc_map_header(n):
    if n < 16:
        return bytes([0x80 | n])
    if n <= 0xFFFF:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def m(t, *pairs, rid=None):
    """A map with `t` first, then `rid` when given, then the pairs."""
    head = [("t", t)]
    if rid is not None:
        head.append(("rid", rid))
    return Map(*head, *pairs)


# --------------------------------------------------------------------------
# The contract: fields per type (proto/PROTOCOL.md), used to derive expects
# --------------------------------------------------------------------------

UINT, STR, BODY, BOOL, MSGS, USERS, GROUPS = "uint", "str", "body", "bool", "msgs", "users", "groups"

TYPE_FIELDS = {
    "hello": {"user": STR, "token": STR, "echo": BOOL},
    "join": {"g": STR, "since": UINT, "presence": BOOL, "receipts": BOOL},
    "read": {"g": STR, "seq": UINT},
    "marked": {"g": STR, "seq": UINT},
    "receipt": {"g": STR, "user": STR, "seq": UINT},
    "inbox": {"limit": UINT, "groups": GROUPS, "more": BOOL},
    "presence": {"g": STR, "users": USERS, "n": UINT},
    "typing": {"g": STR, "from": STR},
    "online": {"g": STR, "user": STR},
    "offline": {"g": STR, "user": STR},
    "leave": {"g": STR},
    "send": {"g": STR, "body": BODY, "mid": STR},
    "hist": {"g": STR, "before": UINT, "limit": UINT, "msgs": MSGS, "more": BOOL},
    "ping": {},
    "refresh": {"token": STR},
    "publish": {"g": STR, "from": STR, "body": BODY, "mid": STR},
    "replay": {"g": STR, "seq": UINT, "from": STR, "to": STR, "ts": UINT,
               "mid": STR, "body": BODY, "reason": STR},
    "welcome": {"sid": UINT, "srv": STR, "max_frame": UINT},
    "joined": {"g": STR, "seq": UINT, "online": UINT, "read": UINT},
    "synced": {"g": STR, "seq": UINT, "lost": BOOL, "more": BOOL},
    "left": {"g": STR},
    "ack": {"g": STR, "seq": UINT, "ts": UINT, "dup": BOOL},
    "msg": {"g": STR, "seq": UINT, "from": STR, "ts": UINT, "body": BODY, "mid": STR},
    "pong": {},
    "err": {"code": STR, "msg": STR},
    "bye": {"reason": STR},
    "refreshed": {"exp": UINT},
}


def pct(b):
    """Percent-encodes bytes: 0x21..0x7e except '%' stay, the rest is %XX."""
    out = []
    for c in b:
        if 0x21 <= c <= 0x7E and c != 0x25:
            out.append(chr(c))
        else:
            out.append("%%%02X" % c)
    return "".join(out)


def logical(v):
    return v.value if isinstance(v, Raw) else v


def derive_expect(mp, prefix=""):
    """key=value tokens describing what a decoder must report for map mp."""
    t = logical(mp.get("t"))
    fields = TYPE_FIELDS[t]
    out = [prefix + "t=" + t]
    for k, v in mp.pairs:
        k = logical(k)
        v = logical(v)
        if not isinstance(k, str) or k == "t":
            continue
        if k == "rid":
            out.append("%srid=%d" % (prefix, v))
            continue
        kind = fields.get(k)
        if kind is None:
            continue  # unknown to this type: ignored
        if kind == UINT:
            out.append("%s%s=%d" % (prefix, k, v))
        elif kind == STR:
            out.append("%s%s=%s" % (prefix, k, pct(v.encode("utf-8"))))
        elif kind == BOOL:
            out.append("%s%s=%d" % (prefix, k, 1 if v else 0))
        elif kind == BODY:
            is_str = isinstance(v, str)
            data = v.encode("utf-8") if is_str else bytes(v)
            out.append("%sbody=%s" % (prefix, data.hex()))
            out.append("%sbody_is_str=%d" % (prefix, 1 if is_str else 0))
        elif kind == USERS:
            out.append("%sn_users=%d" % (prefix, len(v)))
        elif kind == GROUPS:
            out.append("%sn_groups=%d" % (prefix, len(v)))
            for i, entry in enumerate(v):
                for ek, ev in entry.pairs:
                    ek, ev = logical(ek), logical(ev)
                    if ek == "g":
                        out.append("%sgroups[%d].g=%s" % (prefix, i, pct(ev.encode("utf-8"))))
                    elif ek in ("seq", "read", "unread", "ts"):
                        out.append("%sgroups[%d].%s=%d" % (prefix, i, ek, ev))
                    elif ek == "last":
                        out.extend(derive_expect(ev, "%sgroups[%d].last." % (prefix, i)))
        elif kind == MSGS:
            out.append("%sn_msgs=%d" % (prefix, len(v)))
            for i, sub in enumerate(v):
                out.extend(derive_expect(sub, "%smsgs[%d]." % (prefix, i)))
    return out


# --------------------------------------------------------------------------
# Valid vectors
# --------------------------------------------------------------------------

A64 = "a" * 64
G128 = "g" * 128
M64 = "m" * 64
U64MAX = 0xFFFFFFFFFFFFFFFF

MSG1 = m("msg", ("g", "room"), ("seq", 1), ("from", "alice"), ("ts", 1700000000000), ("body", "hi"))
MSG2 = m("msg", ("g", "room"), ("seq", 2), ("from", "bob"), ("ts", 1700000000001),
         ("body", b"\x00\x01\xff"), ("mid", "b-1"))


def nested_arrays(depth):
    """depth arrays, one inside the other, the innermost holding nil."""
    return Raw(b"\x91" * depth + b"\xc0")


VALID = [
    # ---- client -> server ----
    ("hello minimal", m("hello", ("user", "alice"))),
    ("hello with rid and token", m("hello", ("user", "alice"), ("token", "s3cret"), rid=1)),
    ("hello user 1 byte", m("hello", ("user", "a"))),
    ("hello user 64 bytes (upper bound)", m("hello", ("user", A64))),
    ("hello user 64 bytes of UTF-8 (bounds are bytes, not characters)", m("hello", ("user", "\u00e9" * 32))),
    ("hello user with a space", m("hello", ("user", "Alice Smith"))),
    ("hello empty token (0 bytes allowed)", m("hello", ("user", "alice"), ("token", ""))),
    ("hello echo false", m("hello", ("user", "alice"), ("echo", False), rid=1)),
    ("join with presence", m("join", ("g", "room"), ("presence", True), rid=2)),
    ("presence request", m("presence", ("g", "room"), rid=3)),
    ("typing request", m("typing", ("g", "room"))),
    ("join with receipts", m("join", ("g", "room"), ("receipts", True), ("presence", False), rid=2)),
    ("read request", m("read", ("g", "room"), ("seq", 41), rid=3)),
    ("read seq 0", m("read", ("g", "room"), ("seq", 0))),
    ("read seq uint64 max (the server answers E_BAD_FIELD past the last seq)", m("read", ("g", "room"), ("seq", U64MAX))),
    ("inbox request", m("inbox", rid=4)),
    ("inbox limit 1 (lower bound)", m("inbox", ("limit", 1), rid=4)),
    ("inbox limit 1000 (upper bound)", m("inbox", ("limit", 1000))),
    ("hello token 4096 bytes (upper bound)", m("hello", ("user", "alice"), ("token", "k" * 4096))),
    ("hello with a token and no user (the token names the user)", m("hello", ("token", "e30.e30.sig"), rid=1)),
    ("hello with neither user nor token (the session answers E_MISSING_FIELD)", m("hello", rid=1)),
    ("refresh", m("refresh", ("token", "e30.e30.sig"), rid=9)),
    ("refresh token 4096 bytes (upper bound)", m("refresh", ("token", "k" * 4096))),
    ("join minimal", m("join", ("g", "room"))),
    ("join with since", m("join", ("g", "room"), ("since", 41), rid=2)),
    ("join since 0", m("join", ("g", "room"), ("since", 0))),
    ("join since uint64 max", m("join", ("g", "room"), ("since", U64MAX))),
    ("join group 1 byte", m("join", ("g", "r"))),
    ("join group 128 bytes (upper bound)", m("join", ("g", G128))),
    ("leave", m("leave", ("g", "room"), rid=3)),
    ("send str body", m("send", ("g", "room"), ("body", "hello, world"), rid=4)),
    ("send bin body", m("send", ("g", "room"), ("body", b"\x00\x01\x02\xfe\xff"))),
    ("send empty bin body", m("send", ("g", "room"), ("body", b""))),
    ("send empty str body", m("send", ("g", "room"), ("body", ""))),
    ("send with mid", m("send", ("g", "room"), ("body", "hi"), ("mid", "c-0001"), rid=5)),
    ("send mid 1 byte", m("send", ("g", "room"), ("body", "hi"), ("mid", "x"))),
    ("send mid 64 bytes (upper bound)", m("send", ("g", "room"), ("body", "hi"), ("mid", M64))),
    ("send str8 body (0xd9)", m("send", ("g", "room"), ("body", "s" * 40))),
    ("send str16 body (0xda)", m("send", ("g", "room"), ("body", "S" * 300))),
    ("send bin16 body (0xc5)", m("send", ("g", "room"), ("body", bytes(range(256)) + bytes(44)))),
    ("send UTF-8 str body", m("send", ("g", "room"), ("body", "gr\u00fc\u00dfe \u2603"))),
    ("hist minimal", m("hist", ("g", "room"))),
    ("hist before and limit", m("hist", ("g", "room"), ("before", 500), ("limit", 50), rid=6)),
    ("hist limit 1 (lower bound)", m("hist", ("g", "room"), ("limit", 1))),
    ("hist limit 1000 (upper bound)", m("hist", ("g", "room"), ("limit", 1000))),
    ("hist before 0", m("hist", ("g", "room"), ("before", 0))),
    ("ping", m("ping")),
    ("ping with rid", m("ping", rid=7)),
    ("ping rid 0", m("ping", rid=0)),
    ("ping rid uint64 max", m("ping", rid=U64MAX)),
    ("replay full dead-letter record",
     m("replay", ("v", 1), ("reason", "slow_consumer"), ("g", "room"), ("seq", 9), ("from", "alice"),
       ("to", "bob"), ("ts", 1700000000000), ("mid", "c-0009"), ("body", b"payload"),
       ("attempts", 3), ("err", "outbound queue over outbound_high_bytes"), rid=8)),
    ("replay minimal record (never sequenced, no recipient, no mid)",
     m("replay", ("v", 1), ("reason", "overloaded"), ("g", "room"), ("from", "alice"),
       ("ts", 1700000000000), ("body", "hi"), ("attempts", 5), ("err", "shard queue full"))),
    ("publish as another user", m("publish", ("g", "room"), ("from", "backend"), ("body", "hi"), ("mid", "p1"), rid=9)),
    ("publish without mid, bin body", m("publish", ("g", "room"), ("from", "backend"), ("body", b"\x00\x01"))),
    # ---- server -> client ----
    ("welcome", m("welcome", ("sid", 1), ("srv", "ringcast/0.1.0"), ("max_frame", 65536), rid=1)),
    ("welcome without rid", m("welcome", ("sid", 77), ("srv", ""), ("max_frame", 16))),
    ("joined", m("joined", ("g", "room"), ("seq", 0), rid=2)),
    ("joined without rid", m("joined", ("g", "room"), ("seq", 123456))),
    ("joined with online", m("joined", ("g", "room"), ("seq", 3), ("online", 12), rid=2)),
    ("presence reply", m("presence", ("g", "room"), ("users", ["alice", "bob"]), ("n", 2), rid=8)),
    ("presence reply, nobody online", m("presence", ("g", "room"), ("users", []), ("n", 0), rid=8)),
    ("typing event", m("typing", ("g", "room"), ("from", "alice"))),
    ("online event", m("online", ("g", "room"), ("user", "bob"))),
    ("joined with read", m("joined", ("g", "room"), ("seq", 9), ("online", 1), ("read", 7), rid=2)),
    ("marked", m("marked", ("g", "room"), ("seq", 7), rid=3)),
    ("receipt event", m("receipt", ("g", "room"), ("user", "bob"), ("seq", 7))),
    ("inbox reply", m("inbox", ("groups", [
        Map(("g", "room"), ("seq", 2), ("read", 1), ("unread", 1), ("ts", 1700000000001), ("last", MSG2)),
        Map(("g", "quiet"), ("seq", 0), ("read", 0), ("unread", 0)),
    ]), rid=4)),
    ("inbox reply, cut short", m("inbox", ("groups", []), ("more", True), rid=4)),
    ("inbox reply entry with an unknown key", m("inbox", ("groups", [
        Map(("g", "room"), ("seq", 1), ("read", 0), ("unread", 1), ("future", "x"))]))),
    ("offline event", m("offline", ("g", "room"), ("user", "bob"))),
    ("synced lost false", m("synced", ("g", "room"), ("seq", 42), ("lost", False), rid=2)),
    ("synced lost true", m("synced", ("g", "room"), ("seq", 5000), ("lost", True))),
    ("synced more true (the backlog stopped at max_reply_bytes)",
     m("synced", ("g", "room"), ("seq", 5000), ("lost", False), ("more", True))),
    ("left", m("left", ("g", "room"), rid=3)),
    ("ack", m("ack", ("g", "room"), ("seq", 1), ("ts", 1700000000000), rid=5)),
    ("ack dup true", m("ack", ("g", "room"), ("seq", 1), ("ts", 1700000000000), ("dup", True), rid=9)),
    ("ack dup false", m("ack", ("g", "room"), ("seq", 2), ("ts", 1700000000002), ("dup", False))),
    ("msg str body", MSG1),
    ("msg bin body with mid", MSG2),
    ("msg seq uint64 max", m("msg", ("g", "room"), ("seq", U64MAX), ("from", "a"), ("ts", 0), ("body", b""))),
    ("hist reply with no msgs", m("hist", ("g", "room"), ("msgs", []), rid=6)),
    ("hist reply with two msgs", m("hist", ("g", "room"), ("msgs", [MSG1, MSG2]), rid=6)),
    ("hist reply cut at max_reply_bytes (more true)", m("hist", ("g", "room"), ("msgs", [MSG2]), ("more", True), rid=6)),
    ("pong", m("pong")),
    ("pong with rid", m("pong", rid=7)),
    ("err with rid", m("err", ("code", "E_NOT_MEMBER"), ("msg", "join the group before sending to it"), rid=4)),
    ("err without rid", m("err", ("code", "E_BAD_FRAME"), ("msg", "a frame length of 0 is invalid; closing"))),
    ("err empty msg", m("err", ("code", "E_INTERNAL"), ("msg", ""))),
    ("err with a code this version does not know (forward compatibility)",
     m("err", ("code", "E_SOMETHING_NEW"), ("msg", "from a newer server"))),
    ("bye", m("bye", ("reason", "server shutting down"))),
    ("bye empty reason", m("bye", ("reason", ""))),
    ("bye token_expired", m("bye", ("reason", "token_expired"))),
    ("refreshed", m("refreshed", ("exp", 1700003600), rid=9)),
    ("refreshed exp uint64 max", m("refreshed", ("exp", U64MAX))),
    # ---- forward compatibility and encoding freedom ----
    ("unknown keys are ignored",
     m("send", ("g", "room"), ("x-trace", Map(("a", 1), ("b", [1, 2, 3]))), ("body", "hi"),
       ("v2", None), ("prio", -5), ("f", 1.5), ("blob", b"\x00"))),
    ("a non-string key is ignored", Map(("t", "ping"), (1, "one"), (Raw(b"\xc4\x01t"), "bin key"))),
    ("keys of other types are ignored, whatever their value",
     m("ping", ("user", 5), ("g", b"\x00"), ("limit", 0), ("body", None), ("msgs", 3))),
    ("key order is free: t last", Map(("g", "room"), ("rid", 11), ("t", "join"))),
    ("map16 header (0xde)", Raw(b"\xde\x00\x02" + enc("t") + enc("ping") + enc("rid") + enc(12))),
    ("str8-encoded t and key (non-minimal encoding)",
     Raw(b"\x82" + b"\xd9\x01t" + b"\xd9\x04join" + b"\xd9\x01g" + b"\xd9\x04room")),
    ("uint64-encoded small rid (non-minimal encoding)", m("ping", rid=Raw(b"\xcf" + bytes(7) + b"\x05", 5))),
    ("rid as a positive int8 (0xd0): MessagePack ints are one family", m("ping", rid=Raw(b"\xd0\x05", 5))),
    ("since as a positive int64 (0xd3)", m("join", ("g", "room"), ("since", Raw(b"\xd3" + bytes(7) + b"\x07", 7)))),
    ("nesting 32 levels deep (the top map is level 1)", m("ping", ("x", nested_arrays(31)))),
    ("nesting 32 levels deep, the innermost an empty array", m("ping", ("x", Raw(b"\x91" * 30 + b"\x90")))),
    ("a NUL byte in a body is data", m("send", ("g", "room"), ("body", "a\x00b"))),
]

# A few valid vectors are Raw as a whole; give them their expects by hand.
RAW_EXPECT = {
    "map16 header (0xde)": ["t=ping", "rid=12"],
    "str8-encoded t and key (non-minimal encoding)": ["t=join", "g=room"],
}

# --------------------------------------------------------------------------
# Invalid vectors: (name, frame, error, rid or None, xfail reason or None)
# --------------------------------------------------------------------------

XF_DUP_HDR = ("codec: `t` and `rid` are read in a first pass that keeps the last "
              "occurrence and never checks for repeats")
XF_COUNT = ("codec: msgpack-c allocates the declared element count before reading "
            "any element; 2^32-1 elements is a 96 GiB request, and its failure is "
            "reported as E_INTERNAL")
XF_MSGS_ELEM = "codec: a msgs element that is not a map reports E_BAD_FRAME"
XF_REPLAY = "codec: every replay field is optional in its type table"

GOOD_SEND = [("g", "room"), ("body", "hi")]

INVALID = [
    # ---- not a map ----
    ("empty payload", Raw(b""), "E_BAD_FRAME"),
    ("array instead of a map", [], "E_BAD_FRAME"),
    ("array holding a map", [m("ping")], "E_BAD_FRAME"),
    ("positive fixint", 1, "E_BAD_FRAME"),
    ("str instead of a map", "ping", "E_BAD_FRAME"),
    ("bin instead of a map", b"\x81\xa1t\xa4ping", "E_BAD_FRAME"),
    ("nil instead of a map", None, "E_BAD_FRAME"),
    ("true instead of a map", True, "E_BAD_FRAME"),
    # ---- invalid MessagePack ----
    ("reserved byte 0xc1 alone", Raw(b"\xc1"), "E_BAD_FRAME"),
    ("reserved byte 0xc1 as a value", Raw(b"\x81\xa1t\xc1"), "E_BAD_FRAME"),
    ("reserved byte 0xc1 as a key", Raw(b"\x82\xa1t\xa4ping\xc1\x00"), "E_BAD_FRAME"),
    ("truncated: map declares 2 entries, holds 1", Raw(enc_map_header(2) + enc("t") + enc("ping")), "E_BAD_FRAME"),
    ("truncated: str shorter than its header", Raw(b"\x81\xa1t\xa4pin"), "E_BAD_FRAME"),
    ("truncated: map header only", Raw(b"\x81"), "E_BAD_FRAME"),
    ("truncated: uint64 cut short", Raw(b"\x82\xa1t\xa4ping\xa3rid\xcf\x00\x00"), "E_BAD_FRAME"),
    ("truncated: str8 length byte missing", Raw(b"\x81\xa1t\xd9"), "E_BAD_FRAME"),
    ("truncated: bin body cut short",
     Raw(enc_map_header(3) + enc("t") + enc("send") + enc("g") + enc("room") + enc("body") + b"\xc4\x05ab"),
     "E_BAD_FRAME"),
    # ---- trailing bytes ----
    ("trailing zero byte after the map", Raw(enc(m("ping")) + b"\x00"), "E_BAD_FRAME"),
    ("two maps in one frame", Raw(enc(m("ping")) + enc(m("ping"))), "E_BAD_FRAME"),
    ("trailing nil after the map", Raw(enc(m("ping", rid=1)) + b"\xc0"), "E_BAD_FRAME"),
    # ---- t ----
    ("empty map: no t", Map(), "E_MISSING_FIELD"),
    ("missing t", Map(("user", "alice")), "E_MISSING_FIELD"),
    ("missing t, rid echoed", Map(("rid", 9), ("g", "room")), "E_MISSING_FIELD", 9),
    ("t is an int", Map(("t", 1)), "E_BAD_FIELD"),
    ("t is bin", Map(("t", b"ping")), "E_BAD_FIELD"),
    ("t is nil", Map(("t", None)), "E_BAD_FIELD"),
    ("t is an array", Map(("t", ["ping"])), "E_BAD_FIELD"),
    ("t is an int, rid echoed", Map(("rid", 10), ("t", 1)), "E_BAD_FIELD", 10),
    ("unknown t", m("chat"), "E_UNKNOWN_TYPE"),
    ("unknown t, rid echoed", m("chat", rid=11), "E_UNKNOWN_TYPE", 11),
    ("t is case-sensitive", m("PING"), "E_UNKNOWN_TYPE"),
    ("empty t", m(""), "E_UNKNOWN_TYPE"),
    ("t with a trailing NUL", m("ping\x00"), "E_UNKNOWN_TYPE"),
    # ---- missing required fields: generated below from REQUIRED ----
    ("send with neither g nor body", m("send"), "E_MISSING_FIELD"),
    # ---- wrong field types ----
    ("user is an int", m("hello", ("user", 5), rid=17), "E_BAD_FIELD", 17),
    ("user is bin", m("hello", ("user", b"alice")), "E_BAD_FIELD"),
    ("user is nil", m("hello", ("user", None)), "E_BAD_FIELD"),
    ("token is an int", m("hello", ("user", "alice"), ("token", 1)), "E_BAD_FIELD"),
    ("token is bin", m("hello", ("token", b"e30.e30.sig")), "E_BAD_FIELD"),
    ("refresh token is an int", m("refresh", ("token", 1), rid=30), "E_BAD_FIELD", 30),
    ("refresh token is nil", m("refresh", ("token", None)), "E_BAD_FIELD"),
    ("exp is a string (refreshed)", m("refreshed", ("exp", "1700003600")), "E_BAD_FIELD"),
    ("exp is negative (refreshed)", m("refreshed", ("exp", -1)), "E_BAD_FIELD"),
    ("g is bin", m("join", ("g", b"room"), rid=18), "E_BAD_FIELD", 18),
    ("g is an int", m("leave", ("g", 7)), "E_BAD_FIELD"),
    ("g is an array", m("send", ("g", ["room"]), ("body", "hi")), "E_BAD_FIELD"),
    ("since is a string", m("join", ("g", "room"), ("since", "5"), rid=19), "E_BAD_FIELD", 19),
    ("since is negative", m("join", ("g", "room"), ("since", -1)), "E_BAD_FIELD"),
    ("since is a float", m("join", ("g", "room"), ("since", 5.0)), "E_BAD_FIELD"),
    ("since is nil (nil is not absent)", m("join", ("g", "room"), ("since", None)), "E_BAD_FIELD"),
    ("since is true", m("join", ("g", "room"), ("since", True)), "E_BAD_FIELD"),
    ("rid is negative (not echoed)", m("ping", rid=-1), "E_BAD_FIELD"),
    ("rid is a large negative int64", m("ping", rid=-(2 ** 40)), "E_BAD_FIELD"),
    ("rid is a string", m("ping", rid="7"), "E_BAD_FIELD"),
    ("rid is a float", m("ping", rid=7.0), "E_BAD_FIELD"),
    ("body is an int", m("send", ("g", "room"), ("body", 42), rid=20), "E_BAD_FIELD", 20),
    ("body is nil", m("send", ("g", "room"), ("body", None)), "E_BAD_FIELD"),
    ("body is a map", m("send", ("g", "room"), ("body", Map(("a", 1)))), "E_BAD_FIELD"),
    ("body is an array", m("send", ("g", "room"), ("body", [1])), "E_BAD_FIELD"),
    ("mid is an int", m("send", ("g", "room"), ("body", "hi"), ("mid", 1), rid=21), "E_BAD_FIELD", 21),
    ("mid is bin", m("send", ("g", "room"), ("body", "hi"), ("mid", b"m1")), "E_BAD_FIELD"),
    ("limit 0", m("hist", ("g", "room"), ("limit", 0), rid=22), "E_BAD_FIELD", 22),
    ("limit 1001", m("hist", ("g", "room"), ("limit", 1001)), "E_BAD_FIELD"),
    ("limit uint64 max", m("hist", ("g", "room"), ("limit", U64MAX)), "E_BAD_FIELD"),
    ("limit is negative", m("hist", ("g", "room"), ("limit", -10)), "E_BAD_FIELD"),
    ("limit is a string", m("hist", ("g", "room"), ("limit", "10")), "E_BAD_FIELD"),
    ("before is a string", m("hist", ("g", "room"), ("before", "10")), "E_BAD_FIELD"),
    ("seq is a string (joined)", m("joined", ("g", "room"), ("seq", "1")), "E_BAD_FIELD"),
    ("ts is negative (ack)", m("ack", ("g", "room"), ("seq", 1), ("ts", -1)), "E_BAD_FIELD"),
    ("dup is an int (ack)", m("ack", ("g", "room"), ("seq", 1), ("ts", 1), ("dup", 1)), "E_BAD_FIELD"),
    ("lost is nil (synced)", m("synced", ("g", "room"), ("seq", 1), ("lost", None)), "E_BAD_FIELD"),
    ("more is an int (synced)", m("synced", ("g", "room"), ("seq", 1), ("lost", False), ("more", 1)), "E_BAD_FIELD"),
    ("sid is a string (welcome)", m("welcome", ("sid", "1"), ("srv", "x"), ("max_frame", 1)), "E_BAD_FIELD"),
    ("code is an int (err)", m("err", ("code", 3), ("msg", "x")), "E_BAD_FIELD"),
    ("reason is an int (bye)", m("bye", ("reason", 1)), "E_BAD_FIELD"),
    ("echo is an int (hello)", m("hello", ("user", "alice"), ("echo", 0)), "E_BAD_FIELD"),
    ("presence is a string (join)", m("join", ("g", "room"), ("presence", "yes")), "E_BAD_FIELD"),
    ("users is a string (presence reply)", m("presence", ("g", "room"), ("users", "alice"), ("n", 1)), "E_BAD_FIELD"),
    ("users holds an int", m("presence", ("g", "room"), ("users", ["alice", 7]), ("n", 2)), "E_BAD_FIELD"),
    ("users holds an empty name", m("presence", ("g", "room"), ("users", [""]), ("n", 1)), "E_BAD_FIELD"),
    ("users holds 1001 names", m("presence", ("g", "room"), ("users", ["u"] * 1001), ("n", 1001)), "E_BAD_FIELD"),
    ("presence without g", m("presence", rid=9), "E_MISSING_FIELD", 9),
    ("typing without g", m("typing", rid=9), "E_MISSING_FIELD", 9),
    ("online without user", m("online", ("g", "room")), "E_MISSING_FIELD"),
    ("receipts is a string (join)", m("join", ("g", "room"), ("receipts", "yes")), "E_BAD_FIELD"),
    ("read seq is a string", m("read", ("g", "room"), ("seq", "3"), rid=9), "E_BAD_FIELD", 9),
    ("read seq is negative", m("read", ("g", "room"), ("seq", -1), rid=9), "E_BAD_FIELD", 9),
    ("inbox limit 0", m("inbox", ("limit", 0), rid=9), "E_BAD_FIELD", 9),
    ("inbox limit 1001", m("inbox", ("limit", 1001), rid=9), "E_BAD_FIELD", 9),
    ("read (joined) is a string", m("joined", ("g", "room"), ("seq", 1), ("read", "1")), "E_BAD_FIELD"),
    ("groups is a map (inbox reply)", m("inbox", ("groups", Map(("g", "room")))), "E_BAD_FIELD"),
    ("groups holds an int", m("inbox", ("groups", [1])), "E_BAD_FIELD"),
    ("groups entry without unread",
     m("inbox", ("groups", [Map(("g", "room"), ("seq", 1), ("read", 0))])), "E_MISSING_FIELD"),
    ("groups entry with an empty g",
     m("inbox", ("groups", [Map(("g", ""), ("seq", 1), ("read", 0), ("unread", 1))])), "E_BAD_FIELD"),
    ("groups entry with g twice",
     m("inbox", ("groups", [Map(("g", "a"), ("g", "b"), ("seq", 1), ("read", 0), ("unread", 1))])), "E_BAD_FIELD"),
    ("groups entry whose last is a ping",
     m("inbox", ("groups", [Map(("g", "room"), ("seq", 1), ("read", 0), ("unread", 1), ("last", m("ping")))])),
     "E_BAD_FIELD"),
    ("groups holds 1001 entries",
     m("inbox", ("groups", [Map(("g", "r"), ("seq", 0), ("read", 0), ("unread", 0))] * 1001)), "E_BAD_FIELD"),
    ("msgs is a map (hist reply)", m("hist", ("g", "room"), ("msgs", Map(("t", "msg")))), "E_BAD_FIELD"),
    ("msgs holds a ping map", m("hist", ("g", "room"), ("msgs", [MSG1, m("ping")])), "E_BAD_FIELD"),
    ("msgs holds a msg map missing from",
     m("hist", ("g", "room"), ("msgs", [m("msg", ("g", "room"), ("seq", 1), ("ts", 1), ("body", "x"))])),
     "E_MISSING_FIELD"),
    ("msgs holds an int", m("hist", ("g", "room"), ("msgs", [MSG1, 1])), "E_BAD_FIELD", None),
    ("msgs nested in a msgs element",
     m("hist", ("g", "room"), ("msgs", [m("hist", ("g", "room"), ("msgs", []))])), "E_BAD_FIELD"),
    # ---- length bounds ----
    ("user 65 bytes", m("hello", ("user", "a" * 65), rid=23), "E_BAD_FIELD", 23),
    ("user 65 bytes of UTF-8", m("hello", ("user", "\u00e9" * 32 + "a")), "E_BAD_FIELD"),
    ("empty user", m("hello", ("user", "")), "E_BAD_FIELD"),
    ("token 4097 bytes", m("hello", ("user", "alice"), ("token", "k" * 4097)), "E_BAD_FIELD"),
    ("refresh token 4097 bytes", m("refresh", ("token", "k" * 4097), rid=31), "E_BAD_FIELD", 31),
    ("group 129 bytes", m("join", ("g", "g" * 129), rid=24), "E_BAD_FIELD", 24),
    ("empty group", m("join", ("g", "")), "E_BAD_FIELD"),
    ("empty group in send", m("send", ("g", ""), ("body", "hi")), "E_BAD_FIELD"),
    ("mid 65 bytes", m("send", ("g", "room"), ("body", "hi"), ("mid", "m" * 65), rid=25), "E_BAD_FIELD", 25),
    ("empty mid", m("send", ("g", "room"), ("body", "hi"), ("mid", "")), "E_BAD_FIELD"),
    ("from 65 bytes (msg)", m("msg", ("g", "room"), ("seq", 1), ("from", "f" * 65), ("ts", 1), ("body", "x")),
     "E_BAD_FIELD"),
    ("empty from (msg)", m("msg", ("g", "room"), ("seq", 1), ("from", ""), ("ts", 1), ("body", "x")),
     "E_BAD_FIELD"),
    ("empty code (err)", m("err", ("code", ""), ("msg", "x")), "E_BAD_FIELD"),
    ("err msg 1025 bytes", m("err", ("code", "E_LIMIT"), ("msg", "x" * 1025)), "E_BAD_FIELD"),
    # ---- duplicate keys ----
    ("g twice", m("join", ("g", "room"), ("g", "other"), rid=26), "E_BAD_FIELD", 26),
    ("g twice with the same value", m("leave", ("g", "room"), ("g", "room")), "E_BAD_FIELD"),
    ("user twice", m("hello", ("user", "alice"), ("user", "bob")), "E_BAD_FIELD"),
    ("body twice", m("send", ("g", "room"), ("body", "a"), ("body", b"b")), "E_BAD_FIELD"),
    ("t twice", Map(("t", "ping"), ("t", "ping")), "E_BAD_FIELD", None),
    ("t twice with different types", Map(("t", "ping"), ("t", "hello"), ("user", "a")), "E_BAD_FIELD", None),
    ("rid twice", m("ping", ("rid", 2), rid=1), "E_BAD_FIELD", None),
    # ---- resource bounds inside a small frame ----
    ("nesting 33 levels deep", m("ping", ("x", nested_arrays(32))), "E_BAD_FRAME", None),
    ("nesting 33 levels deep, the innermost an empty array",
     m("ping", ("x", Raw(b"\x91" * 31 + b"\x90")), rid=28), "E_BAD_FRAME", None),
    ("nesting 33 levels deep, the innermost an empty map",
     m("ping", ("x", Raw(b"\x91" * 31 + b"\x80"))), "E_BAD_FRAME", None),
    # ---- names may not hold NUL (PROTOCOL.md §2.1) ----
    ("group with a NUL byte", m("join", ("g", "ro\x00om"), rid=29), "E_BAD_FIELD", 29),
    ("group that is one NUL byte", m("send", ("g", "\x00"), ("body", "hi")), "E_BAD_FIELD"),
    ("user with a NUL byte", m("hello", ("user", "alice\x00admin")), "E_BAD_FIELD"),
    ("mid with a NUL byte", m("send", ("g", "room"), ("body", "hi"), ("mid", "m\x001")), "E_BAD_FIELD"),
    ("from with a NUL byte (msg)", m("msg", ("g", "room"), ("seq", 1), ("from", "a\x00"), ("ts", 1), ("body", "x")),
     "E_BAD_FIELD"),
    ("array declares 2^32-1 elements, holds none",
     m("ping", ("x", Raw(b"\xdd\xff\xff\xff\xff"))), "E_BAD_FRAME", None),
    ("map declares 2^32-1 entries, holds none",
     m("ping", ("x", Raw(b"\xdf\xff\xff\xff\xff"))), "E_BAD_FRAME", None),
    ("str declares 2^32-1 bytes, holds 2", m("ping", ("x", Raw(b"\xdb\xff\xff\xff\xffab"))), "E_BAD_FRAME"),
]

# Every required field of every type, left out of an otherwise complete map
# (optional fields present, so that they cannot stand in for the missing one).
# Requests carry a rid, which the error must echo.
REQUIRED = {
    "join": [("g", "room")],
    "leave": [("g", "room")],
    "send": [("g", "room"), ("body", "hi")],
    "hist": [("g", "room")],
    "replay": [("g", "room"), ("from", "alice"), ("ts", 1700000000000), ("body", "x"), ("reason", "expired")],
    "welcome": [("sid", 1), ("srv", "ringcast/0.1.0"), ("max_frame", 65536)],
    "joined": [("g", "room"), ("seq", 0)],
    "synced": [("g", "room"), ("seq", 3), ("lost", False)],
    "left": [("g", "room")],
    "ack": [("g", "room"), ("seq", 1), ("ts", 1700000000000)],
    "msg": [("g", "room"), ("seq", 1), ("from", "alice"), ("ts", 1700000000000), ("body", "hi")],
    "err": [("code", "E_LIMIT"), ("msg", "leave a group first")],
    "bye": [("reason", "server shutting down")],
    "refresh": [("token", "e30.e30.sig")],
    "publish": [("g", "room"), ("from", "backend"), ("body", "hi")],
    "refreshed": [("exp", 1700003600)],
    "read": [("g", "room"), ("seq", 3)],
    "marked": [("g", "room"), ("seq", 3)],
    "receipt": [("g", "room"), ("user", "bob"), ("seq", 3)],
}
OPTIONAL_EXAMPLE = {
    "hello": [("token", "x")], "join": [("since", 3)], "send": [("mid", "m1")],
    "hist": [("before", 10), ("limit", 5)], "replay": [("v", 1), ("seq", 4), ("to", "bob"), ("mid", "m1")],
    "ack": [("dup", True)], "msg": [("mid", "m1")], "publish": [("mid", "p1")],
}
REQUESTS = {"hello", "join", "leave", "send", "hist", "replay", "refresh", "publish", "read"}


def missing_field_vectors():
    out = []
    rid = 100
    for t, req in REQUIRED.items():
        for i, (key, _) in enumerate(req):
            pairs = [p for j, p in enumerate(req) if j != i] + OPTIONAL_EXAMPLE.get(t, [])
            is_req = t in REQUESTS
            xfail = None
            out.append(("%s without %s" % (t, key), m(t, *pairs, rid=rid if is_req else None),
                        "E_MISSING_FIELD", rid if is_req else None, xfail))
            rid += 1
    return out


INVALID += missing_field_vectors()

# --------------------------------------------------------------------------
# Frame-length vectors: (name, length, max_frame, result)
# --------------------------------------------------------------------------

DEFAULT_MAX = 65536
LENGTHS = [
    ("zero length", 0, DEFAULT_MAX, "E_BAD_FRAME"),
    ("one byte", 1, DEFAULT_MAX, "OK"),
    ("smallest map (fixmap ping is 8 bytes)", 8, DEFAULT_MAX, "OK"),
    ("max_frame - 1", DEFAULT_MAX - 1, DEFAULT_MAX, "OK"),
    ("exactly max_frame", DEFAULT_MAX, DEFAULT_MAX, "OK"),
    ("max_frame + 1", DEFAULT_MAX + 1, DEFAULT_MAX, "E_FRAME_TOO_LARGE"),
    ("16 MiB under the default", 16 << 20, DEFAULT_MAX, "E_FRAME_TOO_LARGE"),
    ("largest u32 under the default", 0xFFFFFFFF, DEFAULT_MAX, "E_FRAME_TOO_LARGE"),
    ("zero length, smallest configurable max_frame", 0, 16, "E_BAD_FRAME"),
    ("exactly the smallest configurable max_frame", 16, 16, "OK"),
    ("one over the smallest configurable max_frame", 17, 16, "E_FRAME_TOO_LARGE"),
    ("exactly the largest configurable max_frame", 16 << 20, 16 << 20, "OK"),
    ("one over the largest configurable max_frame", (16 << 20) + 1, 16 << 20, "E_FRAME_TOO_LARGE"),
    ("zero length even when max_frame is the largest u32", 0, 0xFFFFFFFF, "E_BAD_FRAME"),
    ("largest u32 with max_frame the largest u32", 0xFFFFFFFF, 0xFFFFFFFF, "OK"),
]

# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

HEADER = """\
# ringcast wire protocol v1 test vectors: {what}
# Generated by proto/vectors/gen.py; do not edit by hand. Format: proto/vectors/README.md
"""


def render_valid():
    out = [HEADER.format(what="valid maps")]
    for name, mp in VALID:
        frame = enc(mp)
        exp = RAW_EXPECT[name] if isinstance(mp, Raw) else derive_expect(mp)
        out.append("\nname: %s\nframe: %s\n" % (name, frame.hex()))
        line = []
        for tok in exp:  # wrap expect lines near 100 characters
            if line and len(" ".join(line)) + len(tok) > 92:
                out.append("expect: %s\n" % " ".join(line))
                line = []
            line.append(tok)
        if line:
            out.append("expect: %s\n" % " ".join(line))
    return "".join(out)


def render_invalid():
    out = [HEADER.format(what="invalid maps")]
    for v in INVALID:
        name, mp, err = v[0], v[1], v[2]
        rid = v[3] if len(v) > 3 else None
        xfail = v[4] if len(v) > 4 else None
        out.append("\nname: %s\nframe: %s\nerror: %s\n" % (name, enc(mp).hex(), err))
        if rid is not None:
            out.append("rid: %d\n" % rid)
        if xfail:
            out.append("xfail: %s\n" % xfail)
    return "".join(out)


def render_lengths():
    out = [HEADER.format(what="frame lengths")]
    for name, n, mx, res in LENGTHS:
        out.append("\nname: %s\nprefix: %s\nlength: %d\nmax_frame: %d\nerror: %s\n"
                   % (name, struct.pack(">I", n).hex(), n, mx, res))
    return "".join(out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    files = {"valid.txt": render_valid(), "invalid.txt": render_invalid(), "lengths.txt": render_lengths()}
    names = [v[0] for v in VALID] + [v[0] for v in INVALID] + [v[0] for v in LENGTHS]
    if len(names) != len(set(names)):
        sys.exit("gen.py: duplicate vector names")
    check = "--check" in sys.argv[1:]
    stale = False
    for fname, text in files.items():
        path = os.path.join(here, fname)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    stale |= f.read() != text
            except FileNotFoundError:
                stale = True
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if check and stale:
        sys.exit("gen.py: vectors are out of date; run python3 proto/vectors/gen.py")
    print("valid=%d invalid=%d lengths=%d" % (len(VALID), len(INVALID), len(LENGTHS)))


if __name__ == "__main__":
    main()
