"""Shared helpers of the reliability suite (scripts/e2e-reliability): python3 standard library only.

A test module starts its own `headcount serve` processes through `Server`, talks to them over raw
sockets, prints details to stderr (the driver keeps them in a log) and ends with exactly one line on
stdout: `PASS <name> (<seconds> s): <summary>`, `FAIL <name> (<seconds> s): <reason>` or
`SKIP <name>: <reason>`. Every wait is bounded.
"""

import atexit
import json
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time

BIN = os.environ.get("HEADCOUNT_BIN") or os.path.join(os.getcwd(), ".build/release/headcount")
WORK = os.environ.get("HC_WORK") or "/tmp"
# Linux: bind a source address now, pick the port at connect time (lets 4-tuples share ports).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

_started = []


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_until(pred, timeout, step=0.05):
    """Polls pred() until it returns a truthy value or `timeout` seconds pass; returns the last value."""
    end = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except (OSError, ValueError) as e:
            value = None
            log(f"  (poll: {e!r})")
        if value or time.monotonic() >= end:
            return value
        time.sleep(step)


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


@atexit.register
def _stop_all():
    for p in _started:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass


class Server:
    """One `headcount serve` process on a free port of `host` (picked here, so that readiness is seen by
    polling /healthz whatever the log level; retried if another process takes the port first).

    `tls`: an ssl.SSLContext for a server started with --tls-cert/--tls-key; the readiness probe and
    request() then speak HTTP/1.1 over TLS with it (give it ALPN http/1.1)."""

    def __init__(self, name, args=(), host="127.0.0.1", start_timeout=30, tls=None):
        self.name = name
        self.host = host
        self.tls = tls
        self.log_path = os.path.join(WORK, f"{name}.log")
        self.port = None
        for _attempt in range(3):
            probe = socket.socket()
            probe.bind((host, 0))
            port = probe.getsockname()[1]
            probe.close()
            cmd = [BIN, "serve", "--host", host, "--port", str(port), *args]
            log(f"  start: {' '.join(cmd)}")
            self.logf = open(self.log_path, "w")
            self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            _started.append(self.proc)
            # The driver's trap ends whatever a crashed test left running, by pid.
            with open(os.path.join(WORK, "pids"), "a") as f:
                f.write(f"{self.proc.pid}\n")
            self.pid = self.proc.pid
            end = time.monotonic() + start_timeout
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    with self._connect((host, port), timeout=2) as s:
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if s.recv(64).startswith(b"HTTP/1.1 200"):
                            self.port = port
                            break
                except OSError:
                    pass
                time.sleep(0.05)
            if self.port is not None:
                break
            exited = self.proc.poll() is not None
            self.kill()
            if not exited or "in use" not in self.log_tail():
                break
        if self.port is None:
            raise RuntimeError(f"server {name} did not start: {self.log_tail()}")
        self.addr = (host, self.port)

    def _connect(self, addr, timeout):
        s = socket.create_connection(addr, timeout=timeout)
        if self.tls is None:
            return s
        try:
            return self.tls.wrap_socket(s, server_hostname=addr[0])
        except BaseException:
            s.close()
            raise

    def connect(self, timeout=10):
        """A connected socket (TLS-wrapped for a TLS server)."""
        return self._connect(self.addr, timeout)

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def alive(self):
        return self.proc.poll() is None

    def request(self, path, method="GET", headers=None, timeout=10):
        """One request with `Connection: close`; returns (status, lower-cased headers, body bytes)."""
        s = self.connect(timeout=timeout)
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    break  # a TLS peer that closed without close_notify: the response is complete
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        return parse_response(data)

    def json(self, path, **kw):
        status, _, body = self.request(path, **kw)
        if status != 200:
            raise ValueError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    def room(self, room):
        return self.json(f"/api/rooms/{room}")

    def stats(self):
        return self.json("/api/stats")

    def metrics(self):
        status, _, body = self.request("/metrics")
        if status != 200:
            raise ValueError(f"/metrics: {status}")
        return parse_metrics(body.decode())

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def is_idle(self):
        """Every figure at zero: no visitor, connection, room or open stream."""
        st = self.stats()
        m = self.metrics()
        return (st["online"] == 0 and st["connections"] == 0 and st["rooms"] == 0
                and metric(m, "headcount_streams_open") == 0)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def dechunk(body):
    out, rest = b"", body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return out


def parse_head(head):
    """(status, headers) of an HTTP/1 response head (bytes, without the blank line); status -1 if garbled."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def parse_response(data):
    """(status, headers, body) of a complete response (chunked bodies are decoded); status 0 when empty."""
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = dechunk(body)
    return status, headers, body


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)")


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def metric(metrics, name, **labels):
    """Sum of the series of `name` whose labels include `labels` (0 when none)."""
    total = 0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


def leaves_by_reason(metrics):
    out = {}
    for key, value in metrics.items():
        if key.startswith("headcount_leaves_total"):
            m = re.search(r'reason="([^"]*)"', key)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + value
    return out


EVENT_DATA = re.compile(rb"data: (\{[^\n]*\})\n")
RETRY = re.compile(rb"retry: (\d+)\n")


def frozen_reader(addr, path, rcvbuf):
    """A socket that asks for a stream with a small receive buffer and is then never read from."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(addr)
    s.sendall(stream_request(path))
    return s


def stream_request(path, host="127.0.0.1", version="1.1", extra=""):
    return f"GET {path} HTTP/{version}\r\nHost: {host}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()


class Result:
    """Collects failures; prints the one result line."""

    def __init__(self, name):
        self.name = name
        self.start = time.monotonic()
        self.failures = []
        self.notes = []

    def check(self, cond, message):
        if not cond:
            self.failures.append(message)
            log(f"  CHECK FAILED: {message}")
        return cond

    def note(self, text):
        self.notes.append(text)
        log(f"  {text}")

    def finish(self):
        took = time.monotonic() - self.start
        if self.failures:
            print(f"FAIL {self.name} ({took:.1f} s): " + "; ".join(self.failures[:5])
                  + (f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""), flush=True)
            return 1
        print(f"PASS {self.name} ({took:.1f} s): " + "; ".join(self.notes), flush=True)
        return 0

    def crash(self, exc):
        took = time.monotonic() - self.start
        import traceback
        traceback.print_exc(file=sys.stderr)
        print(f"FAIL {self.name} ({took:.1f} s): {type(exc).__name__}: {exc}", flush=True)
        return 1


def run(name, body):
    """Runs body(result) and exits with the test's status."""
    result = Result(name)
    try:
        body(result)
        code = result.finish()
    except Exception as e:  # noqa: BLE001 - any error is a failed test, reported on its line
        code = result.crash(e)
    _stop_all()
    sys.exit(code)
