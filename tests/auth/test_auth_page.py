#!/usr/bin/python3
"""The web chat page with a token (src/net/web/index.html, proto/PROTOCOL.md
§6.8) in headless Chromium against the real server with auth_secret: a
token given as ?token= fills the name from its sub, leaves the address
bar, connects, shows a message from a TCP session and sends one to it;
without a token the page says that the server needs one. Debian's
chromium, chromium-driver and python3-selenium; starts $RINGCASTD itself;
every wait is bounded. Exit 0 when every check passed; 77: skipped because
chromium or chromedriver is not installed.
"""
import os
import shutil
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import test_auth as ta  # noqa: E402  (the server, TCP client and checks of the token test)

WAIT_S = 15


def main():
    if not shutil.which("chromium") or not os.path.exists("/usr/bin/chromedriver"):
        print("chromium or chromedriver is not installed: skipped")
        sys.exit(77)
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv = ta.Server(["--auth-secret", ta.SECRET_A])
    profile = tempfile.mkdtemp(prefix="ringcast-auth-page-")
    driver = None
    try:
        tcp = ta.Tcp(srv.port)
        ta.check(tcp.hello(token=ta.pyjwt("tcpuser", ttl=600)).get("t") == "welcome", "a TCP session says hello")
        ta.check(tcp.request({"t": "join", "g": "lobby"}).get("t") == "joined", "and joins lobby")

        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--user-data-dir=" + profile):
            opts.add_argument(arg)
        service = webdriver.chrome.service.Service(executable_path="/usr/bin/chromedriver")
        driver = webdriver.Chrome(service=service, options=opts)
        driver.set_page_load_timeout(WAIT_S)
        wait = WebDriverWait(driver, WAIT_S)
        by_id = lambda i: driver.find_element(By.ID, i)  # noqa: E731

        token = ta.pyjwt("webby", ttl=600, groups=["lobby"])
        base = "http://127.0.0.1:%d/" % srv.http
        driver.get(base + "?" + urllib.parse.urlencode({"group": "lobby", "token": token}))
        ta.check(by_id("user").get_attribute("value") == "webby", "the name comes from the token's sub")
        ta.check("token" not in driver.current_url, "the token leaves the address bar")
        by_id("connect").click()
        try:
            wait.until(lambda d: by_id("status").text == "connected")
            connected = True
        except Exception:  # noqa: BLE001 (a timeout is the check's)
            connected = False
        ta.check(connected, "the page connects with the token (status: %s)" % by_id("status").text)

        tcp.request({"t": "send", "g": "lobby", "body": "to the page"})
        try:
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#messages [data-from="tcpuser"]'))
            shown = True
        except Exception:  # noqa: BLE001
            shown = False
        ta.check(shown, "the page shows the TCP session's message")
        by_id("message").send_keys("from the page")
        by_id("send").click()
        got = None
        for _ in range(20):
            m = tcp.recv(1.0)
            if m and m.get("t") == "msg" and m.get("from") == "webby":
                got = m
                break
        ta.check(got is not None and got.get("body") == "from the page", "the TCP session gets the page's message")

        driver.execute_script("sessionStorage.clear()")
        driver.get(base + "?" + urllib.parse.urlencode({"user": "nobody", "group": "lobby"}))
        by_id("connect").click()
        try:
            wait.until(lambda d: "Token" in by_id("notice").text)
            told = True
        except Exception:  # noqa: BLE001
            told = False
        ta.check(told, "without a token the page says the server needs one (%r)" % by_id("notice").text)
        tcp.close()
    finally:
        if driver:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        srv.stop()
    print("%d passed, %d failed" % (len(ta.passes), len(ta.failures)))
    sys.exit(1 if ta.failures else 0)


if __name__ == "__main__":
    main()
