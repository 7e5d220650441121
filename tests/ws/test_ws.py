#!/usr/bin/python3
"""WebSocket transport tests (proto/PROTOCOL.md §1.2) with real clients:
Debian's python3-websockets for well-behaved sessions, and a raw socket
client for frames a library would never send. Starts $RINGCASTD itself on
free loopback ports; every wait is bounded. Exit 0 when every check passed.

Checks: the page at /, plain HTTP errors, the upgrade and subprotocol,
MessagePack (binary) and JSON (text) sessions chatting with a TCP session
in one group, replies in the kind last used, fragmented messages, ping and
pong, close codes 1000 / 1002 / 1007 / 1009, E_FRAME_TOO_LARGE, bad JSON,
permessage-deflate offered and not agreed (a compressed frame is 1002),
the server still serving everyone after each bad client, and read cursors,
receipts and the inbox over JSON and MessagePack (proto/PROTOCOL.md §6.11),
and a slow reader catching up from history (slow_consumer_policy = catchup).
"""
import asyncio
import json
import os
import socket
import struct
import sys
import time
import urllib.request

import msgpack
import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rctest  # noqa: E402
from rctest import T, Tcp, check, failures  # noqa: E402

MAX_FRAME = 4096  # the server's --max-frame here, so "too big" is cheap


class Server(rctest.Server):
    def __init__(self, extra=(), durability="off"):
        super().__init__(["--max-frame", str(MAX_FRAME)] + list(extra), durability=durability, prefix="ringcast-ws-")


# ---- a raw WebSocket client, for frames no library sends ----

def raw_ws(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=T)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    # RFC 6455 §1.3's sample key has this accept value
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, head
    return s


def frame(opcode, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    key = b"\x01\x02\x03\x04"
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def split_frames(buf):
    """The whole server frames at the start of buf as (opcode, payload),
    and the bytes after them."""
    out = []
    while len(buf) >= 2:
        op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, off = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, off = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < off + n:
            break
        out.append((op, buf[off:off + n]))
        buf = buf[off + n:]
    return out, buf


def read_frames(s, until_close=True):
    """(opcode, payload) of every frame until the server closes (bounded)."""
    out, buf = [], b""
    end = time.time() + T
    s.settimeout(0.2)
    while time.time() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if not until_close:
                break
            continue
        if not chunk:
            break
        got, buf = split_frames(buf + chunk)
        out += got
    return out


def close_code(frames):
    for op, p in frames:
        if op == 0x8 and len(p) >= 2:
            return struct.unpack(">H", p[:2])[0]
    return None


# ---- the checks ----

def test_http(srv):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % srv.http, timeout=T) as r:
        body = r.read()
        check(r.status == 200 and r.headers["Content-Type"].startswith("text/html") and b"<" in body,
              "GET / serves the chat page")
    for path, want in (("/nope", 404), ("/ws", 400)):
        try:
            urllib.request.urlopen("http://127.0.0.1:%d%s" % (srv.http, path), timeout=T)
            check(False, "GET %s is %d" % (path, want))
        except urllib.error.HTTPError as e:
            check(e.code == want, "GET %s is %d (got %d)" % (path, want, e.code))


async def test_chat_binary_json_tcp(srv):
    url = "ws://127.0.0.1:%d/ws" % srv.http
    tcp = Tcp(srv.port, "tcp-user")
    async with websockets.connect(url, subprotocols=["ringcast.v1"]) as b, websockets.connect(url) as j:
        check(b.subprotocol == "ringcast.v1", "subprotocol ringcast.v1 is agreed when offered")
        check(j.subprotocol is None, "no subprotocol when none is offered")
        await b.send(msgpack.packb({"t": "hello", "user": "bin-user", "rid": 1}))
        w = msgpack.unpackb(await asyncio.wait_for(b.recv(), T))
        check(w["t"] == "welcome" and w["rid"] == 1, "binary hello gets a binary welcome")
        await j.send(json.dumps({"t": "hello", "user": "json-user", "rid": 18446744073709551615}))
        r = await asyncio.wait_for(j.recv(), T)
        check(isinstance(r, str) and json.loads(r)["t"] == "welcome", "text hello gets a text (JSON) welcome")
        check(json.loads(r).get("rid") == 18446744073709551615, "a JSON rid of 2^64-1 comes back exact")
        for c, kind in ((b, "bin"), (j, "json")):
            m = {"t": "join", "g": "mixed", "rid": 2}
            await c.send(msgpack.packb(m) if kind == "bin" else json.dumps(m))
            r = await asyncio.wait_for(c.recv(), T)
            r = msgpack.unpackb(r) if kind == "bin" else json.loads(r)
            check(r["t"] == "joined", "%s join" % kind)
        tcp.send({"t": "join", "g": "mixed", "rid": 2})
        check(tcp.recv()["t"] == "joined", "tcp join")
        # each sends one; every one sees all three in the same seq order
        await b.send(msgpack.packb({"t": "send", "g": "mixed", "body": b"\x00bin", "rid": 3}))
        await j.send(json.dumps({"t": "send", "g": "mixed", "body": "from json \u00e9", "rid": 3}))
        tcp.send({"t": "send", "g": "mixed", "body": "from tcp", "rid": 3})
        seen = {"bin": [], "json": [], "tcp": []}

        async def collect(c, kind):
            while len(seen[kind]) < 3:
                r = await asyncio.wait_for(c.recv(), T)
                r = msgpack.unpackb(r) if kind == "bin" else json.loads(r)
                if r["t"] == "msg":
                    seen[kind].append((r["seq"], r["from"]))
        await asyncio.gather(collect(b, "bin"), collect(j, "json"))
        while len(seen["tcp"]) < 3:
            r = tcp.recv()
            if r["t"] == "msg":
                seen["tcp"].append((r["seq"], r["from"]))
        check(seen["bin"] == seen["json"] == seen["tcp"] and [s for s, _ in seen["tcp"]] == [1, 2, 3],
              "binary, JSON and TCP sessions see one group's messages in one order: %s" % seen)
        # the kind follows the client's last message
        await j.send(msgpack.packb({"t": "ping", "rid": 9}))
        r = await asyncio.wait_for(j.recv(), T)
        check(isinstance(r, bytes) and msgpack.unpackb(r)["t"] == "pong", "a binary ping on a text session gets a binary pong")
        # fragmented: one map in three frames
        packed = msgpack.packb({"t": "ping", "rid": 10})
        await b.send([packed[:3], packed[3:6], packed[6:]])
        r = msgpack.unpackb(await asyncio.wait_for(b.recv(), T))
        check(r["t"] == "pong" and r["rid"] == 10, "a fragmented message is one map")
        # WebSocket ping: the server answers pong
        pong = await b.ping()
        await asyncio.wait_for(pong, T)
        check(True, "a WebSocket ping is answered with pong")
        # bad JSON and an empty message: content errors, connection stays
        await j.send("{not json")
        r = json.loads(await asyncio.wait_for(j.recv(), T))
        check(r["t"] == "err" and r["code"] == "E_BAD_FRAME", "bad JSON is E_BAD_FRAME")
        await j.send("[1,2]")
        r = json.loads(await asyncio.wait_for(j.recv(), T))
        check(r["t"] == "err" and r["code"] == "E_BAD_FRAME", "a JSON array is E_BAD_FRAME")
        await b.send(b"")
        r = msgpack.unpackb(await asyncio.wait_for(b.recv(), T))
        check(r["t"] == "err" and r["code"] == "E_BAD_FRAME", "an empty binary message is E_BAD_FRAME")
        await j.send(json.dumps({"t": "ping", "rid": 11}))
        r = json.loads(await asyncio.wait_for(j.recv(), T))
        check(r["t"] == "pong" and r["rid"] == 11, "the JSON session still works after its errors")
        await b.close(1000)
        check(b.close_code == 1000, "a client close 1000 is answered 1000 (got %s)" % b.close_code)
    tcp.s.close()


async def test_reads_inbox(srv):
    """A JSON session that asked for receipts sees a MessagePack session's
    read; its inbox (JSON, with the last msg map nested) counts unread."""
    url = "ws://127.0.0.1:%d/ws" % srv.http
    async with websockets.connect(url) as j, websockets.connect(url) as b:
        async def jreq(m, t):
            await j.send(json.dumps(m))
            while True:
                r = json.loads(await asyncio.wait_for(j.recv(), T))
                if r.get("rid") == m["rid"] or r["t"] == t == "receipt":
                    return r

        async def breq(m):
            await b.send(msgpack.packb(m))
            while True:
                r = msgpack.unpackb(await asyncio.wait_for(b.recv(), T))
                if r.get("rid") == m["rid"]:
                    return r
        await jreq({"t": "hello", "user": "jane", "rid": 1}, "welcome")
        await breq({"t": "hello", "user": "bo", "rid": 1})
        r = await jreq({"t": "join", "g": "rd", "receipts": True, "rid": 2}, "joined")
        check(r["t"] == "joined" and r.get("read") == 0, "joined carries read 0 before any read: %s" % r)
        await breq({"t": "join", "g": "rd", "rid": 2})
        for i in range(2):
            r = await breq({"t": "send", "g": "rd", "body": "line %d" % i, "rid": 3 + i})
            check(r["t"] == "ack", "bo's send %d is acked" % i)
        r = await breq({"t": "read", "g": "rd", "seq": 2, "rid": 5})
        check(r["t"] == "marked" and r["seq"] == 2, "read over MessagePack answers marked 2: %s" % r)
        r = await jreq({"t": "ping", "rid": 99}, "receipt")  # the receipt comes first, or after the pong
        if r["t"] != "receipt":
            r = json.loads(await asyncio.wait_for(j.recv(), T))
        check(r["t"] == "receipt" and r["user"] == "bo" and r["seq"] == 2 and r["g"] == "rd",
              "the receipts session gets a JSON receipt of bo's read: %s" % r)
        r = await jreq({"t": "inbox", "limit": 10, "rid": 6}, "inbox")
        g = r.get("groups", [])
        check(r["t"] == "inbox" and len(g) == 1 and g[0]["g"] == "rd" and g[0]["seq"] == 2 and g[0]["read"] == 0
              and g[0]["unread"] == 2 and g[0]["last"]["body"] == "line 1" and g[0]["last"]["from"] == "bo"
              and g[0]["ts"] == g[0]["last"]["ts"], "jane's JSON inbox: %s" % r)
        r = await jreq({"t": "read", "g": "rd", "seq": 3, "rid": 7}, "marked")
        check(r["t"] == "err" and r["code"] == "E_BAD_FIELD", "a read past the last seq is E_BAD_FIELD")
        r = await jreq({"t": "read", "g": "rd", "seq": 1, "rid": 8}, "marked")
        check(r["t"] == "marked" and r["seq"] == 1, "jane's read 1 is marked 1")
        r = await jreq({"t": "read", "g": "rd", "seq": 0, "rid": 9}, "marked")
        check(r["t"] == "marked" and r["seq"] == 1, "a lower read leaves the cursor at 1")
        r = await jreq({"t": "read", "g": "elsewhere", "seq": 0, "rid": 10}, "marked")
        check(r["t"] == "err" and r["code"] == "E_NOT_MEMBER", "a read of a group not joined is E_NOT_MEMBER")
        r = await jreq({"t": "inbox", "limit": 0, "rid": 11}, "inbox")
        check(r["t"] == "err" and r["code"] == "E_BAD_FIELD", "inbox limit 0 is E_BAD_FIELD")
        r = await jreq({"t": "join", "g": "rd", "rid": 12}, "joined")
        check(r.get("read") == 1, "joining again carries the cursor: %s" % r)


def test_bad_frames(srv):
    # invalid UTF-8 in a text message: 1007
    s = raw_ws(srv.http)
    s.sendall(frame(0x1, b'{"t":"ping","x":"\xff\xfe"}'))
    check(close_code(read_frames(s)) == 1007, "a text message that is not UTF-8 closes with 1007")
    s.close()
    # a frame longer than max_frame: E_FRAME_TOO_LARGE, then 1009
    s = raw_ws(srv.http)
    s.sendall(frame(0x2, msgpack.packb({"t": "ping", "pad": "x" * (MAX_FRAME + 10)})))
    fr = read_frames(s)
    errs = [msgpack.unpackb(p) for op, p in fr if op == 0x2]
    check(any(e.get("code") == "E_FRAME_TOO_LARGE" for e in errs), "an oversize message is E_FRAME_TOO_LARGE")
    check(close_code(fr) == 1009, "an oversize message closes with 1009 (got %s)" % close_code(fr))
    s.close()
    # an unmasked client frame is a protocol error: 1002
    s = raw_ws(srv.http)
    s.sendall(frame(0x2, msgpack.packb({"t": "ping"}), mask=False))
    check(close_code(read_frames(s)) == 1002, "an unmasked client frame closes with 1002")
    s.close()
    # a reserved opcode: 1002
    s = raw_ws(srv.http)
    s.sendall(frame(0x3, b"x"))
    check(close_code(read_frames(s)) == 1002, "a reserved opcode closes with 1002")
    s.close()
    # a bad handshake: wrong version
    s = socket.create_connection(("127.0.0.1", srv.http), timeout=T)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
    check(s.recv(100).startswith(b"HTTP/1.1 426"), "WebSocket version 8 is refused with 426")
    s.close()


async def test_deflate_offered(srv):
    """permessage-deflate (RFC 7692) is not implemented, so never agreed
    (src/ARCHITECTURE.md §3.6): python3-websockets offers it by default and
    must get a working uncompressed session."""
    url = "ws://127.0.0.1:%d/ws" % srv.http
    async with websockets.connect(url) as c:
        offered = c.request_headers.get("Sec-WebSocket-Extensions", "")
        check("permessage-deflate" in offered, "the client offers permessage-deflate (%r)" % offered)
        check(c.response_headers.get("Sec-WebSocket-Extensions") is None and not c.extensions,
              "the server's 101 agrees to no extension")
        await c.send(msgpack.packb({"t": "hello", "user": "deflater", "rid": 1}))
        check(msgpack.unpackb(await asyncio.wait_for(c.recv(), T))["t"] == "welcome", "uncompressed hello")
        await c.send(msgpack.packb({"t": "join", "g": "zz", "rid": 2}))
        check(msgpack.unpackb(await asyncio.wait_for(c.recv(), T))["t"] == "joined", "uncompressed join")
        body = "compress me " * 200
        await c.send(msgpack.packb({"t": "send", "g": "zz", "body": body, "rid": 3}))
        got = {}
        while len(got) < 2:
            r = msgpack.unpackb(await asyncio.wait_for(c.recv(), T))
            got[r["t"]] = r
        check(got.get("ack", {}).get("rid") == 3 and got.get("msg", {}).get("body") == body,
              "a compressible message goes and comes back whole, uncompressed")
    # a frame with RSV1 set (what a deflated message carries) is a protocol error
    s = raw_ws(srv.http)
    s.sendall(bytes([0xC2]) + frame(0x2, b"\xf2\x48\xcd\xc9\xc9\x07\x00")[1:])
    check(close_code(read_frames(s)) == 1002, "a compressed (RSV1) frame closes with 1002")
    s.close()


async def test_still_serving(srv):
    async with websockets.connect("ws://127.0.0.1:%d/ws" % srv.http) as c:
        await c.send(msgpack.packb({"t": "hello", "user": "after", "rid": 1}))
        r = msgpack.unpackb(await asyncio.wait_for(c.recv(), T))
        check(r["t"] == "welcome", "after every bad client the server still serves new ones")


async def test_origins():
    srv = Server(["--allowed-origins", "http://chat.example, http://127.0.0.1:8000"])
    try:
        url = "ws://127.0.0.1:%d/ws" % srv.http
        async with websockets.connect(url, origin="http://chat.example") as c:
            await c.send(msgpack.packb({"t": "hello", "user": "o1", "rid": 1}))
            r = msgpack.unpackb(await asyncio.wait_for(c.recv(), T))
            check(r["t"] == "welcome", "an allowed Origin is served")
        async with websockets.connect(url) as c:
            await c.send(msgpack.packb({"t": "hello", "user": "o2", "rid": 2}))
            r = msgpack.unpackb(await asyncio.wait_for(c.recv(), T))
            check(r["t"] == "welcome", "a client without Origin (not a browser page) is served")
        async with websockets.connect(url, origin="http://evil.example") as c:
            try:
                await asyncio.wait_for(c.recv(), T)
            except websockets.ConnectionClosed:
                pass
            check(c.close_code == 1008, "another Origin is closed with 1008 (got %s)" % c.close_code)
        check(srv.metric("ringcast_websocket_origin_refused_total") == 1, "the refused Origin is counted")
    finally:
        srv.stop()


def test_catchup_ws():
    """slow_consumer_policy = catchup over WebSocket (proto/PROTOCOL.md §6.6):
    a reader that stops reading while 6000 messages are sent gets every one,
    in seq order, gapless, and none became a letter."""
    n, body = 6000, b"w" * 1000
    srv = Server(extra=("--slow-consumer-policy", "catchup", "--outbound-high-bytes", "131072",
                        "--outbound-stall-ms", "100", "--max-reply-bytes", "65536", "--history-max", "10000"))
    try:
        r = raw_ws(srv.http)
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # little room: the server's queue grows

        def ask(m):
            r.sendall(frame(0x2, msgpack.packb(m)))
            got = read_frames(r, until_close=False)
            return [msgpack.unpackb(p) for op, p in got if op == 0x2]
        check(any(m["t"] == "welcome" for m in ask({"t": "hello", "user": "ws-slow", "rid": 1})),
              "catchup: the WebSocket reader says hello")
        check(any(m["t"] == "joined" for m in ask({"t": "join", "g": "ws-cu", "rid": 2})),
              "catchup: the WebSocket reader joins")
        tcp = Tcp(srv.port, "ws-cu-sender")
        tcp.send({"t": "join", "g": "ws-cu", "rid": 2})
        check(tcp.recv()["t"] == "joined", "catchup: the sender joins")
        sent = acked = 0
        end = time.time() + 60
        while acked < n and time.time() < end:
            while sent < n and sent - acked < 64:
                tcp.send({"t": "send", "g": "ws-cu", "body": body, "rid": 100 + sent})
                sent += 1
            m = tcp.recv()
            check(m["t"] != "err", "catchup: no send refused") if m["t"] == "err" else None
            acked += m["t"] == "ack"
        check(acked == n, "catchup: every send acked (%d of %d)" % (acked, n))
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        last, gap, buf = 0, None, b""
        r.settimeout(T)
        end = time.time() + 60
        while last < n and gap is None and time.time() < end:
            chunk = r.recv(1 << 16)
            if not chunk:
                break
            got, buf = split_frames(buf + chunk)
            for op, payload in got:
                if op != 0x2:
                    continue
                m = msgpack.unpackb(payload)
                if m.get("t") == "msg" and m.get("g") == "ws-cu":
                    if m["seq"] != last + 1:
                        gap = (last, m["seq"])
                        break
                    last = m["seq"]
        check(gap is None and last == n, "catchup: the WebSocket reader got 1..%d gapless (last %d, gap %s)" %
              (n, last, gap))
        check(srv.metric("ringcast_catchup_started_total") >= 1, "catchup: the reader did fall behind")
        check(srv.metric("ringcast_slow_consumer_letters_total") == 0, "catchup: nothing became a letter")
        r.close()
    finally:
        code = srv.stop()
    check(code == 0, "the catchup server stops cleanly (exit %s)" % code)


def main():
    test_catchup_ws()
    asyncio.run(test_origins())
    srv = Server()
    try:
        test_http(srv)
        asyncio.run(test_chat_binary_json_tcp(srv))
        test_bad_frames(srv)
        asyncio.run(test_deflate_offered(srv))
        asyncio.run(test_still_serving(srv))
        check(srv.metric("ringcast_websocket_upgrades_total") >= 7, "upgrades are counted")
    finally:
        code = srv.stop()
    check(code == 0, "ringcastd stops cleanly (exit %s)" % code)
    stored = Server(durability="batch")  # the inbox is answered from storage
    try:
        asyncio.run(test_reads_inbox(stored))
    finally:
        code = stored.stop()
    check(code == 0, "the stored server stops cleanly (exit %s)" % code)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
