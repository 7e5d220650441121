#!/usr/bin/python3
"""The files in deploy/, checked with the real tools (deploy/README.md):

- deploy/ringcastd.service passes `systemd-analyze verify` without a
  warning (ExecStart pointed at the built binary);
- ringcastd speaks sd_notify as Type=notify expects: READY=1 once it
  serves, WATCHDOG=1 while its io threads turn (WATCHDOG_USEC set),
  RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM, exit 0;
- a real Prometheus (Debian's) scrapes the admin port with
  deploy/prometheus.yml's job, and every metric the Grafana dashboard
  (deploy/grafana/dashboards/ringcast.json) queries exists there;
- deploy/ringcastd.ini passes `ringcastd --check-config`.

Starts everything itself on free loopback ports; every wait is bounded.
Exit 0 when every check passed, 77 when a tool is missing (skipped).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RINGCASTD = os.environ.get("RINGCASTD", os.path.join(ROOT, "build", "ringcastd"))
T = 10.0  # longest wait for any one step, seconds

sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from rctest import check, failures, free_port  # noqa: E402


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


class Server:
    def __init__(self, env=None):
        self.dir = tempfile.mkdtemp(prefix="ringcast-deploy-")
        self.port, self.http, self.admin = free_port(), free_port(), free_port()
        self.proc = subprocess.Popen(
            [RINGCASTD, "--data-dir", self.dir, "--durability", "off", "--port", str(self.port),
             "--http-port", str(self.http), "--admin-port", str(self.admin)],
            stderr=subprocess.DEVNULL, env=env)

    def ready(self):
        end = time.time() + 20
        while time.time() < end:
            try:
                if http_get("http://127.0.0.1:%d/readyz" % self.admin)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=T)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


def test_unit():
    unit = open(os.path.join(ROOT, "deploy", "ringcastd.service")).read()
    check("Type=notify" in unit and "WatchdogSec=" in unit and "ExecReload=" in unit,
          "unit: Type=notify, a watchdog, ExecReload")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ringcastd.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/local/bin/ringcastd", os.path.abspath(RINGCASTD)))
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        check(r.returncode == 0 and out == "", "systemd-analyze verify: clean (%s)" % (out or "no output"))


def test_notify():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        srv = Server(env)
        got = []

        def wait_for(word, limit=T):
            end = time.time() + limit
            while time.time() < end:
                try:
                    msg = sock.recv(4096).decode()
                except socket.timeout:
                    continue
                got.append(msg)
                if word in msg.split("\n"):
                    return True
            return False

        check(wait_for("READY=1"), "sd_notify READY=1 once serving")
        check(srv.ready(), "and /readyz says ready")
        check(wait_for("WATCHDOG=1"), "sd_notify WATCHDOG=1 at half of WATCHDOG_USEC")
        srv.proc.send_signal(1)  # SIGHUP
        check(wait_for("RELOADING=1"), "SIGHUP: RELOADING=1")
        check(wait_for("READY=1"), "then READY=1 again")
        srv.proc.terminate()
        check(wait_for("STOPPING=1"), "SIGTERM: STOPPING=1")
        check(srv.stop() == 0, "exit 0")
        sock.close()


def dashboard_metrics():
    dash = json.load(open(os.path.join(ROOT, "deploy", "grafana", "dashboards", "ringcast.json")))
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            if "expr" in o:
                exprs.append(o["expr"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(dash)
    names = set()
    for e in exprs:
        names.update(re.findall(r"\b(ringcast_[a-z0-9_]+)", e))
    return exprs, sorted(names)


def test_prometheus():
    prom = shutil.which("prometheus")
    if not prom:
        print("SKIP prometheus not installed")
        return
    exprs, names = dashboard_metrics()
    check(len(names) >= 10, "the dashboard queries %d ringcast metrics" % len(names))
    srv = Server()
    check(srv.ready(), "ringcastd ready for Prometheus")
    conf = open(os.path.join(ROOT, "deploy", "prometheus.yml")).read()
    check("job_name: ringcast" in conf and "ringcastd:7481" in conf, "deploy/prometheus.yml scrapes ringcastd:7481")
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:  # the same file, this server's address, a faster scrape
            f.write(conf.replace("ringcastd:7481", "127.0.0.1:%d" % srv.admin)
                        .replace("scrape_interval: 15s", "scrape_interval: 1s"))
        web = free_port()
        p = subprocess.Popen([prom, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(d, "data"),
                              "--web.listen-address=127.0.0.1:%d" % web],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            api = "http://127.0.0.1:%d/api/v1/" % web
            up = False
            end = time.time() + 60
            while time.time() < end and not up:
                try:
                    _, body = http_get(api + "query?query=" + urllib.parse.quote('up{job="ringcast"}'))
                    res = json.loads(body)["data"]["result"]
                    up = bool(res) and res[0]["value"][1] == "1"
                except (OSError, ValueError, KeyError):
                    pass
                if not up:
                    time.sleep(0.5)
            check(up, "Prometheus scrapes the admin port (up == 1)")
            missing = []
            for n in names:
                _, body = http_get(api + "query?query=" + urllib.parse.quote("count(%s)" % n))
                if not json.loads(body)["data"]["result"]:
                    missing.append(n)
            check(not missing, "every metric the dashboard queries exists: %s" % (", ".join(missing) or "all %d" % len(names)))
            bad = []
            for e in exprs:
                expr = e.replace("$__rate_interval", "1m").replace("$__interval", "1m")
                try:
                    _, body = http_get(api + "query?query=" + urllib.parse.quote(expr))
                    if json.loads(body)["status"] != "success":
                        bad.append(e)
                except OSError:
                    bad.append(e)
            check(not bad, "every dashboard query parses: %s" % ("; ".join(bad) or "all %d" % len(exprs)))
        finally:
            p.terminate()
            try:
                p.wait(timeout=T)
            except subprocess.TimeoutExpired:
                p.kill()
    check(srv.stop() == 0, "ringcastd stops cleanly after the scrape")


def test_example_config():
    r = subprocess.run([RINGCASTD, "--check-config", os.path.join(ROOT, "deploy", "ringcastd.ini")],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "deploy/ringcastd.ini passes --check-config (%s)" % (r.stdout + r.stderr).strip())


def main():
    if not shutil.which("systemd-analyze"):
        print("SKIP systemd-analyze missing")
        return 77
    test_example_config()
    test_unit()
    test_notify()
    test_prometheus()
    print("%d failed" % len(failures) if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
