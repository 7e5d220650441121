#!/usr/bin/env python3
"""Writes the binary seed corpora of the fuzz targets (tests/fuzz/README.md).

corpus/codec/   frames picked from proto/vectors/valid.txt and invalid.txt
corpus/session/ client byte streams: length-prefixed frames, the session's
                rules one stream each (hello first, the join limit, replay,
                framing errors, a frame cut short)
corpus/ws/      HTTP port byte streams: an upgrade request, then masked
                WebSocket frames (binary and text messages, fragments,
                ping, close, bad frames), and requests answered in HTTP
corpus/token/   fuzz_token inputs: a mode byte, then a token (even) or the
                header and claims JSON the target signs itself (odd)

Run from anywhere: python3 tests/fuzz/seeds.py. It rewrites exactly the
files it names and removes nothing. The seeds of corpus/config/,
corpus/http/ and corpus/json/ are text files written by hand.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "..", "proto", "vectors")
sys.path.insert(0, VECTORS)
sys.dont_write_bytecode = True  # leave no __pycache__ in proto/vectors
from gen import Raw, enc, m  # noqa: E402  (the vectors' own MessagePack encoder)

# Vectors worth mutating: every kind of map and encoding, and the edges of
# the decoder's bounds (nesting 32 and 33, declared counts, NUL in names).
CODEC_VECTORS = [
    "hello with rid and token", "join with since", "join since uint64 max", "leave",
    "send with mid", "send bin body", "send str16 body (0xda)", "hist before and limit",
    "ping with rid", "replay full dead-letter record",
    "replay minimal record (never sequenced, no recipient, no mid)", "welcome", "joined",
    "synced lost true", "left", "ack dup true", "msg bin body with mid",
    "hist reply with two msgs", "pong with rid", "err with rid", "inbox reply", "read request",
    "join with receipts", "groups entry whose last is a ping",
    "err with a code this version does not know (forward compatibility)", "bye",
    "unknown keys are ignored", "keys of other types are ignored, whatever their value",
    "map16 header (0xde)", "str8-encoded t and key (non-minimal encoding)",
    "since as a positive int64 (0xd3)", "nesting 32 levels deep (the top map is level 1)",
    "nesting 32 levels deep, the innermost an empty array", "a NUL byte in a body is data",
    "reserved byte 0xc1 as a value", "truncated: bin body cut short", "two maps in one frame",
    "rid twice", "msgs nested in a msgs element",
    "nesting 33 levels deep, the innermost an empty map", "group with a NUL byte",
    "array declares 2^32-1 elements, holds none", "str declares 2^32-1 bytes, holds 2", "limit 1001",
]

TOKEN = "s3cret"     # fuzz_session.c FUZZ_TOKEN
MAX_FRAME = 1024     # fuzz_session.c FUZZ_MAX_FRAME
MAX_GROUPS = 4       # fuzz_session.c FUZZ_MAX_GROUPS


def read_frames():
    frames = {}
    for name in ("valid.txt", "invalid.txt"):
        current = None
        with open(os.path.join(VECTORS, name)) as f:
            for line in f:
                key, _, value = line.rstrip("\r\n").partition(":")
                if key == "name":
                    current = value.strip()
                elif key == "frame" and current:
                    frames[current] = bytes.fromhex(value.strip())
    return frames


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def stream(*maps):
    return b"".join(frame(enc(x)) for x in maps)


def hello(user="alice", token=None, rid=1):
    pairs = [("user", user)] + ([("token", token)] if token is not None else [])
    return m("hello", *pairs, rid=rid)


def letter(reason, **extra):
    pairs = [("g", "room"), ("from", "bob"), ("ts", 1700000000000), ("body", b"hi"), ("reason", reason)]
    pairs += list(extra.items())
    return m("replay", *pairs, rid=9)


def session_streams():
    send = m("send", ("g", "room"), ("body", "hi"), ("mid", "c-1"), rid=4)
    at_max = next(f for f in (enc(m("send", ("g", "room"), ("body", b"x" * n), rid=5))
                              for n in range(MAX_FRAME, 0, -1)) if len(f) == MAX_FRAME)
    return {
        "a-whole-session": stream(hello(), m("join", ("g", "room"), ("since", 0), rid=2),
                                  m("join", ("g", "lobby"), rid=3), send,
                                  m("hist", ("g", "room"), ("before", 10), ("limit", 5), rid=6),
                                  m("ping", rid=7), m("leave", ("g", "room"), rid=8)),
        "request-before-hello-and-hello-twice": stream(m("join", ("g", "room"), rid=2), hello(), hello()),
        "join-past-max-groups": stream(hello(), *[m("join", ("g", "g%d" % i), rid=10 + i)
                                                  for i in range(MAX_GROUPS + 1)],
                                       m("leave", ("g", "g0"), rid=20), m("join", ("g", "g9"), rid=21)),
        "admin-replays": stream(hello("ops", TOKEN),
                                letter("slow_consumer", seq=7, to="carol"),
                                letter("overloaded"), letter("expired", mid="c-9"),
                                letter("shutdown", seq=8), letter("nonsense")),
        "replay-refused-without-token": stream(hello("ops", "wrong"), hello("ops"), letter("overloaded")),
        "server-types-from-a-client": stream(hello(), m("welcome", ("sid", 1), ("srv", "x"), ("max_frame", 9)),
                                             m("msg", ("g", "r"), ("seq", 1), ("from", "a"), ("ts", 1),
                                               ("body", b""))),
        "bad-maps-keep-the-connection": frame(b"\x81\xa1\x74\xc1") + frame(b"\x90") +
                                        stream(hello(), m("send", ("g", "room"), rid=3), m("ping", rid=4)),
        "hist-request-with-msgs": stream(hello(), m("hist", ("g", "room"), ("msgs", [1, 2]), rid=3)),
        "zero-length-frame-closes": stream(hello()) + b"\x00\x00\x00\x00" + stream(m("ping")),
        "frame-past-max-frame-closes": stream(hello()) + struct.pack(">I", MAX_FRAME + 1) + b"\x80",
        "frame-of-max-frame-bytes": stream(hello()) + frame(at_max) + stream(m("ping", rid=6)),
        "frame-cut-short": stream(hello(), m("ping", rid=2))[:-3],
        "deep-nesting-between-pings": stream(hello(), m("ping", rid=2)) +
                                      frame(bytes.fromhex("82a174a470696e67a178") + b"\x91" * 31 + b"\x90") +
                                      stream(m("ping", rid=3)),
        "names-with-nul-and-big-since": stream(hello(), m("join", ("g", "a\0b"), rid=2),
                                               m("join", ("g", "room"), ("since", 2 ** 64 - 1), rid=3),
                                               m("send", ("g", Raw(b"\xa1\x00")), ("body", b""), rid=4)),
    }


WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's sample key


def upgrade(path=b"/ws", extra=b"", version=b"13"):
    return (b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:7480\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + WS_KEY + b"\r\nSec-WebSocket-Version: " + version +
            b"\r\n" + extra + b"\r\n")


def ws_frame(opcode, payload, fin=True, mask=True, rsv=0):
    """One client frame (RFC 6455 §5.2), masked with a fixed key."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n, mbit = len(payload), 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    key = b"\x37\xfa\x21\x3d"
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def binary(x):
    return ws_frame(0x2, enc(x))


def text(s):
    return ws_frame(0x1, s.encode())


def ws_streams():
    join = m("join", ("g", "room"), ("since", 0), rid=2)
    send = enc(m("send", ("g", "room"), ("body", "hi"), rid=3))
    return {
        "binary-session": upgrade() + binary(hello()) + binary(join) + ws_frame(0x2, send) +
                          ws_frame(0x8, struct.pack(">H", 1000)),
        "text-session": upgrade(extra=b"Sec-WebSocket-Protocol: ringcast.v1\r\n") +
                        text('{"t":"hello","user":"alice","rid":1}') +
                        text('{"t":"send","g":"room","body":"h\u00e9","rid":2}') + text("[1,2]") + text("{"),
        "fragmented-with-ping-between": upgrade() + ws_frame(0x2, send[:5], fin=False) +
                                        ws_frame(0x9, b"are you there") + ws_frame(0x0, send[5:]),
        # messages past max_frame: tests/fuzz/regress/ws/ (they reached the session once)
        "unmasked-frame": upgrade() + ws_frame(0x2, enc(hello()), mask=False),
        "reserved-bit-as-if-deflated": upgrade(extra=b"Sec-WebSocket-Extensions: permessage-deflate; "
                                                     b"client_max_window_bits\r\n") +
                                       ws_frame(0x2, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=4),
        "text-not-utf8": upgrade() + ws_frame(0x1, b'{"t":"\xc3\x28"}'),
        "long-control-frame": upgrade() + ws_frame(0x9, b"p" * 126),
        "close-with-bad-code": upgrade() + ws_frame(0x8, struct.pack(">H", 999) + b"why"),
        "origin-refused": upgrade(extra=b"Origin: http://evil.example\r\n") + binary(hello()),
        "origin-allowed": upgrade(extra=b"Origin: http://ok.example\r\n") + binary(hello()),
        "version-8": upgrade(version=b"8"),
        "no-key": b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "the-page": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "post": b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        "unknown-path": b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n",
        "upgrade-cut-short": upgrade()[:40],
        "frame-cut-short": upgrade() + binary(hello())[:-2],
        "len64-frame-header": upgrade() + bytes([0x82, 0xff]) + struct.pack(">Q", 2 ** 63) + b"\0\0\0\0",
    }


FUZZ_SECRET = b"fuzz-secret-0123456789abcdef"  # fuzz_token.c's
NOW = 1700000000


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def signed(header, claims, secret=FUZZ_SECRET):
    head = b64url(header) + b"." + b64url(claims)
    return head + b"." + b64url(hmac.new(secret, head, hashlib.sha256).digest())


def token_seeds():
    hs = b'{"alg":"HS256","typ":"JWT"}'
    good = json.dumps({"sub": "alice", "iat": NOW, "exp": NOW + 3600}).encode()
    groups = json.dumps({"sub": "bob", "exp": NOW + 60, "nbf": NOW + 5, "groups": ["lobby", "team-*", "*"]}).encode()
    return {
        "token-good": b"\x00" + signed(hs, good),
        "token-other-secret": b"\x00" + signed(hs, good, b"someone-else-0123456789"),
        "token-alg-none": b"\x00" + b64url(b'{"alg":"none"}') + b"." + b64url(good) + b".",
        "token-four-parts": b"\x00" + signed(hs, good) + b".x",
        "signed-good": b"\x01" + hs + b"\x00" + good,
        "signed-groups": b"\x01" + hs + b"\x00" + groups,
        "signed-alg-hs512": b"\x01" + b'{"alg":"HS512"}' + b"\x00" + good,
        "signed-crit": b"\x01" + b'{"alg":"HS256","crit":["x"]}' + b"\x00" + good,
        "signed-duplicate-sub": b"\x01" + hs + b"\x00" + b'{"sub":"a","exp":1800000000,"sub":"b"}',
        "signed-nul-in-sub": b"\x01" + hs + b"\x00" + b'{"sub":"a\\u0000b","exp":1800000000}',
        "signed-expired": b"\x01" + hs + b"\x00" + b'{"sub":"a","exp":1600000000}',
        "signed-float-exp": b"\x01" + hs + b"\x00" + b'{"sub":"a","exp":1.8e9,"iat":1700000004.9}',
    }


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    frames = read_frames()
    missing = [n for n in CODEC_VECTORS if n not in frames]
    if missing:
        sys.exit("seeds.py: vectors not found: %s" % ", ".join(missing))
    for n in CODEC_VECTORS:
        write(os.path.join(HERE, "corpus", "codec"), slug(n), frames[n])
    for n, data in session_streams().items():
        write(os.path.join(HERE, "corpus", "session"), n, data)
    for n, data in ws_streams().items():
        write(os.path.join(HERE, "corpus", "ws"), n, data)
    for n, data in token_seeds().items():
        write(os.path.join(HERE, "corpus", "token"), n, data)


if __name__ == "__main__":
    main()
