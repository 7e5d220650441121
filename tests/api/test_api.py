#!/usr/bin/python3
"""The Server API on the admin port (src/app/api.h, README "Running it in
production") against the real server: starts $RINGCASTD itself on free
loopback ports, talks HTTP to the admin port and the protocol over TCP to
the client port; every wait is bounded. Exit 0 when every check passed.

Checks: each endpoint without a bearer, with a wrong one and one byte
longer is 401; a server without admin_token answers 403; bad JSON, missing
or mistyped fields, a NUL in a name, names over their bounds are 400; a body
over RC_API_MAX_BODY is 413, a message over max_frame too; an unknown group
or user is 404; a publish from a non-member reaches the group's members as
a `msg` from `from` with the next seq, between the members' own sends; the
same mid again is dup with the same seq and ts and delivers nothing; a
group over its group_rate is 429; with durability batch a publish survives
a kill -9 right after its answer; GET /api/groups and /api/users count
what the server holds; disconnect closes every session of a user (on both
io threads) with bye "disconnected" and leaves the others; the API's own
session, closed, is opened again for the next publish; the metrics count
all of it.
"""
import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rctest  # noqa: E402
from rctest import T, Tcp, check, failures, passes  # noqa: E402,F401

ADMIN = "admin-token-for-the-api-test"
MAX_BODY = 32768  # RC_API_MAX_BODY


class Server(rctest.Server):
    """ringcastd whose admin calls carry the bearer ADMIN unless told otherwise."""

    def __init__(self, extra=(), durability="off", data_dir=None):
        super().__init__(extra, durability=durability, data_dir=data_dir, token=ADMIN, prefix="ringcast-api-")


def join_many(c, n):
    """Joins many-0 .. many-(n-1), pipelined; the number joined."""
    for i in range(n):
        c.send({"t": "join", "g": "many-%d" % i, "rid": 1000 + i})
    joined = 0
    while joined < n:
        r = c.recv()
        if r is None:
            break
        joined += r.get("t") == "joined"
    return joined


ENDPOINTS = [("POST", "/api/publish", {"g": "room", "from": "x", "body": "b"}),
             ("POST", "/api/disconnect", {"user": "x"}),
             ("GET", "/api/groups/room", None),
             ("GET", "/api/users/alice", None)]


def is_error(r, status, code):
    st, body = r
    return st == status and isinstance(body, dict) and body.get("error") == code and isinstance(body.get("msg"), str)


def test_auth(srv):
    for method, path, body in ENDPOINTS:
        check(is_error(srv.call(method, path, body, token=None), 401, "unauthorized"), "%s without a bearer: 401" % path)
        check(is_error(srv.call(method, path, body, token="wrong"), 401, "unauthorized"), "%s with a wrong bearer: 401" % path)
        check(is_error(srv.call(method, path, body, token=ADMIN + "x"), 401, "unauthorized"),
              "%s with the token one byte longer: 401" % path)
    check(is_error(srv.call("GET", "/api/nothing"), 404, "not_found"), "an unknown /api/ path with the bearer: 404")
    check(is_error(srv.call("GET", "/api/publish"), 405, "method_not_allowed"), "GET /api/publish: 405")


def test_no_admin_token():
    srv = Server()
    try:
        for method, path, body in ENDPOINTS:
            check(is_error(srv.call(method, path, body), 403, "forbidden"), "%s without admin_token configured: 403" % path)
    finally:
        srv.stop()


def test_bad_requests(srv):
    bad = [("not JSON", b"{\"g\": "), ("not an object", b"[1, 2]"), ("empty", b""),
           ("no from", {"g": "room", "body": "b"}), ("no g", {"from": "x", "body": "b"}),
           ("no body", {"g": "room", "from": "x"}), ("body a number", {"g": "room", "from": "x", "body": 3}),
           ("NUL in from", {"g": "room", "from": "a\u0000b", "body": "b"}),
           ("NUL in g", {"g": "ro\u0000om", "from": "x", "body": "b"}),
           ("from of 65 bytes", {"g": "room", "from": "u" * 65, "body": "b"}),
           ("g of 129 bytes", {"g": "g" * 129, "from": "x", "body": "b"}),
           ("mid of 65 bytes", {"g": "room", "from": "x", "body": "b", "mid": "m" * 65}),
           ("t given", {"t": "send", "g": "room", "from": "x", "body": "b"})]
    for what, body in bad:
        check(is_error(srv.call("POST", "/api/publish", body), 400, "bad_request"), "publish, %s: 400" % what)
    for what, body in [("not JSON", b"user=carol"), ("no user", {}), ("user a number", {"user": 7}),
                       ("NUL in user", {"user": "a\u0000"}), ("user of 65 bytes", {"user": "u" * 65})]:
        check(is_error(srv.call("POST", "/api/disconnect", body), 400, "bad_request"), "disconnect, %s: 400" % what)
    check(is_error(srv.call("GET", "/api/groups/" + "g" * 129), 400, "bad_request"), "GET a group of 129 bytes: 400")
    check(is_error(srv.call("GET", "/api/users/a%00b"), 400, "bad_request"), "GET a user with %00: 400")
    check(is_error(srv.call("GET", "/api/users/a%zz"), 400, "bad_request"), "GET a user with a bad escape: 400")
    big = json.dumps({"g": "room", "from": "x", "body": "b" * MAX_BODY})
    check(is_error(srv.call("POST", "/api/publish", big), 413, "too_large"), "a body over RC_API_MAX_BODY: 413")
    frame = json.dumps({"g": "room", "from": "x", "body": "b" * 2000})  # max_frame is 1024 here
    check(is_error(srv.call("POST", "/api/publish", frame), 413, "too_large"), "a message over max_frame: 413")


def test_publish(srv):
    alice, bob = Tcp(srv.port, "alice"), Tcp(srv.port, "bob")
    check(is_error(srv.call("POST", "/api/publish", {"g": "room", "from": "backend", "body": "x"}), 404, "not_found"),
          "publish to a group nobody joined: 404")
    check(is_error(srv.call("GET", "/api/groups/room"), 404, "not_found"), "GET an unknown group: 404")
    check(is_error(srv.call("GET", "/api/users/nobody"), 404, "not_found"), "GET an unknown user: 404")
    for c in (alice, bob):
        r = c.request({"t": "join", "g": "room"})
        check(r is not None and r.get("t") == "joined", "%s joins room" % ("alice" if c is alice else "bob"))
    r = alice.request({"t": "send", "g": "room", "body": "one"})
    check(r is not None and r.get("t") == "ack" and r.get("seq") == 1, "alice sends seq 1")
    st, ans = srv.call("POST", "/api/publish", {"g": "room", "from": "backend", "body": "from the backend", "mid": "p1"})
    check(st == 200 and ans.get("g") == "room" and ans.get("seq") == 2 and ans.get("dup") is False
          and isinstance(ans.get("ts"), int) and ans["ts"] > 1600000000000,
          "publish from a non-member: 200 {g, seq 2, ts, dup false}: %r" % (ans,))
    for name, c in (("alice", alice), ("bob", bob)):
        m1, m2 = c.next_msg(), c.next_msg()
        check(m1 is not None and m1.get("seq") == 1 and m1.get("from") == "alice", "%s gets seq 1 from alice" % name)
        check(m2 is not None and m2.get("seq") == 2 and m2.get("from") == "backend" and m2.get("body") == "from the backend"
              and m2.get("mid") == "p1", "%s gets the publish as msg seq 2 from backend: %r" % (name, m2))
    r = bob.request({"t": "send", "g": "room", "body": "three"})
    check(r is not None and r.get("seq") == 3, "bob's next send is seq 3")
    st, again = srv.call("POST", "/api/publish", {"g": "room", "from": "backend", "body": "from the backend", "mid": "p1"})
    check(st == 200 and again.get("dup") is True and again.get("seq") == 2 and again.get("ts") == ans.get("ts"),
          "the same mid again: dup true with the same seq and ts: %r" % (again,))
    st, other = srv.call("POST", "/api/publish", {"g": "room", "from": "backend2", "body": "x", "mid": "p1"})
    check(st == 200 and other.get("dup") is False and other.get("seq") == 4, "the same mid from another user is new: seq 4")
    seqs = []
    for _ in range(2):
        m = alice.next_msg()
        seqs.append(m.get("seq") if m else None)
    check(seqs == [3, 4], "alice receives 3 and 4, nothing for the dup: %r" % (seqs,))
    st, g = srv.call("GET", "/api/groups/room")
    check(st == 200 and g.get("g") == "room" and g.get("seq") == 4 and g.get("members") == 2
          and sorted(g.get("online", [])) == ["alice", "bob"] and g.get("n_online") == 2,
          "GET /api/groups/room: seq 4, 2 members, alice and bob online: %r" % (g,))
    st, u = srv.call("GET", "/api/users/alice")
    check(st == 200 and u.get("user") == "alice" and u.get("sessions") == 1 and u.get("groups") == ["room"]
          and u.get("n_groups") == 1, "GET /api/users/alice: 1 session, groups [room]: %r" % (u,))
    bob.close()
    end, online = time.time() + T, None
    while time.time() < end:
        online = srv.call("GET", "/api/groups/room")[1].get("online")
        if online == ["alice"]:
            break
        time.sleep(0.05)
    st, g = srv.call("GET", "/api/groups/room")
    check(online == ["alice"] and g.get("members") == 2, "bob disconnected: online [alice], still 2 stored members")
    st, u = srv.call("GET", "/api/users/bob")
    check(st == 200 and u.get("sessions") == 0 and u.get("groups") == ["room"], "bob offline: 0 sessions, groups [room]")
    r = alice.request({"t": "join", "g": "a b/c"})
    st, g = srv.call("GET", "/api/groups/" + urllib.parse.quote("a b/c", safe=""))
    check(st == 200 and g.get("g") == "a b/c" and g.get("members") == 1, "a percent-encoded group name: %r" % (g,))
    alice.close()


def test_disconnect(srv):
    carols = [Tcp(srv.port, "carol") for _ in range(6)]
    dave = Tcp(srv.port, "dave")
    r = carols[0].request({"t": "join", "g": "carols"})
    check(r is not None and r.get("t") == "joined", "carol joins carols")
    per_io = [srv.metric("ringcast_connections_open", 'io="%d"' % i) for i in range(2)]
    print("     connections per io thread:", per_io, flush=True)
    st, u = srv.call("GET", "/api/users/carol")
    check(st == 200 and u.get("sessions") == 6 and u.get("groups") == ["carols"], "GET /api/users/carol: 6 sessions")
    st, ans = srv.call("POST", "/api/disconnect", {"user": "carol"})
    check(st == 200 and ans == {"closed": 6}, "disconnect carol: closed 6: %r" % (ans,))
    byes = 0
    for c in carols:
        m = c.recv()
        while m is not None and m.get("t") != "bye":
            m = c.recv()
        if m is not None and m.get("reason") == "disconnected" and c.recv() is None:
            byes += 1
    check(byes == 6, "each of carol's sessions got bye disconnected, then the close (%d of 6)" % byes)
    check(dave.alive(), "dave's session stays open")
    st, u = srv.call("GET", "/api/users/carol")
    check(st == 200 and u.get("sessions") == 0 and u.get("groups") == ["carols"],
          "carol afterwards: 0 sessions, her stored membership kept: %r" % (u,))
    st, ans = srv.call("POST", "/api/disconnect", {"user": "nobody"})
    check(st == 200 and ans == {"closed": 0}, "disconnect a user without sessions: closed 0")
    check(srv.metric("ringcast_api_disconnected_sessions_total") == 6, "ringcast_api_disconnected_sessions_total is 6")
    st, ans = srv.call("POST", "/api/disconnect", {"user": "ringcast.api"})
    check(st == 200 and ans == {"closed": 1}, "disconnect the API's own session: closed 1")
    end = time.time() + T
    while time.time() < end and srv.call("GET", "/api/users/ringcast.api")[0] != 404:  # 404: no session left
        time.sleep(0.02)  # closed once its bye is sent (a publish in between would race the close)
    st, pub = srv.call("POST", "/api/publish", {"g": "carols", "from": "backend", "body": "after"})
    check(st == 200 and pub.get("seq") == 1, "the next publish opens a new session of its own: 200, seq 1: %r" % (pub,))
    dave.close()


def test_moves(srv):
    """Publishes and group reads while groups move between shards
    (POST /admin/shards): every publish gets the next seq, and a member
    receives them all in order."""
    c = Tcp(srv.port, "hank")
    c.request({"t": "join", "g": "moved"})  # owned by shard 0 of 1 and another one of 4
    moved0 = srv.metric("ringcast_groups_moved_total")
    seqs, reads_ok, resized = [], True, 0
    for i in range(40):
        if i % 8 == 0:
            st, _ = srv.call("POST", "/admin/shards?count=%d" % (4 if (i // 8) % 2 == 0 else 1), raw=True)
            resized += st == 200
        st, ans = srv.call("POST", "/api/publish", {"g": "moved", "from": "backend", "body": "m%d" % i})
        seqs.append(ans.get("seq") if st == 200 else None)
        st, g = srv.call("GET", "/api/groups/moved")
        reads_ok = reads_ok and st == 200 and g.get("seq") == i + 1
    check(resized == 5 and srv.metric("ringcast_groups_moved_total") > moved0, "the shard count changed 5 times, groups moved")
    check(seqs == list(range(1, 41)), "40 publishes across moves got seqs 1..40: %r" % (seqs,))
    check(reads_ok, "GET /api/groups/moved saw each publish's seq across moves")
    got = []
    for _ in range(40):
        m = c.next_msg()
        got.append((m.get("seq"), m.get("body")) if m else None)
    check(got == [(i + 1, "m%d" % i) for i in range(40)], "hank received all 40 in order")
    c.close()


def test_list_bound(srv):
    """A user in 1001 groups: 1000 listed (RC_CALL_MAX_NAMES), n_groups counts all."""
    c = Tcp(srv.port, "gina")
    check(join_many(c, 1001) == 1001, "gina joins 1001 groups")
    st, u = srv.call("GET", "/api/users/gina")
    groups = u.get("groups", []) if isinstance(u, dict) else []
    check(st == 200 and len(groups) == 1000 and len(set(groups)) == 1000 and u.get("n_groups") == 1001
          and all(g.startswith("many-") for g in groups), "GET /api/users/gina: 1000 groups listed, n_groups 1001")
    c.close()


def test_rate_limit():
    srv = Server(["--admin-token", ADMIN, "--group-rate", "1", "--group-burst", "1"])
    try:
        c = Tcp(srv.port, "erin")
        c.request({"t": "join", "g": "slow"})
        first = srv.call("POST", "/api/publish", {"g": "slow", "from": "backend", "body": "1"})
        second = srv.call("POST", "/api/publish", {"g": "slow", "from": "backend", "body": "2"})
        check(first[0] == 200, "group_rate 1: the first publish passes")
        check(is_error(second, 429, "rate_limited"), "group_rate 1: the second within the second is 429: %r" % (second,))
        c.close()
    finally:
        srv.stop()


def test_stored():
    """With durability batch the publish is answered once stored: a kill -9
    right after it loses nothing."""
    srv = Server(["--admin-token", ADMIN], durability="batch")
    c = Tcp(srv.port, "frank")
    c.request({"t": "join", "g": "kept"})
    st, ans = srv.call("POST", "/api/publish", {"g": "kept", "from": "backend", "body": "stored", "mid": "k1"})
    check(st == 200 and ans.get("seq") == 1, "durability batch: publish answered seq 1")
    c.close()
    srv.kill()
    srv = Server(["--admin-token", ADMIN], durability="batch", data_dir=srv.dir)
    try:
        st, g = srv.call("GET", "/api/groups/kept")
        check(st == 200 and g.get("seq") == 1 and g.get("members") == 1, "after kill -9: the group has seq 1: %r" % (g,))
        c = Tcp(srv.port, "frank")
        r = c.request({"t": "hist", "g": "kept"})
        msgs = r.get("msgs", []) if r else []
        check(len(msgs) == 1 and msgs[0].get("from") == "backend" and msgs[0].get("body") == "stored",
              "after kill -9: history holds the published message")
        st, u = srv.call("GET", "/api/users/frank")
        check(st == 200 and u.get("sessions") == 1 and u.get("groups") == ["kept"] and u.get("n_groups") == 1,
              "durability batch: GET /api/users/frank from the store's index: %r" % (u,))
        join_many(c, 1001)
        st, u = srv.call("GET", "/api/users/frank")
        groups = u.get("groups", []) if isinstance(u, dict) else []
        check(st == 200 and len(set(groups)) == 1000 and u.get("n_groups") == 1002,
              "durability batch: frank in 1002 groups, 1000 listed from the index")
        c.request({"t": "leave", "g": "kept"})
        st, u = srv.call("GET", "/api/users/frank")
        check(st == 200 and "kept" not in u.get("groups", []) and u.get("n_groups") == 1001,
              "durability batch: a leave is in the index at once")
        st, again = srv.call("POST", "/api/publish", {"g": "kept", "from": "backend", "body": "stored", "mid": "k1"})
        check(st == 200 and again.get("dup") is True and again.get("seq") == 1, "after kill -9: the same mid is still dup")
        c.close()
    finally:
        srv.stop()


def test_metrics(srv):
    check(srv.metric("ringcast_api_requests_total", 'endpoint="publish",code="200"') >= 3,
          "ringcast_api_requests_total counts publishes answered 200")
    check(srv.metric("ringcast_api_requests_total", 'endpoint="groups",code="401"') == 3,
          "ringcast_api_requests_total counts the 401s of groups")
    check(srv.metric("ringcast_api_requests_total", 'endpoint="publish",code="413"') == 2,
          "ringcast_api_requests_total counts the 413s")


def main():
    if not os.path.exists(os.environ.get("RINGCASTD", "build/ringcastd")):
        print("no ringcastd to test")
        return 77
    test_no_admin_token()
    test_rate_limit()
    test_stored()
    srv = Server(["--admin-token", ADMIN, "--io-threads", "2", "--max-frame", "1024"])
    try:
        test_auth(srv)
        test_bad_requests(srv)
        test_publish(srv)
        test_disconnect(srv)
        test_list_bound(srv)
        test_moves(srv)
        test_metrics(srv)
    finally:
        code = srv.stop()
    check(code == 0, "ringcastd exits 0 on SIGTERM")
    print("%d passed, %d failed" % (len(passes), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
