"""What the Python tests against the real server share: checks and their
tally, a ringcastd started on free loopback ports (the binary named by
$RINGCASTD) and a TCP client speaking the protocol's framing (4-byte
big-endian length, one MessagePack map: proto/PROTOCOL.md §1.1). Every wait
is bounded by T seconds unless a caller gives its own bound.

A test script puts this folder on sys.path and imports it:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from rctest import T, Server, Tcp, check, failures
"""
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import msgpack

T = 5.0  # longest wait for any one reply, seconds

failures = []
passes = []


def check(cond, what):
    """Records one check and prints it; the script exits non-zero at the end if any failed."""
    if not cond:
        failures.append(what)
        print("FAIL", what, flush=True)
    else:
        passes.append(what)
        print("ok  ", what, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    """ringcastd on free ports (client, HTTP, admin), ready when /readyz says
    200 (at most 20 s). extra: more flags; token: the bearer that call()
    sends by default; log: a file for its stderr (default: discarded);
    data_dir: reuse a directory (a restart after kill())."""

    def __init__(self, extra=(), durability="off", data_dir=None, log=None, token=None,
                 prefix="ringcast-test-"):
        self.dir = data_dir or tempfile.mkdtemp(prefix=prefix)
        self.port, self.http, self.admin = free_port(), free_port(), free_port()
        self.token = token
        binary = os.environ.get("RINGCASTD", "build/ringcastd")
        self.proc = subprocess.Popen(
            [binary, "--data-dir", self.dir, "--durability", durability, "--port", str(self.port),
             "--http-port", str(self.http), "--admin-port", str(self.admin)] + list(extra),
            stderr=log if log else subprocess.DEVNULL)
        end = time.time() + 20
        while time.time() < end:
            try:
                if self.call("GET", "/readyz", token=None, raw=True)[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.proc.kill()
        raise SystemExit("ringcastd did not become ready")

    def call(self, method, path, body=None, token="", raw=False):
        """(status, decoded JSON answer, or the text when raw or not JSON).
        token: the bearer to send ("" means the server's default, None none)."""
        if token == "":
            token = self.token
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=T)
        headers = {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read().decode()
        finally:
            c.close()
        if raw:
            return r.status, data
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data

    def metric(self, name, label=""):
        """The sum of a metric's samples (those whose labels start with label)."""
        total = 0.0
        for line in self.call("GET", "/metrics", token=None, raw=True)[1].splitlines():
            if line.startswith(name + "{" + label) or (not label and line.startswith(name + " ")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self):
        """kill -9, keeping the data directory."""
        self.proc.kill()
        self.proc.wait(timeout=15)

    def stop(self):
        """SIGTERM (SIGKILL after 15 s); its exit code. The data directory goes."""
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = -9
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


class Tcp:
    """A TCP client. With user, it says hello as user first (and asserts the
    welcome). Pings are answered; msg maps seen while waiting for a reply are
    kept in msgs for next_msg()."""

    def __init__(self, port, user=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=T)
        self.buf = b""
        self.rid = 0
        self.msgs = []
        if user is not None:
            r = self.hello(user)
            assert r is not None and r.get("t") == "welcome", r

    def send(self, m):
        b = msgpack.packb(m, use_bin_type=True)
        self.s.sendall(struct.pack(">I", len(b)) + b)

    def recv(self, timeout=T):
        """The next map, None when the server closed or nothing came in time."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    m = msgpack.unpackb(self.buf[4:4 + n], raw=False)
                    self.buf = self.buf[4 + n:]
                    if m.get("t") == "ping":
                        self.send({"t": "pong"})
                        continue
                    return m
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def request(self, m):
        """Sends m with a fresh rid; the reply with that rid, or None."""
        self.rid += 1
        self.send(dict(m, rid=self.rid))
        end = time.time() + T
        while time.time() < end:
            r = self.recv(max(0.01, end - time.time()))
            if r is None:
                return None
            if r.get("rid") == self.rid:
                return r
            if r.get("t") == "msg":
                self.msgs.append(r)
        return None

    def hello(self, user=None, token=None):
        m = {"t": "hello"}
        if user is not None:
            m["user"] = user
        if token is not None:
            m["token"] = token
        return self.request(m)

    def next_msg(self, timeout=T):
        """The next msg (one kept by request() first), or None."""
        if self.msgs:
            return self.msgs.pop(0)
        end = time.time() + timeout
        while time.time() < end:
            r = self.recv(max(0.01, end - time.time()))
            if r is None or r.get("t") == "msg":
                return r
        return None

    def alive(self):
        r = self.request({"t": "ping"})
        return r is not None and r.get("t") == "pong"

    def close(self):
        self.s.close()
