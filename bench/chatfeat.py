#!/usr/bin/python3
"""The cost of the chat features away from the fan-out path
(proto/PROTOCOL.md §6.6, §6.11), against a running ringcastd on loopback:

  inbox    one user in --groups groups (one message each): --calls `inbox`
           calls for every --limits value, interleaved; round-trip latency
           p50/p99/max of each, entries and bytes of the reply.
  storm    a reconnect storm: --users users, each a member of
           --groups-per-user groups (--members per group), are made first;
           a publisher puts --history messages in every group; then every
           user reconnects, sends hello, inbox and a join with `since` for
           each of its groups (the seq it last saw), and waits for welcome,
           the inbox and one `synced` per group, the missed messages checked
           gapless; --conc sessions at a time, as fast as this process can.
           Total time, sessions/s, per-session latency, server CPU and peak
           RSS (VmHWM, reset through /proc/PID/clear_refs before the storm).
  catchup  a slow reader (run ringcastd with --slow-consumer-policy
           catchup): it joins --groups groups and stops reading (a small
           socket buffer) while a sender writes --msgs messages to each;
           then it reads as fast as it can. Messages/s it received, checked
           gapless and complete, and the server's catch-up counters.

Every loop is bounded by a count and by --timeout seconds. Needs python3-msgpack
(deploy/setup.sh); /usr/bin/python3, not a pyenv.

usage: bench/chatfeat.py inbox   --port P [--groups 1000] [--calls 200] [--limits 100,1000]
       bench/chatfeat.py storm   --port P --pid PID [--users 10000] [--groups-per-user 5]
                                 [--members 50] [--history 4] [--conc 256] [--sources 4]
       bench/chatfeat.py catchup --port P --admin-port A [--groups 20] [--msgs 5000] [--body 200]
"""
import argparse
import os
import resource
import select
import socket
import struct
import sys
import time
import urllib.request

import msgpack

MAX_GROUPS = 1024          # max_groups_per_session
MAX_USERS = 100000
MAX_CALLS = 100000
MAX_CONC = 4096
WINDOW = 256               # requests in flight on one connection
JOIN_CHUNK = 1000          # groups per publisher session (under max_groups_per_session)


def frame(m):
    b = msgpack.packb(m, use_bin_type=True)
    return struct.pack(">I", len(b)) + b


def split(buf):
    """Complete frame bodies at the front of buf, and the rest."""
    out, off = [], 0
    while len(buf) - off >= 4:
        n = struct.unpack_from(">I", buf, off)[0]
        if len(buf) - off - 4 < n:
            break
        out.append(buf[off + 4:off + 4 + n])
        off += 4 + n
    return out, buf[off:]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))] if v else float("nan")


class Conn:
    """A blocking session: frames out, decoded maps in."""

    def __init__(self, host, port, user, timeout, echo=True, rcvbuf=0, source=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            self.s.bind((source, 0))
        self.s.settimeout(timeout)
        self.s.connect((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf, self.q, self.timeout, self.rx = b"", [], timeout, 0
        hello = {"t": "hello", "user": user}
        if not echo:
            hello["echo"] = False
        self.send(hello)
        self.expect("welcome")

    def send(self, *maps):
        self.s.sendall(b"".join(frame(m) for m in maps))

    def raw(self):
        """The next frame's bytes (undecoded)."""
        while not self.q:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.rx += len(chunk)
            bodies, self.buf = split(self.buf + chunk)
            self.q.extend(bodies)
        return self.q.pop(0)

    def recv(self):
        return msgpack.unpackb(self.raw(), raw=False)

    def expect(self, t):
        for _ in range(1000000):
            m = self.recv()
            if m.get("t") == t:
                return m
            if m.get("t") in ("err", "bye"):
                raise RuntimeError(f"{m} while waiting for {t}")
        raise RuntimeError(f"no {t}")

    def join_all(self, groups, since=None):
        """Joins groups, WINDOW in flight; {g: joined seq}."""
        seqs, sent, i = {}, 0, 0
        while len(seqs) < len(groups):
            while sent < len(groups) and sent - len(seqs) < WINDOW:
                j = {"t": "join", "g": groups[sent]}
                if since is not None:
                    j["since"] = since
                self.send(j)
                sent += 1
            m = self.recv()
            if m.get("t") == "joined":
                seqs[m["g"]] = m["seq"]
            elif m.get("t") in ("err", "bye"):
                raise RuntimeError(f"join: {m}")
            i += 1
            if i > 100 * len(groups) + 1000:
                raise RuntimeError("join: too many frames")
        return seqs

    def send_all(self, groups, per_group, body):
        """Sends per_group messages to each group round robin, WINDOW in flight; waits for every ack."""
        total, sent, acked = len(groups) * per_group, 0, 0
        for _ in range(20 * total + 1000):
            if acked == total:
                return
            while sent < total and sent - acked < WINDOW:
                self.send({"t": "send", "g": groups[sent % len(groups)], "body": body})
                sent += 1
            m = self.recv()
            if m.get("t") == "ack":
                acked += 1
            elif m.get("t") in ("err", "bye"):
                raise RuntimeError(f"send: {m}")
        raise RuntimeError(f"send: {acked}/{total} acked")

    def close(self):
        self.s.close()


def metrics(host, admin_port):
    """Sums of every ringcast_* metric over its labels."""
    with urllib.request.urlopen(f"http://{host}:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, val = line.rpartition(" ")
        name = name.split("{")[0]
        try:
            out[name] = out.get(name, 0.0) + float(val)
        except ValueError:
            pass
    return out


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


# ---- inbox ----

def cmd_inbox(a):
    if not 1 <= a.groups <= MAX_GROUPS or not 1 <= a.calls <= MAX_CALLS:
        sys.exit(f"--groups 1..{MAX_GROUPS}, --calls 1..{MAX_CALLS}")
    limits = [int(x) for x in a.limits.split(",")]
    c = Conn(a.host, a.port, f"{a.prefix}user", a.timeout, echo=False)
    groups = [f"{a.prefix}{i}" for i in range(a.groups)]
    t0 = time.time()
    c.join_all(groups)
    c.send_all(groups, a.history, b"x" * a.body)
    print(f"# {a.groups} groups joined, {a.history} message(s) each, in {time.time() - t0:.1f} s", file=sys.stderr)
    lat = {lim: [] for lim in limits}
    info = {}
    deadline = time.time() + a.timeout
    for i in range(a.calls):
        for lim in limits:
            t = time.perf_counter()
            c.send({"t": "inbox", "limit": lim})
            raw = c.raw()
            lat[lim].append((time.perf_counter() - t) * 1e6)
            if i == 0:
                m = msgpack.unpackb(raw, raw=False)
                if m.get("t") != "inbox":
                    sys.exit(f"inbox: {m}")
                n = len(m["groups"])
                if n != min(lim, a.groups):
                    sys.exit(f"inbox limit {lim}: {n} entries, want {min(lim, a.groups)}")
                bad = [e for e in m["groups"] if e.get("seq") != a.history or e.get("unread") != a.history]
                if bad:
                    sys.exit(f"inbox limit {lim}: {len(bad)} entries without seq = unread = {a.history}: {bad[0]}")
                info[lim] = (n, len(raw), bool(m.get("more")))
        if time.time() > deadline:
            sys.exit("inbox: out of time")
    c.close()
    for lim in limits:
        v = lat[lim]
        n, nbytes, more = info[lim]
        print(f"mode=inbox groups={a.groups} limit={lim} calls={len(v)} entries={n} reply_bytes={nbytes} "
              f"more={int(more)} p50_us={pct(v, 50):.0f} p99_us={pct(v, 99):.0f} max_us={max(v):.0f} "
              f"mean_us={sum(v) / len(v):.0f}")


# ---- storm ----

class Storm:
    """Runs sessions through a plan, --conc at a time, on one epoll loop."""

    def __init__(self, a, sources):
        self.a, self.sources = a, sources
        self.ep = select.epoll()
        self.live = {}   # fd -> state

    def start(self, u, since):
        a = self.a
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((self.sources[u % len(self.sources)], 0))
        s.settimeout(a.timeout)
        t0 = time.perf_counter()
        s.connect((a.host, a.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        gs = user_groups(a, u)
        req = [{"t": "hello", "user": f"{a.prefix}u{u}", "echo": False}]
        if since is not None:
            req.append({"t": "inbox", "limit": 100})
        for g in gs:
            j = {"t": "join", "g": g}
            if since is not None:
                j["since"] = since
            req.append(j)
        s.sendall(b"".join(frame(m) for m in req))
        s.setblocking(False)
        # replies still awaited: welcome, inbox, one joined (+ synced with since) per group
        st = {"s": s, "u": u, "t0": t0, "buf": b"", "since": since, "last": {g: since or 0 for g in gs},
              "want": 1 + len(gs) + (1 + len(gs) if since is not None else 0), "msgs": 0}
        self.live[s.fileno()] = st
        self.ep.register(s.fileno(), select.EPOLLIN)

    def on_frame(self, st, m):
        t = m.get("t")
        if t in ("welcome", "joined", "inbox"):
            st["want"] -= 1
        elif t == "synced":
            st["want"] -= 1
            if m.get("lost") or m.get("more"):
                raise RuntimeError(f"user {st['u']}: {m}")
        elif t == "msg":
            g = m["g"]
            if m["seq"] != st["last"][g] + 1:
                raise RuntimeError(f"user {st['u']} group {g}: seq {m['seq']} after {st['last'][g]}")
            st["last"][g] = m["seq"]
            st["msgs"] += 1
        else:
            raise RuntimeError(f"user {st['u']}: {m}")

    def run(self, users, since):
        """Every user once; (per-session latencies in µs, msgs received, frames)."""
        a, lat, msgs, frames = self.a, [], 0, 0
        nxt, deadline = 0, time.time() + a.timeout
        while nxt < len(users) or self.live:
            while nxt < len(users) and len(self.live) < a.conc:
                self.start(users[nxt], since)
                nxt += 1
            if time.time() > deadline:
                raise RuntimeError(f"storm: out of time with {len(self.live)} sessions open")
            for fd, _ in self.ep.poll(1.0):
                st = self.live[fd]
                try:
                    chunk = st["s"].recv(1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise RuntimeError(f"user {st['u']}: closed by the server")
                bodies, st["buf"] = split(st["buf"] + chunk)
                for b in bodies:
                    self.on_frame(st, msgpack.unpackb(b, raw=False))
                frames += len(bodies)
                if st["want"] == 0:
                    if since is not None and st["msgs"] != a.history * len(st["last"]):
                        raise RuntimeError(f"user {st['u']}: {st['msgs']} missed messages, want "
                                           f"{a.history * len(st['last'])}")
                    lat.append((time.perf_counter() - st["t0"]) * 1e6)
                    msgs += st["msgs"]
                    self.ep.unregister(fd)
                    st["s"].close()
                    del self.live[fd]
        return lat, msgs, frames


def n_groups(a):
    return a.users * a.groups_per_user // a.members


def user_groups(a, u):
    G = n_groups(a)
    return [f"{a.prefix}{(u * a.groups_per_user + j) % G}" for j in range(a.groups_per_user)]


def cmd_storm(a):
    if not 1 <= a.users <= MAX_USERS or not 1 <= a.conc <= MAX_CONC or not 1 <= a.sources <= 250:
        sys.exit(f"--users 1..{MAX_USERS}, --conc 1..{MAX_CONC}, --sources 1..250")
    if a.groups_per_user < 1 or a.members < 1 or n_groups(a) < a.groups_per_user:
        sys.exit("--groups-per-user and --members must make at least --groups-per-user groups")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sources = ["127.0.0.1"] if a.sources == 1 else [f"127.0.0.{2 + k}" for k in range(a.sources)]
    users = list(range(a.users))
    G = n_groups(a)

    t = time.time()
    Storm(a, sources).run(users, None)
    print(f"# {a.users} users joined {a.groups_per_user} of {G} groups each in {time.time() - t:.1f} s", file=sys.stderr)
    t = time.time()
    allg = [f"{a.prefix}{i}" for i in range(G)]
    for k in range(0, G, JOIN_CHUNK):
        p = Conn(a.host, a.port, f"{a.prefix}pub{k}", a.timeout, echo=False)
        chunk = allg[k:k + JOIN_CHUNK]
        p.join_all(chunk)
        if a.history:
            p.send_all(chunk, a.history, b"h" * a.body)
        p.close()
    print(f"# {a.history} message(s) in each of the {G} groups in {time.time() - t:.1f} s", file=sys.stderr)

    with open(f"/proc/{a.pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    rss0 = proc_kb(a.pid, "VmRSS")
    cpu0, t0, gen0 = proc_cpu_s(a.pid), time.perf_counter(), time.process_time()
    lat, msgs, frames = Storm(a, sources).run(users, 0)
    secs = time.perf_counter() - t0
    cpu = proc_cpu_s(a.pid) - cpu0
    gen = time.process_time() - gen0
    print(f"mode=storm users={a.users} groups_per_user={a.groups_per_user} groups={G} members={a.members} "
          f"history={a.history} conc={a.conc} sources={a.sources} seconds={secs:.2f} "
          f"sessions_per_s={a.users / secs:.0f} joins_since_per_s={a.users * a.groups_per_user / secs:.0f} "
          f"missed_msgs={msgs} frames={frames} session_p50_us={pct(lat, 50):.0f} session_p99_us={pct(lat, 99):.0f} "
          f"session_max_us={max(lat):.0f} server_cpu_pct={100 * cpu / secs:.0f} server_cpu_s={cpu:.2f} "
          f"server_rss_before_kb={rss0} server_peak_rss_kb={proc_kb(a.pid, 'VmHWM')} gen_cpu_pct={100 * gen / secs:.0f}")


# ---- catchup ----

def cmd_catchup(a):
    if not 1 <= a.groups <= MAX_GROUPS or a.msgs < 1:
        sys.exit(f"--groups 1..{MAX_GROUPS}, --msgs >= 1")
    groups = [f"{a.prefix}{i}" for i in range(a.groups)]
    r = Conn(a.host, a.port, f"{a.prefix}reader", a.timeout, rcvbuf=65536)
    s = Conn(a.host, a.port, f"{a.prefix}sender", a.timeout, echo=False)
    base = r.join_all(groups)
    s.join_all(groups)
    m0 = metrics(a.host, a.admin_port)
    t = time.perf_counter()
    s.send_all(groups, a.msgs, b"c" * a.body)
    flood_s = time.perf_counter() - t
    s.close()
    m1 = metrics(a.host, a.admin_port)
    # reads again, with a socket of normal size
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    last = dict(base)
    want, got = a.msgs * a.groups, 0
    t0, gen0, rx0 = time.perf_counter(), time.process_time(), r.rx
    deadline = time.time() + a.timeout
    while got < want:
        m = r.recv()
        if m.get("t") != "msg":
            sys.exit(f"catchup: {m} after {got} of {want}")
        g = m["g"]
        if m["seq"] != last[g] + 1:
            sys.exit(f"catchup: group {g} seq {m['seq']} after {last[g]} (a gap or a dup)")
        last[g] = m["seq"]
        got += 1
        if (got & 1023) == 0 and time.time() > deadline:
            sys.exit(f"catchup: out of time after {got} of {want}")
    secs = time.perf_counter() - t0
    gen = time.process_time() - gen0
    m2 = metrics(a.host, a.admin_port)
    d = lambda k, x, y: y.get(k, 0) - x.get(k, 0)
    keys = ["ringcast_catchup_started_total", "ringcast_catchup_skipped_total", "ringcast_catchup_pages_total",
            "ringcast_catchup_done_total", "ringcast_catchup_lost_total", "ringcast_shard_catchup_messages_total"]
    parts = " ".join(f"{k[len('ringcast_'):]}={d(k, m0, m2):.0f}" for k in keys)
    print(f"mode=catchup groups={a.groups} msgs_per_group={a.msgs} body={a.body} flood_s={flood_s:.2f} "
          f"skipped_during_flood={d('ringcast_catchup_skipped_total', m0, m1):.0f} "
          f"read_msgs={got} read_s={secs:.3f} read_msgs_per_s={got / secs:.0f} "
          f"read_mb_per_s={(r.rx - rx0) / secs / 1e6:.1f} reader_cpu_pct={100 * gen / secs:.0f} gapless=1 {parts}")
    r.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["inbox", "storm", "catchup"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7400)
    ap.add_argument("--admin-port", type=int, default=7481)
    ap.add_argument("--pid", type=int, help="ringcastd's process id (storm)")
    ap.add_argument("--prefix", default="f", help="group and user name prefix")
    ap.add_argument("--timeout", type=float, default=300.0, help="bound on the whole run, seconds")
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--history", type=int, default=1, help="messages per group before the measurement")
    ap.add_argument("--body", type=int, default=64)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--limits", default="100,1000")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--groups-per-user", type=int, default=5)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--conc", type=int, default=256)
    ap.add_argument("--sources", type=int, default=4, help="source addresses 127.0.0.2.. (1: 127.0.0.1)")
    ap.add_argument("--msgs", type=int, default=5000, help="catchup: messages per group")
    a = ap.parse_args()
    if not 0 <= a.history <= 100000 or not 1 <= a.body <= 60000 or not 1 <= a.timeout <= 3600:
        sys.exit("--history 0..100000, --body 1..60000, --timeout 1..3600")
    if a.mode == "storm" and not a.pid:
        sys.exit("storm needs --pid")
    {"inbox": cmd_inbox, "storm": cmd_storm, "catchup": cmd_catchup}[a.mode](a)


if __name__ == "__main__":
    main()
