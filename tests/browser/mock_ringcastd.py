#!/usr/bin/python3
"""A stand-in for ringcastd that tests the web chat page alone.

It takes ringcastd's flags (uses --http-port, --admin-port, --max-frame,
--max-reply-bytes and --idle-timeout-ms, ignores the rest), so test_chat.py
runs against it unchanged:

    RINGCASTD=tests/browser/mock_ringcastd.py /usr/bin/python3 tests/browser/test_chat.py

On http_port it serves src/net/web/index.html at / and proto/PROTOCOL.md's
maps as JSON text messages at /ws (subprotocol ringcast.v1); on admin_port,
/readyz and the few /metrics the test reads. It is unkind to the page in the
ways the protocol allows, and does so every time where the real server does
only now and then:

- a join's missed messages are paged (`more: true`) by max_reply_bytes of JSON;
- after every page with more but a first one (since 0), a live msg from
  "carol" is sequenced: it reaches the page ahead of the next page, which
  holds it again (PROTOCOL §6.3);
- each page is followed by a repeat of its first msg, which the page must drop;
- a connection silent for idle_timeout_ms / 2 is pinged, and closed with `bye`
  at idle_timeout_ms (§6.6).

Messages live in memory, for as long as the process. Debian's
python3-websockets (10.x) is all it needs.
"""
import argparse
import asyncio
import json
import os
import signal
import time
from http import HTTPStatus

import websockets

PAGE = os.environ.get("RC_WEBPAGE", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "..", "src", "net", "web", "index.html"))
NAME_MAX, GROUP_MAX, MID_MAX = 64, 128, 64  # bytes (PROTOCOL §3)

ap = argparse.ArgumentParser(description="a ringcastd stand-in for the web chat page's test")
ap.add_argument("--http-port", type=int, required=True)
ap.add_argument("--admin-port", type=int, required=True)
ap.add_argument("--max-frame", type=int, default=65536)
ap.add_argument("--max-reply-bytes", type=int, default=1048576)
ap.add_argument("--idle-timeout-ms", type=int, default=300000)
args, _ = ap.parse_known_args()

metrics = {"replies_paged_total": 0, "server_pings_total": 0, "idle_timeouts_total": 0, "dedup_hits_total": 0}
groups = {}  # g -> Group
next_sid = [1]


class Group:
    def __init__(self):
        self.seq, self.hist, self.members, self.subs, self.acks = 0, [], set(), set(), {}


class Session:
    def __init__(self, ws):
        self.ws, self.user, self.heard, self.pinged = ws, None, time.monotonic(), False
        self.sid, next_sid[0] = next_sid[0], next_sid[0] + 1

    async def out(self, m):
        try:
            await self.ws.send(json.dumps(m))
        except websockets.ConnectionClosed:
            pass


async def sequence(g, user, body, mid=None):
    grp = groups[g]
    grp.seq += 1
    m = {"t": "msg", "g": g, "seq": grp.seq, "from": user, "ts": int(time.time() * 1000), "body": body}
    if mid:
        m["mid"] = mid
    grp.hist.append(m)
    for s in list(grp.subs):
        await s.out(m)
    return m


async def backlog(s, g, since, rid):
    grp = groups[g]
    await s.out({"t": "joined", "rid": rid, "g": g, "seq": grp.seq})
    missed = [m for m in grp.hist if m["seq"] > since]
    used, page = 0, []
    for m in missed:
        size = len(json.dumps(m))
        if page and used + size > args.max_reply_bytes:
            break
        used += size
        page.append(m)
        await s.out(m)
    if page:
        await s.out(page[0])
    synced = {"t": "synced", "rid": rid, "g": g, "seq": grp.seq, "lost": False}
    if len(page) < len(missed):
        synced["more"] = True
        metrics["replies_paged_total"] += 1
    await s.out(synced)
    if synced.get("more") and since > 0:
        await sequence(g, "carol", "carol, while a page is on its way")


def bad_name(v, most):
    return not isinstance(v, str) or not 1 <= len(v.encode()) <= most or "\0" in v


async def request(s, m):
    t, rid = m.get("t"), m.get("rid")

    async def reply(r):
        if rid is not None:
            r["rid"] = rid
        await s.out(r)

    def err(code, text):
        return reply({"t": "err", "code": code, "msg": text})

    if t == "ping":
        return await reply({"t": "pong"})
    if t == "pong":
        return
    if t == "hello":
        if s.user:
            return await err("E_FORBIDDEN", "this session said hello already")
        if bad_name(m.get("user"), NAME_MAX):
            return await err("E_BAD_FIELD", "user must be a string of 1 to 64 bytes")
        s.user = m["user"]
        return await reply({"t": "welcome", "sid": s.sid, "srv": "ringcast-mock/0", "max_frame": args.max_frame})
    if not s.user:
        return await err("E_NOT_AUTHENTICATED", "say hello first")
    g = m.get("g")
    if t not in ("join", "send"):
        return await err("E_UNKNOWN_TYPE", "the mock knows hello, join, send, ping and pong")
    if bad_name(g, GROUP_MAX):
        return await err("E_BAD_FIELD", "g must be a string of 1 to 128 bytes")
    grp = groups.setdefault(g, Group())
    if t == "join":
        grp.members.add(s.user)
        grp.subs.add(s)
        if "since" in m:
            return await backlog(s, g, m["since"], rid)
        return await reply({"t": "joined", "g": g, "seq": grp.seq})
    body, mid = m.get("body"), m.get("mid")
    if s.user not in grp.members:
        return await err("E_NOT_MEMBER", "join the group first")
    if not isinstance(body, str):
        return await err("E_MISSING_FIELD" if body is None else "E_BAD_FIELD", "body must be a string")
    if mid is not None and bad_name(mid, MID_MAX):
        return await err("E_BAD_FIELD", "mid must be a string of 1 to 64 bytes")
    if mid and (s.user, mid) in grp.acks:
        metrics["dedup_hits_total"] += 1
        return await reply(dict(grp.acks[(s.user, mid)], dup=True))
    sent = await sequence(g, s.user, body, mid)
    ack = {"t": "ack", "g": g, "seq": sent["seq"], "ts": sent["ts"]}
    if mid:
        grp.acks[(s.user, mid)] = ack
    await reply(dict(ack))


async def watch_idle(s):
    half = args.idle_timeout_ms / 2000.0
    while True:
        await asyncio.sleep(min(half / 4, 0.5))
        quiet = time.monotonic() - s.heard
        if quiet >= 2 * half:
            metrics["idle_timeouts_total"] += 1
            await s.out({"t": "bye", "reason": "idle_timeout: no frame for idle_timeout_ms"})
            return await s.ws.close()
        if quiet >= half and not s.pinged:
            s.pinged = True
            metrics["server_pings_total"] += 1
            await s.out({"t": "ping"})


async def session(ws, path=None):
    s = Session(ws)
    idle = asyncio.ensure_future(watch_idle(s))
    try:
        async for data in ws:
            s.heard, s.pinged = time.monotonic(), False
            if len(data) > args.max_frame:
                await s.out({"t": "err", "code": "E_FRAME_TOO_LARGE", "msg": "longer than max_frame; closing"})
                break
            try:
                m = json.loads(data)
            except ValueError:
                m = None
            if not isinstance(m, dict):
                await s.out({"t": "err", "code": "E_BAD_FRAME", "msg": "not a JSON object"})
                continue
            await request(s, m)
    except websockets.ConnectionClosed:
        pass
    finally:
        idle.cancel()
        for grp in groups.values():
            grp.subs.discard(s)


async def page(path, headers):
    if path == "/ws":
        return None  # on to the WebSocket handshake
    if path.split("?")[0] == "/":
        with open(PAGE, "rb") as f:
            return HTTPStatus.OK, [("Content-Type", "text/html; charset=utf-8")], f.read()
    return HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")], b"not found\n"


async def admin(reader, writer):
    request_line = (await reader.readline()).decode("latin-1").split()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    path = request_line[1] if len(request_line) > 1 else "/"
    if path == "/readyz":
        code, body = 200, "ready\n"
    elif path == "/metrics":
        code, body = 200, "".join("ringcast_%s %d\n" % kv for kv in metrics.items())
    else:
        code, body = 404, "not found\n"
    writer.write(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                  % (code, HTTPStatus(code).phrase, len(body), body)).encode())
    await writer.drain()
    writer.close()


async def main():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(session, "127.0.0.1", args.http_port, subprotocols=["ringcast.v1"],
                                process_request=page):
        server = await asyncio.start_server(admin, "127.0.0.1", args.admin_port)
        await stop
        server.close()
        for grp in groups.values():
            for s in list(grp.subs):
                await s.out({"t": "bye", "reason": "shutting down"})


if __name__ == "__main__":
    asyncio.run(main())
