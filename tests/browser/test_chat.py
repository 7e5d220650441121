#!/usr/bin/python3
"""The web chat page in a real browser (headless Chromium through Selenium).

Starts ringcastd (env RINGCASTD) on free loopback ports and opens the page it
serves at / twice: alice and bob join one group and talk; both pages must show
the same messages, in seq order, each once. Then:

- idle for longer than idle_timeout_ms: the server pings, the pages answer
  pong and keep their sessions;
- alice's page reaches the server through a TCP relay in this script, which
  cuts her off for a moment: she writes while offline and bob writes while she
  is away; after her page reconnects (join with since) both pages agree again;
- bob writes enough that a join's backlog needs several pages
  (max_reply_bytes is small), and alice's page reloads while he still writes:
  it shows the whole history again, with no duplicate and no gap;
- bob is also a member of a second group, where carol (a protocol client in
  this script) writes twice: bob's page lists it under #groups with 2
  unread; a click opens it, shows both messages and marks them read (the
  server's inbox then says 0 unread).

A screenshot of alice's page goes to RC_SCREENSHOT (default
/tmp/ringcast-chat.png). Every wait is at most 10 s and the whole test at most
90 s; everything is on 127.0.0.1. Exit 0: passed; 1: failed (the reason is
printed); 77: skipped because chromium or chromedriver is not installed.
RINGCASTD=tests/browser/mock_ringcastd.py runs it against a stand-in that
tests the page alone (tests/browser/README.md).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import struct
import urllib.request

import msgpack

SKIP = 77
WAIT_S = 10            # the longest any single wait may take
TEST_S = 90            # the whole test
IDLE_TIMEOUT_MS = 4000  # the server pings at half of it; no pong: bye and close
MAX_FRAME = 2048
MAX_REPLY_BYTES = 4096  # the smallest the server takes: a join's backlog is paged
BULK = 40              # bob's long messages: several backlog pages
CHROMEDRIVER = "/usr/bin/chromedriver"


class Failure(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Failure(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status, r.read().decode("utf-8", "replace")


class Server:
    """ringcastd on loopback ports of its own, its data in the test's
    temporary directory (the inbox is answered from storage)."""

    def __init__(self, binary, tmp):
        self.binary, self.tmp = binary, tmp
        self.port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        self.log_path = os.path.join(tmp, "ringcastd.log")
        self.proc = None

    def start(self):
        args = [self.binary, "--port", str(self.port), "--http-port", str(self.http_port),
                "--admin-port", str(self.admin_port), "--data-dir", os.path.join(self.tmp, "data"),
                "--durability", "batch", "--max-frame", str(MAX_FRAME),
                "--max-reply-bytes", str(MAX_REPLY_BYTES), "--idle-timeout-ms", str(IDLE_TIMEOUT_MS)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure("ringcastd exited with status %d at start" % self.proc.returncode)
            try:
                if http_get("http://127.0.0.1:%d/readyz" % self.admin_port)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failure("ringcastd was not ready within %d s" % WAIT_S)

    def metric(self, name):
        """Sum of a metric over its label sets."""
        total = 0.0
        for line in http_get("http://127.0.0.1:%d/metrics" % self.admin_port)[1].splitlines():
            key, _, value = line.rpartition(" ")
            if key.split("{")[0] == name:
                total += float(value)
        return total

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"


class Proto:
    """A protocol client over TCP (length-prefixed MessagePack)."""

    def __init__(self, port, user):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        self.buf, self.rid = b"", 0
        self.ask({"t": "hello", "user": user})

    def ask(self, m):
        self.rid += 1
        m["rid"] = self.rid
        b = msgpack.packb(m, use_bin_type=True)
        self.s.sendall(struct.pack(">I", len(b)) + b)
        while True:
            while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise Failure("the server closed the protocol connection")
                self.buf += chunk
            n = struct.unpack(">I", self.buf[:4])[0]
            r = msgpack.unpackb(self.buf[4:4 + n], raw=False)
            self.buf = self.buf[4 + n:]
            if r.get("rid") == self.rid:
                if r["t"] == "err":
                    raise Failure("%s: %s %s" % (m["t"], r["code"], r.get("msg")))
                return r

    def close(self):
        self.s.close()


class Relay:
    """A TCP relay to the server's HTTP port that can cut its connections and
    refuse new ones for a while: a network drop the page must ride out."""

    def __init__(self, upstream):
        self.upstream, self.refusing, self.socks = upstream, False, []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                down.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), timeout=WAIT_S)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            with self.lock:
                self.socks += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.refusing = True
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def resume(self):
        self.refusing = False

    def close(self):
        self.listener.close()
        self.cut()


STATE_JS = """
var all = function (sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)); };
var status = document.getElementById('status'), notice = document.getElementById('notice');
return {
  status: status.textContent, sid: status.dataset.sid || '',
  notice: notice.hidden ? '' : notice.textContent,
  msgs: all('#messages [data-seq]').map(function (e) { return [Number(e.dataset.seq), e.dataset.from, e.textContent]; }),
  pending: all('#pending li').length,
  online: all('#online li').map(function (e) { return e.dataset.user; }),
  typing: (document.getElementById('typing') || {}).textContent || '',
  user: document.getElementById('user').value, group: document.getElementById('group').value,
  groups: all('#groups li').map(function (e) { return [e.dataset.group, e.dataset.unread, e.className]; })
};
"""

A11Y_JS = """
var missing = [];
['user', 'group', 'message'].forEach(function (id) {
  if (!document.querySelector('label[for="' + id + '"]')) missing.push('a label for #' + id);
});
var list = document.getElementById('messages'), status = document.getElementById('status');
if (!list.getAttribute('aria-live') && list.getAttribute('role') !== 'log') missing.push('aria-live on #messages');
if (!status.getAttribute('aria-live') && status.getAttribute('role') !== 'status') missing.push('aria-live on #status');
['connect', 'send'].forEach(function (id) {
  if (document.getElementById(id).tagName !== 'BUTTON') missing.push('#' + id + ' as a button');
});
['online'].forEach(function (id) { if (!document.getElementById(id)) missing.push('#' + id); });
return missing;
"""


class Chat:
    def __init__(self, webdriver, By, Keys):
        self.webdriver, self.By, self.Keys = webdriver, By, Keys
        self.driver = None
        self.sent = {}  # body -> sender: every message the test wrote

    def open_browser(self, profile):
        wd = self.webdriver
        opts = wd.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1000,720", "--no-first-run", "--no-default-browser-check",
                    "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--user-data-dir=" + profile):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = wd.chrome.service.Service(executable_path=CHROMEDRIVER,
                                            log_path=os.path.join(profile, "..", "chromedriver.log"))
        self.driver = wd.Chrome(service=service, options=opts)
        self.driver.set_page_load_timeout(WAIT_S)
        self.driver.set_script_timeout(WAIT_S)

    def open_page(self, url, new_window):
        if new_window:
            self.driver.switch_to.new_window("window")
        self.driver.get(url)
        return self.driver.current_window_handle

    def on(self, page):
        if self.driver.current_window_handle != page:
            self.driver.switch_to.window(page)

    def state(self, page):
        self.on(page)
        return self.driver.execute_script(STATE_JS)

    def wait(self, page, what, cond):
        deadline = time.monotonic() + WAIT_S
        while True:
            st = self.state(page)
            if cond(st):
                return st
            if time.monotonic() > deadline:
                raise Failure("waited %d s for %s; the page shows status=%r notice=%r, %d messages (last: %r), %d not sent"
                              % (WAIT_S, what, st["status"], st["notice"], len(st["msgs"]), st["msgs"][-3:], st["pending"]))
            time.sleep(0.1)

    def field(self, page, id_):
        self.on(page)
        return self.driver.find_element(self.By.ID, id_)

    def connect(self, page, user, group):
        for id_, value in (("user", user), ("group", group)):
            f = self.field(page, id_)
            f.clear()
            f.send_keys(value)
        self.field(page, "connect").click()
        return self.wait(page, "%s to be connected" % user, lambda s: s["status"] == "connected")

    def say_enter(self, page, user, body):
        self.sent[body] = user
        self.field(page, "message").send_keys(body + self.Keys.ENTER)

    def say_click(self, page, user, body):
        self.sent[body] = user
        self.field(page, "message").send_keys(body)
        self.field(page, "send").click()

    def say_many(self, page, user, bodies):
        """Writes and sends each through the form, without a round trip per message."""
        for b in bodies:
            self.sent[b] = user
        self.on(page)
        self.driver.execute_script(
            "var m = document.getElementById('message'), s = document.getElementById('send');"
            "arguments[0].forEach(function (b) { m.value = b; s.click(); });", bodies)

    def shows_all(self, st):
        bodies = {m[2] for m in st["msgs"]}
        return st["status"] == "connected" and st["pending"] == 0 and all(b in bodies for b in self.sent)

    def agree(self, pages, what):
        """Waits until every page shows everything written, then checks that
        they show the same list: seqs from 1 without gap or repeat, each
        message once, from its sender."""
        lists = [self.wait(p, what, self.shows_all)["msgs"] for p in pages]
        ref = lists[0]
        seqs = [m[0] for m in ref]
        need(seqs == list(range(1, len(ref) + 1)),
             "%s: seqs are not 1..%d in order: %s" % (what, len(ref), seqs))
        for body, user in self.sent.items():
            found = [m for m in ref if m[2] == body]
            need(len(found) == 1, "%s: %r is shown %d times" % (what, body, len(found)))
            need(found[0][1] == user, "%s: %r is shown from %r, not %r" % (what, body, found[0][1], user))
        for other in lists[1:]:
            need(other == ref, "%s: the pages differ:\n  %s\n  %s" % (what, ref, other))
        return ref

    def browser_log(self):
        try:
            return "\n".join("%s %s" % (e["level"], e["message"]) for e in self.driver.get_log("browser"))
        except Exception as e:  # the browser may be gone
            return "(no browser log: %s)" % e


def unread_counts(chat, server, bob, group):
    side = "side-%d" % os.getpid()
    # short-lived connections: one left silent past idle_timeout_ms is closed
    bob_proto, carol = Proto(server.port, "bob"), Proto(server.port, "carol")
    bob_proto.ask({"t": "join", "g": side})
    carol.ask({"t": "join", "g": side})
    for body in ("side one", "side two"):
        carol.ask({"t": "send", "g": side, "body": body})
    bob_proto.close()
    carol.close()
    st = chat.wait(bob, "bob's #groups to list %s with 2 unread" % side,
                   lambda s: [side, "2", ""] in s["groups"])
    need([group, "0", "here"] in st["groups"], "bob's #groups does not show the open group as read: %s" % st["groups"])
    need([g[0] for g in st["groups"]][0] == side, "bob's #groups does not list the newest activity first: %s"
         % st["groups"])
    chat.on(bob)
    chat.driver.find_element(chat.By.CSS_SELECTOR, '#groups li[data-group="%s"]' % side).click()
    chat.wait(bob, "bob's page to open %s and show carol's messages" % side,
              lambda s: s["group"] == side and s["status"] == "connected"
              and [m[2] for m in s["msgs"]] == ["side one", "side two"])
    deadline = time.monotonic() + WAIT_S
    while True:
        bob_proto = Proto(server.port, "bob")
        entry = [e for e in bob_proto.ask({"t": "inbox"})["groups"] if e["g"] == side]
        bob_proto.close()
        if entry and entry[0]["read"] == 2 and entry[0]["unread"] == 0:
            break
        need(time.monotonic() < deadline, "bob's page did not mark %s read: %s" % (side, entry))
        time.sleep(0.1)
    print("ok - bob's #groups listed %s with 2 unread; opening it marked both read" % side)


def run(chat, server, relay, shot):
    direct = "http://127.0.0.1:%d/" % server.http_port
    try:
        code, html = http_get(direct)
    except OSError as e:
        raise Failure("ringcastd does not serve the chat page at %s (http_port): %s" % (direct, e))
    need(code == 200 and 'id="messages"' in html, "%s answers %d without the chat page" % (direct, code))

    alice = chat.open_page("http://127.0.0.1:%d/" % relay.port, new_window=False)
    bob = chat.open_page(direct, new_window=True)
    missing = chat.driver.execute_script(A11Y_JS)
    need(not missing, "the page lacks " + ", ".join(missing))
    group = "room-%d" % os.getpid()

    chat.connect(alice, "alice", group)
    chat.connect(bob, "bob", group)
    print("ok - both pages connected to %s" % group)
    # Presence, before anyone wrote: each page lists both users.
    for p, name in ((alice, "alice"), (bob, "bob")):
        chat.wait(p, "%s's #online to list alice and bob" % name, lambda st: set(st["online"]) >= {"alice", "bob"})
    # Typing: alice types without sending; bob sees it, alice does not see herself.
    chat.on(alice)
    chat.field(alice, "message").send_keys("typ")
    chat.wait(bob, "bob's page to show that alice is typing", lambda st: "alice" in st["typing"])
    need("alice" not in chat.state(alice)["typing"], "alice's page shows her own typing")
    chat.field(alice, "message").clear()
    print("ok - #online lists both users before anyone wrote; alice's typing shows on bob's page")

    chat.say_enter(alice, "alice", "hello bob")
    chat.say_click(bob, "bob", "hi alice, how are you?")
    chat.say_enter(alice, "alice", "fine: testing the web page <b>not bold</b> & co")
    chat.say_click(bob, "bob", "same here \u2014 \u00e7a marche \u2713")
    ref = chat.agree([alice, bob], "the first messages")
    print("ok - both pages show the same %d messages in seq order" % len(ref))

    sids = {p: chat.state(p)["sid"] for p in (alice, bob)}
    time.sleep(IDLE_TIMEOUT_MS * 1.3 / 1000)
    for p, name in ((alice, "alice"), (bob, "bob")):
        st = chat.state(p)
        need(st["status"] == "connected" and st["sid"] == sids[p],
             "%s's page lost its session while idle (status %r, sid %s then %s): pings not answered?"
             % (name, st["status"], sids[p], st["sid"]))
    need(server.metric("ringcast_server_pings_total") > 0, "the server sent no ping while the pages were idle")
    print("ok - idle past idle_timeout_ms: pings answered, sessions kept")

    relay.cut()
    chat.wait(alice, "alice's page to notice the drop", lambda s: s["status"] == "reconnecting")
    chat.wait(bob, "bob's #online to drop alice (offline)", lambda s: "alice" not in s["online"])
    chat.say_enter(alice, "alice", "written while offline")
    chat.wait(alice, "alice's offline message to wait", lambda s: s["pending"] == 1)
    away = ["while alice is away %d" % i for i in range(1, 4)]
    chat.say_many(bob, "bob", away)
    chat.wait(bob, "bob's messages", lambda s: s["pending"] == 0 and set(away) <= {m[2] for m in s["msgs"]})
    relay.resume()
    ref = chat.agree([alice, bob], "after alice's reconnect")
    need(chat.state(alice)["sid"] != sids[alice], "alice's page did not open a new session")
    chat.wait(bob, "bob's #online to list alice again (online)", lambda s: "alice" in s["online"])
    print("ok - alice reconnected: her offline message sent once, bob's caught up, %d messages" % len(ref))

    filler = " the quick brown fox jumps over the lazy dog;" * 4
    chat.say_many(bob, "bob", ["bulk %02d from bob:%s" % (i, filler) for i in range(1, BULK + 1)])
    chat.agree([alice, bob], "bob's bulk")
    paged = server.metric("ringcast_replies_paged_total")
    chat.on(alice)
    chat.driver.refresh()
    ref = chat.agree([alice, bob], "after alice's reload")
    st = chat.state(alice)
    need((st["user"], st["group"]) == ("alice", group), "the reload did not keep alice's name and group")
    need(server.metric("ringcast_replies_paged_total") > paged,
         "the reload's history came in one page: paging was not exercised")
    print("ok - alice's page reloaded: the %d messages again, paged, none twice" % len(ref))

    chat.driver.refresh()
    chat.say_many(bob, "bob", ["bob during alice's reload %d" % i for i in range(1, 4)])
    ref = chat.agree([alice, bob], "after alice's reload while bob writes")
    print("ok - reloaded while bob writes: %d messages, in order, none twice" % len(ref))

    chat.say_enter(alice, "alice", "back after the reload")
    chat.say_click(bob, "bob", "welcome back")
    ref = chat.agree([alice, bob], "after the reload")
    need(set(chat.state(bob)["online"]) >= {"alice", "bob"}, "#online does not list alice and bob")

    # Unread counts: carol writes twice in a second group of bob's; his page
    # lists it with 2 unread (its inbox is asked for every few seconds), and
    # a click opens it and marks both read.
    if server.binary.endswith("mock_ringcastd.py"):
        print("skip - unread counts: the stand-in keeps no inbox")
    else:
        unread_counts(chat, server, bob, group)
    idle = server.metric("ringcast_idle_timeouts_total")
    need(idle == 0, "the server closed %d connection(s) as idle (ringcast_idle_timeouts_total): a page did not"
         " answer a ping, or the server took a fresh connection for an idle one" % idle)

    # The browser's console, both pages (a refused reconnect is logged too: not an error of the page).
    errors = [e["message"] for e in chat.driver.get_log("browser")
              if e["level"] == "SEVERE" and "WebSocket connection" not in e["message"]]
    need(not errors, "the pages logged errors: %s" % errors)

    chat.on(alice)
    chat.driver.set_window_size(390, 844)
    fits = chat.driver.execute_script(
        "var r = document.getElementById('send').getBoundingClientRect();"
        "return document.documentElement.scrollWidth <= window.innerWidth && r.right <= window.innerWidth"
        " && r.bottom <= window.innerHeight;")
    need(fits, "on a phone-sized window the page scrolls sideways or hides the send button")
    chat.driver.set_window_size(1000, 720)
    chat.driver.save_screenshot(shot)
    print("ok - fits a phone-sized window; screenshot in %s" % shot)


def main():
    chromium = shutil.which("chromium")
    if not chromium or not os.access(CHROMEDRIVER, os.X_OK):
        print("SKIP: needs chromium and %s (Debian: chromium, chromium-driver)" % CHROMEDRIVER)
        return SKIP
    binary = os.environ.get("RINGCASTD")
    if not binary or not os.access(binary, os.X_OK):
        print("FAIL: set RINGCASTD to the ringcastd binary")
        return 1
    try:
        from selenium import webdriver
        import selenium.webdriver.chrome.service  # noqa: F401  (webdriver.chrome.service)
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
    except ImportError as e:
        print("FAIL: needs Python's selenium (Debian: python3-selenium, for /usr/bin/python3): %s" % e)
        return 1
    shot = os.environ.get("RC_SCREENSHOT", "/tmp/ringcast-chat.png")

    def too_long(signum, frame):
        raise Failure("the test took longer than %d s" % TEST_S)
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(TEST_S)

    tmp = tempfile.mkdtemp(prefix="ringcast-browser-")
    server, relay, chat = Server(binary, tmp), None, Chat(webdriver, By, Keys)
    status = 1
    try:
        server.start()
        relay = Relay(server.http_port)
        profile = os.path.join(tmp, "profile")
        os.mkdir(profile)
        chat.open_browser(profile)
        run(chat, server, relay, shot)
        print("PASS")
        status = 0
    except Failure as e:
        print("FAIL: %s" % e)
        if chat.driver:
            print("--- browser console ---\n" + chat.browser_log())
        print("--- ringcastd log (last lines) ---\n" + server.log_tail())
    except Exception as e:  # selenium and the like: still a failure, with its reason
        print("FAIL: %s: %s" % (type(e).__name__, e))
        print("--- ringcastd log (last lines) ---\n" + server.log_tail())
    finally:
        signal.alarm(0)
        if chat.driver:
            try:
                chat.driver.quit()
            except Exception:
                pass
        if relay:
            relay.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
