#!/usr/bin/python3
"""auth_secret changes at SIGHUP (proto/PROTOCOL.md §6.8, src/ARCHITECTURE.md
§8.1): the real server started from a config file with secret A; the file
rewritten with B and SIGHUP: tokens signed with B are accepted and tokens
signed with A refused, while a session welcomed with A goes on; a file with
a secret too short changes nothing (counted as an error); a file without
auth_secret makes hello trust the user name again. Tokens by Debian's
python3-jwt; every wait is bounded. Exit 0 when every check passed.
"""
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import test_auth as ta  # noqa: E402  (the server, TCP client and checks of the token test)

SECRET_B = "secret-after-the-reload-0123456789"


def write(path, secret):
    with open(path, "w") as f:
        f.write("durability = off\n")
        if secret is not None:
            f.write("auth_secret = %s\n" % secret)


def hello_ok(srv, token=None, user=None):
    c = ta.Tcp(srv.port)
    r = c.hello(user, token)
    c.close()
    return r is not None and r.get("t") == "welcome"


def reload(srv, result):
    """SIGHUP, then wait (bounded) until the reload is counted with result."""
    before = srv.metric("ringcast_config_reloads_total", 'result="%s"' % result)
    srv.proc.send_signal(signal.SIGHUP)
    end = time.time() + 10
    while time.time() < end:
        if srv.metric("ringcast_config_reloads_total", 'result="%s"' % result) > before:
            return True
        time.sleep(0.05)
    return False


def eventually(cond):
    end = time.time() + 5  # a reload reaches every io thread at its next loop turn
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def main():
    fd, conf = tempfile.mkstemp(prefix="ringcast-auth-", suffix=".ini")
    os.close(fd)
    write(conf, ta.SECRET_A)
    srv = ta.Server(["--config", conf])
    try:
        ta.check(hello_ok(srv, ta.pyjwt("alice", secret=ta.SECRET_A)), "secret A from the file is in force")
        kept = ta.Tcp(srv.port)
        ta.check(kept.hello(token=ta.pyjwt("kim", ttl=600, secret=ta.SECRET_A)).get("t") == "welcome",
                 "kim is welcomed with a token signed with A")

        write(conf, SECRET_B)
        ta.check(reload(srv, "ok"), "SIGHUP with secret B reloads")
        ta.check(eventually(lambda: hello_ok(srv, ta.pyjwt("bob", secret=SECRET_B))), "a token signed with B is accepted")
        ta.check(not hello_ok(srv, ta.pyjwt("alice", secret=ta.SECRET_A)), "one signed with A is refused now")
        ta.check(ta.alive(kept), "kim's session, welcomed with A, goes on")

        write(conf, "short")
        ta.check(reload(srv, "error"), "a secret too short: the reload fails and is counted")
        ta.check(hello_ok(srv, ta.pyjwt("bob", secret=SECRET_B)), "and changes nothing: B still works")

        write(conf, None)
        ta.check(reload(srv, "ok"), "a file without auth_secret reloads")
        ta.check(eventually(lambda: hello_ok(srv, user="anyone")), "and hello trusts the user name again")
        kept.close()
    finally:
        code = srv.stop()
        os.unlink(conf)
    ta.check(code == 0, "ringcastd stops cleanly (exit %s)" % code)
    print("%d passed, %d failed" % (len(ta.passes), len(ta.failures)))
    sys.exit(1 if ta.failures else 0)


if __name__ == "__main__":
    main()
