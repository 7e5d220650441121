#!/usr/bin/python3
"""Signed tokens against the real server (proto/PROTOCOL.md §6.8), with
tokens made by an independent library, Debian's python3-jwt (PyJWT), and by
`ringcast token`. Starts $RINGCASTD itself on free loopback ports with two
secrets in auth_secret; every wait is bounded. Exit 0 when every check
passed.

Checks: hello without a token is E_NOT_AUTHENTICATED and the connection
stays; a good token (either secret: rotation) is welcomed as its sub; a
stranger cannot hello as alice (his own token with user alice, a token
signed with another secret, alg none, HS512, expired, sub mismatch: each
E_AUTH_FAILED, bye, close); groups outside the claim are E_FORBIDDEN and
the session goes on; refresh replaces the token and a refresh for another
user ends the session; a token that expires ends its session with bye
token_expired, one refreshed in time does not; tokens minted by `ringcast
token` verify with PyJWT and work for `ringcast send --token` and
RINGCAST_TOKEN; a WebSocket text session says hello with a token; the
admin token still makes admin sessions; the metrics count the refusals;
and a session opened first keeps being served throughout. A server
without auth_secret says loudly that identities are trusted.
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

import jwt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rctest  # noqa: E402
from rctest import T, Tcp, check, failures, passes  # noqa: E402,F401

SECRET_A = "first-secret-for-the-auth-test-0001"
SECRET_B = "second-secret-for-the-auth-test-002"
ADMIN = "admin-token-for-the-auth-test"


class Server(rctest.Server):
    def __init__(self, extra=(), log=None):
        super().__init__(extra, log=log, prefix="ringcast-auth-")


def now():
    return int(time.time())


def pyjwt(sub, ttl=60, secret=SECRET_A, alg="HS256", **claims):
    payload = {"sub": sub, "iat": now(), "exp": now() + ttl}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=alg)


def is_err(r, code):
    return r is not None and r.get("t") == "err" and r.get("code") == code


def refused_and_closed(c, r):
    """E_AUTH_FAILED, then bye auth_failed, then the connection closes."""
    if not is_err(r, "E_AUTH_FAILED"):
        return False
    bye = c.recv()
    return bye is not None and bye.get("t") == "bye" and bye.get("reason") == "auth_failed" and c.recv() is None


def alive(c):
    r = c.request({"t": "ping"})
    return r is not None and r.get("t") == "pong"


def test_hello(srv, alice):
    c = Tcp(srv.port)
    r = c.hello("alice")
    check(is_err(r, "E_NOT_AUTHENTICATED"), "hello without a token: E_NOT_AUTHENTICATED")
    r = c.hello(token=pyjwt("bob"))
    check(r is not None and r.get("t") == "welcome", "the same connection then says hello with a token")
    r = c.request({"t": "join", "g": "lobby"})
    check(r is not None and r.get("t") == "joined", "bob joins lobby")
    r = c.request({"t": "send", "g": "lobby", "body": "hi from bob", "mid": "b1"})
    check(r is not None and r.get("t") == "ack", "bob sends")
    m = alice.recv()
    check(m is not None and m.get("t") == "msg" and m.get("from") == "bob",
          "alice receives it from bob, the token's sub (user was left out of hello)")
    c.close()

    c = Tcp(srv.port)
    r = c.hello("carol", pyjwt("carol", secret=SECRET_B))
    check(r is not None and r.get("t") == "welcome", "a token signed with the second secret (rotation)")
    c.close()


def test_strangers(srv):
    cases = [
        ("his own token, claiming alice", "alice", pyjwt("mallory")),
        ("alice's name signed with a secret the server lacks", None, pyjwt("alice", secret="guessed-secret-0123456789")),
        ("alg none", "alice", jwt.encode({"sub": "alice", "exp": now() + 60}, None, algorithm="none")),
        ("HS512 with the right secret", "alice", pyjwt("alice", alg="HS512")),
        ("an expired token", "alice", pyjwt("alice", ttl=-10)),
        ("nbf a minute ahead", "alice", pyjwt("alice", nbf=now() + 60)),
        ("a token that is not a JWT", "alice", "alice"),
    ]
    for what, user, token in cases:
        c = Tcp(srv.port)
        check(refused_and_closed(c, c.hello(user, token)), "stranger, %s: E_AUTH_FAILED, bye, closed" % what)
        c.close()
    check(srv.metric("ringcast_auth_failures_total", 'reason="signature"') >= 1, "metric: signature refusals")
    check(srv.metric("ringcast_auth_failures_total", 'reason="algorithm"') >= 2, "metric: algorithm refusals")
    check(srv.metric("ringcast_auth_failures_total", 'reason="user_mismatch"') >= 1, "metric: user_mismatch")
    check(srv.metric("ringcast_auth_failures_total", 'reason="expired"') >= 1, "metric: expired")
    check(srv.metric("ringcast_auth_failures_total", 'reason="no_token"') >= 1, "metric: no_token")


def test_groups(srv):
    c = Tcp(srv.port)
    r = c.hello(token=pyjwt("dave", groups=["lobby", "team-*"]))
    check(r is not None and r.get("t") == "welcome", "dave's token names groups")
    check(c.request({"t": "join", "g": "team-red"}).get("t") == "joined", "a prefix entry lets dave join team-red")
    check(is_err(c.request({"t": "join", "g": "secret"}), "E_FORBIDDEN"), "join outside the claim: E_FORBIDDEN")
    check(is_err(c.request({"t": "send", "g": "secret", "body": "x"}), "E_FORBIDDEN"),
          "send outside the claim: E_FORBIDDEN")
    check(is_err(c.request({"t": "hist", "g": "secret"}), "E_FORBIDDEN"), "hist outside the claim: E_FORBIDDEN")
    check(alive(c), "the session goes on after E_FORBIDDEN")
    r = c.request({"t": "send", "g": "team-red", "body": "still here"})
    check(r is not None and r.get("t") == "ack", "and sends inside the claim")
    c.close()


def test_refresh_and_expiry(srv):
    c = Tcp(srv.port)
    check(c.hello(token=pyjwt("erin", ttl=30)).get("t") == "welcome", "erin says hello")
    new_exp = now() + 600
    r = c.request({"t": "refresh", "token": jwt.encode({"sub": "erin", "exp": new_exp}, SECRET_A, algorithm="HS256")})
    check(r is not None and r.get("t") == "refreshed" and r.get("exp") == new_exp, "refresh answers refreshed {exp}")
    r = c.request({"t": "refresh", "token": pyjwt("frank")})
    check(refused_and_closed(c, r), "a refresh for another user: E_AUTH_FAILED, bye, closed")
    c.close()

    short = Tcp(srv.port)
    kept = Tcp(srv.port)
    check(short.hello(token=pyjwt("gina", ttl=3)).get("t") == "welcome", "gina's token lives 3 s")
    check(kept.hello(token=pyjwt("hank", ttl=3)).get("t") == "welcome", "hank's too")
    r = kept.request({"t": "refresh", "token": pyjwt("hank", ttl=600)})
    check(r is not None and r.get("t") == "refreshed", "hank refreshes his in time")
    bye, end = None, time.time() + 10  # exp is whole seconds, the sweep runs every 250 ms
    while time.time() < end and bye is None:
        m = short.recv(max(0.01, end - time.time()))
        if m is None or m.get("t") == "bye":
            bye = m
    check(bye is not None and bye.get("reason") == "token_expired", "gina's session ends with bye token_expired")
    check(short.recv(T) is None, "and is closed")
    check(alive(kept), "hank's refreshed session outlives the old exp")
    check(srv.metric("ringcast_auth_token_expired_total") >= 1, "metric: token_expired")
    check(srv.metric("ringcast_auth_refreshes_total") >= 2, "metric: refreshes")
    short.close()
    kept.close()


def run_cli(args, env_extra=None):
    env = dict(os.environ)
    env.pop("RINGCAST_TOKEN", None)
    env.update(env_extra or {})
    cli = os.environ.get("RINGCAST_CLI", "build/ringcast")
    p = subprocess.run([cli] + args, capture_output=True, text=True, timeout=30, env=env)
    return p.returncode, p.stdout, p.stderr


def test_cli(srv, alice):
    code, out, err = run_cli(["token", "--secret", SECRET_A + "," + SECRET_B, "--user", "ivan", "--ttl", "120",
                              "--groups", "lobby,team-*"])
    token = out.strip()
    check(code == 0 and token.count(".") == 2, "ringcast token prints a token")
    try:
        claims = jwt.decode(token, SECRET_A, algorithms=["HS256"])
    except Exception as e:  # noqa: BLE001 (any failure is the check's)
        claims = {"error": str(e)}
    check(claims.get("sub") == "ivan" and claims.get("groups") == ["lobby", "team-*"] and
          0 < claims.get("exp", 0) - now() <= 121, "PyJWT verifies it (first secret of the list): %s" % claims)
    c = Tcp(srv.port)
    check(c.hello(token=token).get("t") == "welcome", "the server accepts it")
    c.close()
    port = ["--port", str(srv.port)]
    code, out, err = run_cli(["send", "--token", token, "--group", "lobby", "from the cli"] + port)
    check(code == 0 and out.startswith("ack "), "ringcast send --token (no --user): %r %r" % (out, err))
    m = alice.recv()
    check(m is not None and m.get("from") == "ivan" and m.get("body") in ("from the cli", b"from the cli"),
          "alice gets it from ivan: %s" % m)
    code, out, err = run_cli(["send", "--group", "lobby", "--user", "ivan", "via env"] + port,
                             {"RINGCAST_TOKEN": token})
    check(code == 0 and out.startswith("ack "), "ringcast send with RINGCAST_TOKEN: %r %r" % (out, err))
    alice.recv()
    code, out, err = run_cli(["send", "--host", "ws://127.0.0.1:%d/ws" % srv.http, "--token", token,
                              "--group", "lobby", "over ws"])
    check(code == 0 and out.startswith("ack "), "ringcast send --token over ws://: %r %r" % (out, err))
    m = alice.recv()
    check(m is not None and m.get("from") == "ivan", "alice gets that one from ivan too")
    code, out, err = run_cli(["send", "--group", "secret", "--token", token, "x"] + port)
    check(code != 0 and "does not allow this group" in err, "the CLI reports E_FORBIDDEN outside the claim: %r" % err)
    code, out, err = run_cli(["send", "--user", "ivan", "--group", "lobby", "x"] + port)
    check(code != 0 and "E_NOT_AUTHENTICATED" in err, "the CLI without a token is refused: %r" % err)
    code, out, err = run_cli(["token", "--user", "ivan"])
    check(code == 2, "ringcast token without a secret is a usage error")


def test_websocket(srv):
    try:
        import websockets
    except ImportError:
        check(False, "python3-websockets is installed")
        return

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % srv.http, open_timeout=T) as ws:
            await ws.send(json.dumps({"t": "hello", "rid": 1, "token": pyjwt("judy")}))
            r = json.loads(await asyncio.wait_for(ws.recv(), T))
            check(r.get("t") == "welcome", "a WebSocket text session says hello with a token")
        async with websockets.connect("ws://127.0.0.1:%d/ws" % srv.http, open_timeout=T) as ws:
            await ws.send(json.dumps({"t": "hello", "rid": 1, "user": "judy"}))
            r = json.loads(await asyncio.wait_for(ws.recv(), T))
            check(r.get("code") == "E_NOT_AUTHENTICATED", "and without one is refused")

    asyncio.run(go())


def test_admin(srv):
    c = Tcp(srv.port)
    r = c.hello("ops", ADMIN)
    check(r is not None and r.get("t") == "welcome", "the admin token still opens an admin session")
    r = c.request({"t": "replay", "v": 1, "reason": "slow_consumer", "g": "lobby", "seq": 1, "from": "bob",
                   "ts": 1, "body": "x"})
    check(r is not None and r.get("t") == "ack", "and that session may replay")
    c.close()


def test_trusted_warning():
    with tempfile.TemporaryFile() as log:
        srv = Server(log=log)
        srv.stop()
        log.seek(0)
        text = log.read().decode(errors="replace")
    check("auth_secret is not set" in text and "WARN" in text.upper(),
          "without auth_secret the server warns that identities are trusted")


def main():
    srv = Server(["--auth-secret", SECRET_A + "," + SECRET_B, "--admin-token", ADMIN])
    try:
        alice = Tcp(srv.port)
        check(alice.hello("alice", pyjwt("alice", ttl=600)).get("t") == "welcome", "alice says hello first")
        check(alice.request({"t": "join", "g": "lobby"}).get("t") == "joined", "alice joins lobby")
        test_hello(srv, alice)
        test_strangers(srv)
        test_groups(srv)
        test_refresh_and_expiry(srv)
        test_cli(srv, alice)
        test_websocket(srv)
        test_admin(srv)
        check(alive(alice), "alice was served throughout")
        r = alice.request({"t": "send", "g": "lobby", "body": "bye all"})
        check(r is not None and r.get("t") == "ack", "and still sends")
        alice.close()
    finally:
        code = srv.stop()
    check(code == 0, "ringcastd stops cleanly (exit %s)" % code)
    test_trusted_warning()
    print("%d passed, %d failed" % (len(passes), len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
