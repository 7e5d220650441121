#!/usr/bin/env python3
"""Idle-connection memory: opens N sessions to ringcastd (hello + join of one
of G groups each), keeps them idle for --hold seconds, and reports the
server's RSS from /proc before, with the N open, after the hold and after
they closed, as bytes per connection = (RSS with N - RSS with 0) / N. A live
client (its own session, one group) sends a message every --live-ms all the
while and times each round trip (send to its own echoed msg and the ack);
it says how many it sent, how many came back, and the p50/p99/max.

The sessions come from --sources addresses 127.0.0.2.. (127.0.0.1 when 1),
spread evenly, since the server allows max_connections_per_ip (4096) per
address. The soft open-file limit is raised to the hard one; this process
holds N + 1 sockets, the server N + its own.

usage: bench/idle.py --pid PID [--port 7400] [--conns 10000] [--groups 100]
                     [--sources 1] [--hold 30] [--live-ms 100] [--admin-port P]
With --admin-port it also reads /metrics at each step: the RocksDB memtables
(joins store memberships) and the allocator's allocated bytes.
bench/idle.sh starts a fresh ringcastd and runs this against it.
"""
import argparse
import resource
import urllib.request
import select
import socket
import struct
import sys
import time

MAX_CONNS = 19000   # the open-file limit on this box is 20,000 per process
MAX_HOLD_S = 600
CONNECT_BATCH = 256  # connects in flight before their replies are read


def mp_str(s):
    b = s.encode()
    assert len(b) < 256
    return (bytes([0xA0 | len(b)]) if len(b) < 32 else bytes([0xD9, len(b)])) + b


def mp_bin(b):
    assert len(b) < 256
    return bytes([0xC4, len(b)]) + b


def frame(pairs):
    body = bytes([0x80 | len(pairs)]) + b"".join(
        mp_str(k) + (mp_bin(v) if isinstance(v, bytes) else (b"\xc2" if v is False else mp_str(v)))
        for k, v in pairs)
    return struct.pack(">I", len(body)) + body


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def metrics(admin_port):
    """memtable and allocator bytes from /metrics, or {} without an admin port."""
    if not admin_port:
        return {}
    want = {"ringcast_store_memtable_bytes": "memtable", "ringcast_allocator_allocated_bytes": "allocated"}
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            k, _, v = line.partition(" ")
            if k in want:
                out[want[k]] = int(float(v))
    return out


def frames_in(buf):
    """Splits complete frames off buf: (list of bodies, rest)."""
    out = []
    while len(buf) >= 4:
        n = struct.unpack(">I", buf[:4])[0]
        if len(buf) < 4 + n:
            break
        out.append(buf[4:4 + n])
        buf = buf[4 + n:]
    return out, buf


def frame_type(body):
    """The value of key "t" of a server frame (a small map of str keys)."""
    i = body.find(b"\xa1t")
    if i < 0:
        return ""
    j = i + 2
    n = body[j] & 0x1F if body[j] & 0xE0 == 0xA0 else 0
    return body[j + 1:j + 1 + n].decode(errors="replace")


class Live:
    """One session that sends to its own group and times each round trip."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.s.sendall(frame([("t", "hello"), ("user", "live")]) + frame([("t", "join"), ("g", "live-room")]))
        self.expect({"welcome", "joined"}, 10)
        self.rtts, self.sent, self.failed = [], 0, 0

    def expect(self, types, timeout):
        want, deadline = set(types), time.time() + timeout
        while want and time.time() < deadline:
            self.s.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            bodies, self.buf = frames_in(self.buf + chunk)
            for b in bodies:
                want.discard(frame_type(b))
        return not want

    def round_trip(self):
        t0 = time.perf_counter()
        self.sent += 1
        self.s.sendall(frame([("t", "send"), ("g", "live-room"), ("body", b"live %d" % self.sent)]))
        if self.expect({"ack", "msg"}, 5):
            self.rtts.append((time.perf_counter() - t0) * 1e6)
        else:
            self.failed += 1

    def run_for(self, seconds, every_s):
        end = time.time() + seconds
        while time.time() < end:
            t = time.time()
            self.round_trip()
            time.sleep(max(0.0, every_s - (time.time() - t)))

    def summary(self):
        r = sorted(self.rtts)
        if not r:
            return f"live_sent={self.sent} live_ok=0 live_failed={self.failed}"
        q = lambda p: r[min(len(r) - 1, int(p * len(r)))]
        return (f"live_sent={self.sent} live_ok={len(r)} live_failed={self.failed} "
                f"live_p50_us={q(0.5):.0f} live_p99_us={q(0.99):.0f} live_max_us={r[-1]:.0f}")


def open_sessions(a, sources, deadline):
    """Opens a.conns sessions in batches; returns (sockets, how many got welcome + joined)."""
    socks, ready = [], 0
    ep = select.epoll()
    for start in range(0, a.conns, CONNECT_BATCH):
        batch = {}
        for i in range(start, min(a.conns, start + CONNECT_BATCH)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((sources[i % len(sources)], 0))
            s.settimeout(10)
            s.connect((a.host, a.port))
            s.sendall(frame([("t", "hello"), ("user", f"idle{i}")]) + frame([("t", "join"), ("g", f"room{i % a.groups}")]))
            s.setblocking(False)
            socks.append(s)
            batch[s.fileno()] = [s, b"", 0]
            ep.register(s.fileno(), select.EPOLLIN)
        while batch and time.time() < deadline:
            for fd, _ in ep.poll(1.0):
                e = batch[fd]
                try:
                    chunk = e[0].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                bodies, e[1] = frames_in(e[1] + chunk)
                e[2] += len(bodies)
                if not chunk or e[2] >= 2:
                    ready += e[2] >= 2 and chunk != b""
                    ep.unregister(fd)
                    del batch[fd]
        for fd in list(batch):
            ep.unregister(fd)
    ep.close()
    return socks, ready


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True, help="ringcastd process id")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7400)
    ap.add_argument("--conns", type=int, default=10000, help=f"sessions to open (<= {MAX_CONNS})")
    ap.add_argument("--groups", type=int, default=100, help="groups the sessions join")
    ap.add_argument("--sources", type=int, default=1, help="source addresses 127.0.0.2.. (1: 127.0.0.1)")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds the sessions stay idle")
    ap.add_argument("--live-ms", type=float, default=100.0, help="the live client's send interval, ms")
    ap.add_argument("--timeout", type=float, default=180.0, help="bound on opening the sessions, seconds")
    ap.add_argument("--admin-port", type=int, default=0, help="ringcastd's admin port: memtable and allocator bytes too")
    a = ap.parse_args()
    if not 1 <= a.conns <= MAX_CONNS:
        sys.exit(f"--conns must be 1..{MAX_CONNS}")
    if not 0 <= a.hold <= MAX_HOLD_S or not 1 <= a.sources <= 250:
        sys.exit(f"--hold must be 0..{MAX_HOLD_S}, --sources 1..250")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.conns + 64 > hard:
        sys.exit(f"open-file limit {hard} is too low for {a.conns} sessions")
    sources = ["127.0.0.1"] if a.sources == 1 else [f"127.0.0.{2 + k}" for k in range(a.sources)]
    every = a.live_ms / 1000.0

    live = Live(a.host, a.port)
    live.run_for(2.0, every)
    before, m_before = rss_kb(a.pid), metrics(a.admin_port)
    base_live = live.summary()
    live.rtts, live.sent, live.failed = [], 0, 0

    t0 = time.time()
    socks, ready = open_sessions(a, sources, t0 + a.timeout)
    open_s = time.time() - t0
    live.run_for(2.0, every)
    opened, m_opened = rss_kb(a.pid), metrics(a.admin_port)
    live.run_for(a.hold, every)
    held, m_held = rss_kb(a.pid), metrics(a.admin_port)
    # every idle session still open: a closed one reads as EOF (or an error)
    alive = 0
    for s in socks:
        try:
            alive += s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    held_live = live.summary()
    for s in socks:
        s.close()
    live.rtts, live.sent, live.failed = [], 0, 0
    live.run_for(3.0, every)
    closed = rss_kb(a.pid)
    per = (opened - before) * 1024 / a.conns
    print(f"idle conns={a.conns} ready={ready} alive_after_hold={alive} sources={len(sources)} open_s={open_s:.1f} "
          f"hold_s={a.hold:.0f} rss_before_kb={before} rss_open_kb={opened} rss_held_kb={held} "
          f"rss_closed_kb={closed} per_conn_bytes={per:.0f} "
          f"per_conn_bytes_held={(held - before) * 1024 / a.conns:.0f}")
    for k in sorted(m_before):
        print(f"{k}_bytes before={m_before[k]} open={m_opened.get(k, -1)} held={m_held.get(k, -1)} "
              f"per_conn_open={(m_opened.get(k, 0) - m_before[k]) / a.conns:.0f} "
              f"per_conn_held={(m_held.get(k, 0) - m_before[k]) / a.conns:.0f}")
    print(f"live before: {base_live}")
    print(f"live with {a.conns} idle: {held_live}")
    print(f"live after close: {live.summary()}")
    return 0 if ready == a.conns and alive == a.conns and live.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
