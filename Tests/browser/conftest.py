"""Fixtures for the browser tests: the server under test and headless Chromium browsers.

Run through scripts/browser-tests, which starts the server and sets HEADCOUNT_* variables.
"""
import http.server
import json
import os
import threading
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")


def wait_for(fn, timeout=10.0, interval=0.1, what="condition"):
    """Poll fn() until it returns something truthy; fail with the last value/error otherwise."""
    end = time.monotonic() + timeout
    last, error = None, None
    while True:
        try:
            last = fn()
            error = None
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - report whatever went wrong last
            error = e
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {last!r}, last error {error!r}")
        time.sleep(interval)


def http_json(url, token=None, timeout=5):
    """GET url and return (status, parsed JSON or None)."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, None


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """The headcount server started by scripts/browser-tests; tests may stop and restart it."""

    def __init__(self):
        self.url = os.environ["HEADCOUNT_URL"]
        self.port = int(os.environ["HEADCOUNT_PORT"])
        self.bin = os.environ["HEADCOUNT_BIN"]
        self.pidfile = os.environ["HEADCOUNT_PIDFILE"]
        self.log = os.environ["HEADCOUNT_LOG"]
        self.work = os.environ.get("HEADCOUNT_WORK", tempfile.gettempdir())

    def get(self, path, token=None):
        status, body = http_json(self.url + path, token)
        assert status == 200, f"GET {path} -> {status} {body}"
        return body

    def room(self, room):
        return self.get("/api/rooms/" + room)

    def pid(self):
        with open(self.pidfile) as f:
            return int(f.read().strip())

    def stop(self, timeout=10):
        pid = self.pid()
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: not port_open(self.port), timeout=timeout, what="the server to stop on SIGTERM")
        except AssertionError:
            warnings.warn(f"server pid {pid} still listening {timeout}s after SIGTERM (open SSE streams block shutdown?); killing it")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not port_open(self.port), timeout=5, what="the server to die")

    def start(self, timeout=30):
        """Start the server again with the same command line and port."""
        pid = self.spawn(["serve", "--port", str(self.port), "--leave-grace", "1"])
        with open(self.pidfile, "w") as f:
            f.write(str(pid))
        self.wait_ready(self.url, timeout)

    def spawn(self, args):
        log = open(self.log, "ab")
        p = subprocess.Popen([self.bin, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return p.pid

    @staticmethod
    def wait_ready(url, timeout=30, token=None):
        wait_for(lambda: http_json(url + "/api/stats", token, timeout=1)[0] == 200, timeout=timeout, interval=0.2,
                 what=f"{url}/api/stats to answer")


@pytest.fixture(scope="session")
def server():
    if "HEADCOUNT_URL" not in os.environ:
        pytest.exit("run the browser tests through scripts/browser-tests", returncode=2)
    return Server()


def new_browser():
    profile = tempfile.mkdtemp(prefix="headcount-chrome-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={profile}", "--window-size=1200,800", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
                "--force-device-scale-factor=1", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    # make the viewport (not the window) 1200x800
    inner = driver.execute_script("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
    driver.set_window_size(1200 + inner[0], 800 + inner[1])
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(15)
    driver._headcount_profile = profile
    return driver


def close_browser(driver):
    try:
        driver.quit()
    except Exception:  # noqa: BLE001 - already gone
        pass
    shutil.rmtree(driver._headcount_profile, ignore_errors=True)


@pytest.fixture
def browsers():
    """Factory for browsers, each with its own profile (= its own visitor). All are closed at the end."""
    made = []

    def make():
        d = new_browser()
        made.append(d)
        return d

    make.close = lambda d: (close_browser(d), made.remove(d))
    yield make
    for d in made:
        close_browser(d)


@pytest.fixture(scope="session")
def pages():
    """Serves small HTML pages from another origin (127.0.0.1, another port). pages.add(body) -> URL."""
    store = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = store.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.daemon_threads = True
    threading.Thread(target=site.serve_forever, daemon=True).start()

    class Pages:
        def add(self, html):
            path = f"/page{len(store)}.html"
            store[path] = ("<!doctype html><meta charset='utf-8'><title>test page</title>"
                           "<link rel='icon' href='data:,'>\n" + html).encode()
            return f"http://127.0.0.1:{site.server_address[1]}{path}"

    yield Pages()
    site.shutdown()
    site.server_close()
