#!/usr/bin/python3
"""The `ringcast` CLI over WebSocket (--host ws://H:P/ws, proto/PROTOCOL.md
§1.2), as a user runs it against $RINGCASTD: `chat` over WebSocket talks
with a TCP client in one group both ways, `send` and `tail` work over it,
and every failure says what went wrong: a refused upgrade names its HTTP
status, a bad Sec-WebSocket-Accept and an extension the client never
offered are refused, a close frame prints its code and reason, a bad URL
is refused before any connection. The wrong answers come from a small fake
server on loopback. Every command runs with a deadline. Exit 0 when every
check passed.
"""
import base64
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_ws import MAX_FRAME, T, Server, Tcp, check, failures  # noqa: E402

CLI = os.environ.get("RINGCAST_CLI", "build/ringcast")


def cli(*args, stdin=None):
    """(exit status, stdout, stderr) of one CLI run, killed after 2*T."""
    try:
        p = subprocess.run([CLI] + list(args), input=stdin, capture_output=True, timeout=2 * T, text=True)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or ""


def read_line_with(stream, needle, deadline):
    """The first line of stream holding needle, or None once deadline passed."""
    got = []

    def reader():
        for line in stream:
            if needle in line:
                got.append(line)
                return

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    th.join(max(0.0, deadline - time.time()))
    return got[0] if got else None


def test_chat_with_tcp(srv, url):
    chat = subprocess.Popen([CLI, "chat", "--host", url, "--user", "wsuser", "--group", "room"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1)
    try:
        joined = read_line_with(chat.stderr, "joined room", time.time() + T)
        check(joined is not None, "ringcast chat over ws:// joins its group")
        tcp = Tcp(srv.port, "tcpuser")
        tcp.send({"t": "join", "g": "room", "rid": 2})
        while tcp.recv().get("t") != "joined":
            pass
        tcp.send({"t": "send", "g": "room", "body": "hello from tcp", "rid": 3})
        line = read_line_with(chat.stdout, "hello from tcp", time.time() + T)
        check(line is not None and "tcpuser: hello from tcp" in line,
              "the WebSocket chat prints what the TCP client sent (%r)" % line)
        chat.stdin.write("hello from ws\n")
        chat.stdin.flush()
        got = None
        end = time.time() + T
        while time.time() < end:
            m = tcp.recv()
            if m.get("t") == "msg" and m.get("from") == "wsuser":
                got = m
                break
        check(got is not None and got["from"] == "wsuser" and got["body"] in ("hello from ws", b"hello from ws"),
              "the TCP client gets what was typed in the WebSocket chat (%r)" % got)
        chat.stdin.close()
        code = chat.wait(timeout=T)
        check(code == 0, "ringcast chat over ws:// ends cleanly at end of input (exit %s)" % code)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
    check(srv.metric("ringcast_websocket_messages_in_total") >= 3,
          "the chat's requests came over WebSocket (hello, join, send)")


def test_send_tail(srv, url):
    code, out, err = cli("send", "--host", url, "--user", "s1", "--group", "st", "one")
    check(code == 0 and out.startswith("ack g=st seq=1"), "ringcast send over ws:// prints its ack (%r %r)" % (out, err))
    code, out, err = cli("send", "--host", "127.0.0.1", "--port", str(srv.port), "--user", "s2", "--group", "st", "two")
    check(code == 0, "ringcast send over TCP to the same group (%r)" % err)
    code, out, err = cli("tail", "--host", url, "--user", "s3", "--group", "st", "--since", "0", "--count", "2")
    check(code == 0 and out == "[st #1] s1: one\n[st #2] s2: two\n",
          "ringcast tail --since 0 over ws:// prints both, in order (%r %r)" % (out, err))


def test_server_errors(srv):
    base = "ws://127.0.0.1:%d" % srv.http
    code, out, err = cli("send", "--host", base + "/nope", "--user", "e", "--group", "g", "x")
    check(code == 1 and "upgrade refused: HTTP 404" in err, "a refused upgrade names its HTTP status (%r)" % err)
    code, out, err = cli("send", "--host", base + "/", "--user", "e", "--group", "g", "x")
    check(code == 1 and "HTTP 200" in err and "/ws" in err, "the page's URL is refused with a hint (%r)" % err)
    big = "x" * (MAX_FRAME + 100)
    code, out, err = cli("send", "--host", base + "/ws", "--user", "e", "--group", "g", big)
    check(code == 1 and "closed the WebSocket: 1009 message longer than max_frame" in err,
          "a close frame prints its code and reason (%r)" % err)
    code, out, err = cli("send", "--host", "ws://127.0.0.1:%d/ws" % srv.port, "--user", "e", "--group", "g", "x")
    check(code == 1 and "not HTTP" in err, "the TCP port given as a ws:// URL is a clear error (%r)" % err)


class FakeServer:
    """Answers one upgrade with a 101 of its own making, on a free loopback port."""

    def __init__(self, make_answer):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.ls.settimeout(T)
        self.port = self.ls.getsockname()[1]
        self.make_answer = make_answer
        self.th = threading.Thread(target=self.serve, daemon=True)
        self.th.start()

    def serve(self):
        try:
            s, _ = self.ls.accept()
        except socket.timeout:
            return
        s.settimeout(T)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        key = ""
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        s.sendall(self.make_answer(accept.decode()).encode())
        time.sleep(0.5)
        s.close()

    def done(self):
        self.th.join(T)
        self.ls.close()


def test_bad_answers():
    cases = (
        ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", "bad Sec-WebSocket-Accept",
         "a wrong Sec-WebSocket-Accept is refused"),
        ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
         "extension not offered: permessage-deflate", "an extension the client did not offer is refused"),
        ("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nbusy now\n", "HTTP 503 Service Unavailable: busy now",
         "a refusal quotes its body's first line"),
    )
    for answer, want, what in cases:
        fake = FakeServer(lambda accept, a=answer: a.replace("{accept}", accept))
        code, out, err = cli("send", "--host", "ws://127.0.0.1:%d/ws" % fake.port, "--user", "e", "--group", "g", "x")
        fake.done()
        check(code == 1 and want in err, "%s (%r)" % (what, err))


def test_bad_urls():
    for url, want in (("wss://127.0.0.1:7480/ws", "wss:// (TLS) is not supported"),
                      ("http://127.0.0.1:7480/ws", "not a ws:// URL"),
                      ("ws://:7480/ws", "no host"),
                      ("ws://127.0.0.1:99999/ws", "bad port"),
                      ("ws://127.0.0.1:0/ws", "bad port"),
                      ("ws://[::1/ws", "unclosed ["),
                      ("ws://127.0.0.1:1/ws", "cannot connect to 127.0.0.1:1")):
        code, out, err = cli("tail", "--host", url, "--user", "e", "--group", "g")
        check(code == 1 and want in err, "%s is refused: %s (%r)" % (url, want, err))


def main():
    srv = Server()
    try:
        url = "ws://127.0.0.1:%d/ws" % srv.http
        test_chat_with_tcp(srv, url)
        test_send_tail(srv, url)
        test_server_errors(srv)
    finally:
        code = srv.stop()
    check(code == 0, "ringcastd stops cleanly (exit %s)" % code)
    test_bad_answers()
    test_bad_urls()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
