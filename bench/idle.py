#!/usr/bin/env python3
"""Idle-connection memory: opens N sessions to ringcastd (hello + join of one
of G groups each), keeps them idle, and reports the server's RSS from /proc.

usage: bench/idle.py --pid PID [--port 7400] [--conns 10000] [--groups 100]
"""
import argparse
import socket
import struct
import sys
import time


def mp_str(s):
    b = s.encode()
    assert len(b) < 256
    return (bytes([0xA0 | len(b)]) if len(b) < 32 else bytes([0xD9, len(b)])) + b


def frame(pairs):
    body = bytes([0x80 | len(pairs)]) + b"".join(mp_str(k) + mp_str(v) for k, v in pairs)
    return struct.pack(">I", len(body)) + body


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def read_replies(sock, want, deadline):
    """Reads until `want` frames arrived; returns their count."""
    buf, got = b"", 0
    while got < want and time.time() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 4:
            n = struct.unpack(">I", buf[:4])[0]
            if len(buf) < 4 + n:
                break
            buf, got = buf[4 + n:], got + 1
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True, help="ringcastd process id")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7400)
    ap.add_argument("--conns", type=int, default=10000, help="sessions to open (<= 18000)")
    ap.add_argument("--groups", type=int, default=100, help="groups the sessions join")
    ap.add_argument("--timeout", type=float, default=120.0, help="overall bound, seconds")
    a = ap.parse_args()
    if not 1 <= a.conns <= 18000:
        sys.exit("--conns must be 1..18000 (open files are capped at 20,000)")
    deadline = time.time() + a.timeout
    before = rss_kb(a.pid)
    socks = []
    for i in range(a.conns):
        s = socket.create_connection((a.host, a.port), timeout=10)
        s.sendall(frame([("t", "hello"), ("user", f"idle{i}")]) + frame([("t", "join"), ("g", f"room{i % a.groups}")]))
        socks.append(s)
    ok = sum(1 for s in socks if read_replies(s, 2, deadline) == 2)
    time.sleep(1.0)
    after = rss_kb(a.pid)
    print(f"idle conns={a.conns} ready={ok} rss_before_kb={before} rss_after_kb={after} "
          f"rss_mb={after / 1024:.1f} per_conn_bytes={(after - before) * 1024 / a.conns:.0f}")
    for s in socks:
        s.close()
    return 0 if ok == a.conns else 1


if __name__ == "__main__":
    sys.exit(main())
