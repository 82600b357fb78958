"""Helpers of the transport suite (scripts/e2e-transports), on top of hc.py.

Every SSE stream, whatever carries it, must be served with the same guarantees: the first request of a
fresh HTTP/1.1 connection, a later request of a keep-alive HTTP/1.1 connection, HTTP/1.1 over TLS and
HTTP/2 streams over TLS. These helpers speak each of them from one thread, with every wait bounded:

- `H1`: one HTTP/1.1 connection (plain or TLS) that sends ordinary requests and then a stream request,
  and decodes the chunked stream incrementally (events, heartbeats, the final `0` chunk, EOF).
- `H2`: one HTTP/2 connection over TLS (the PyPI package `h2`, imported lazily so that the HTTP/1 tests
  need only the standard library), with ordinary request streams, SSE streams, RST_STREAM, and optional
  flow-control starvation (small INITIAL_WINDOW_SIZE, no WINDOW_UPDATE ever).
- `tls_files()` / `client_context()` / `tls_server()`: a self-signed certificate for 127.0.0.1 (made with
  openssl unless the driver passed one in HC_TLS_CERT / HC_TLS_KEY) and a server that serves HTTPS.
- `transport_gauges()`: `headcount_streams_open{transport="http1"|"http2"}` from /metrics.
- `Churn`: a thread that joins and leaves a room every ~10 ms, so that frozen readers fill up.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import hc

# ---------- TLS ----------


def tls_files():
    """(cert, key) paths: the driver's (HC_TLS_CERT, HC_TLS_KEY) or a pair made here in HC_WORK."""
    cert, key = os.environ.get("HC_TLS_CERT"), os.environ.get("HC_TLS_KEY")
    if cert and key and os.path.exists(cert) and os.path.exists(key):
        return cert, key
    cert, key = os.path.join(hc.WORK, "transports-cert.pem"), os.path.join(hc.WORK, "transports-key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
        if os.environ.get("HC_HOST_ADDR"):
            san += f",IP:{os.environ['HC_HOST_ADDR']}"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", san],
                       check=True, capture_output=True, timeout=60)
    os.environ["HC_TLS_CERT"], os.environ["HC_TLS_KEY"] = cert, key
    return cert, key


def client_context(alpn, verify=True):
    """A client TLS context offering `alpn` (a list), trusting the test certificate (any address)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if verify:
        ctx.load_verify_locations(tls_files()[0])
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_server(name, args=(), host="127.0.0.1"):
    """A `headcount serve` with --tls-cert/--tls-key; its probes and request() use HTTP/1.1 over TLS."""
    cert, key = tls_files()
    return hc.Server(name, [*args, "--tls-cert", cert, "--tls-key", key], host=host,
                     tls=client_context(["http/1.1"]))


def start_server(r, name, args=(), tls=False, host="127.0.0.1"):
    """Starts a server; when it cannot start because this build rejects a flag the test needs (the server
    before the transport rewrite has no --first-request-timeout or --idle-timeout), records that as the
    failure and returns None."""
    try:
        return tls_server(name, args, host) if tls else hc.Server(name, args, host=host)
    except RuntimeError as e:
        text = str(e)
        if re.search(r"[Uu]nknown option|[Uu]nexpected argument|Error: ", text):
            flags = [a for a in args if a.startswith("--")]
            r.check(False, f"`headcount serve {' '.join(flags)}` does not start on this build: {text[-300:]}")
            return None
        raise


# ---------- metrics ----------


def transport_gauges(server):
    """{'http1': n, 'http2': m, 'unlabelled': k or None, 'series': [...]} of headcount_streams_open."""
    m = server.metrics()
    out = {"http1": None, "http2": None, "unlabelled": None, "series": []}
    for key, value in m.items():
        base, _, rest = key.partition("{")
        if base != "headcount_streams_open":
            continue
        out["series"].append(f"{key} {value:g}")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if not labels:
            out["unlabelled"] = value
        elif labels.get("transport") in ("http1", "http2"):
            out[labels["transport"]] = value
    return out


def check_gauges(r, server, http1, http2, what, timeout=2.0):
    """Checks headcount_streams_open{transport=...} (polled up to `timeout`): say plainly when the series
    are missing (a build without the transport label) rather than reporting a wrong number."""
    g = transport_gauges(server)
    if g["http1"] is not None and g["http2"] is not None:
        g = hc.wait_until(lambda: (lambda g: g if g["http1"] == http1 and g["http2"] == http2 else None)(transport_gauges(server)),
                          timeout) or transport_gauges(server)
        if g["http1"] == http1 and g["http2"] == http2:
            return True
    if g["http1"] is None or g["http2"] is None:
        return r.check(False, f"{what}: /metrics has no headcount_streams_open{{transport=\"http1\"}} / "
                              f"{{transport=\"http2\"}} series (it has: {', '.join(g['series']) or 'none'})")
    return r.check(False, f"{what}: headcount_streams_open http1={g['http1']:g} http2={g['http2']:g}, "
                          f"expected http1={http1} http2={http2}")


def room_is(server, room, online, connections):
    return server.room(room) == {"room": room, "online": online, "connections": connections}


# ---------- HTTP/1.1 ----------

# Tests whose subject is not connection reuse itself (slow readers, drain, pipelining) wait this long
# between an ordinary response and the next request on the connection, so that a failure is about their
# subject; keepalive-stream and tls-http1-stream send the next request back-to-back, as browsers do.
REUSE_PAUSE = 0.05


class Closed(Exception):
    pass


def _recv(sock, n=65536):
    """recv that maps a peer's close (EOF, RST, TLS EOF) to b''."""
    try:
        return sock.recv(n)
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError):
        return b""
    except ssl.SSLError as e:
        if "EOF" in str(e) or "ZERO_RETURN" in str(e):
            return b""
        raise


def request_bytes(path, host="127.0.0.1", headers=None, stream=False):
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if stream:
        lines.append("Accept: text/event-stream")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class H1:
    """One HTTP/1.1 connection (keep-alive) to `addr`; `tls` wraps it in a client SSLContext."""

    def __init__(self, addr, tls=None, rcvbuf=None, timeout=10):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(addr)
        if tls is not None:
            s = tls.wrap_socket(s, server_hostname=addr[0])
        self.sock = s
        self.addr = addr
        self.host = addr[0]
        self.buf = b""          # received, not yet parsed
        self.eof = False
        self.sent = []          # request paths sent on this connection, in order (for error messages)
        # stream state
        self.status = None
        self.headers = {}
        self.chunked = False
        self.body = b""         # decoded stream body, not yet split into events
        self.ended = False      # the final 0 chunk arrived
        self.events = []        # every parsed event's data (dict), in order
        self.cursor = 0         # events before this were looked at by wait_event
        self.heartbeats = 0
        self.retry = None
        self.stream_bytes = 0

    @property
    def alpn(self):
        return self.sock.selected_alpn_protocol() if isinstance(self.sock, ssl.SSLSocket) else None

    def _fill(self, deadline):
        """Reads once (waiting at most until `deadline`); False on timeout, raises Closed on EOF."""
        if self.eof:
            raise Closed("connection closed")
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(min(left, 1.0))
        try:
            chunk = _recv(self.sock)
        except socket.timeout:
            return False
        if not chunk:
            self.eof = True
            raise Closed("connection closed")
        self.buf += chunk
        return True

    def _what(self):
        n = len(self.sent)
        return f"GET {self.sent[-1] if n else '?'} (request {n} on this connection{', after ' + ', '.join(self.sent[:-1]) if n > 1 else ''})"

    def _head(self, deadline):
        while b"\r\n\r\n" not in self.buf:
            try:
                if not self._fill(deadline) and time.monotonic() >= deadline:
                    raise TimeoutError(f"no response head to {self._what()} within the timeout")
            except Closed:
                raise Closed(f"the server closed the connection without answering {self._what()}") from None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return hc.parse_head(head)

    def request(self, path, headers=None, timeout=10):
        """An ordinary keep-alive request; reads exactly its response. Returns (status, headers, body)."""
        self.sent.append(path)
        self.sock.sendall(request_bytes(path, self.host, headers))
        return self.read_response(timeout)

    def read_response(self, timeout=10):
        deadline = time.monotonic() + timeout
        status, headers = self._head(deadline)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size_line, sep, rest = self.buf.partition(b"\r\n")
                if sep:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        if rest.startswith(b"\r\n"):
                            self.buf = rest[2:]
                            return status, headers, body
                    elif len(rest) >= size + 2:
                        body += rest[:size]
                        self.buf = rest[size + 2:]
                        continue
                if not self._fill(deadline) and time.monotonic() >= deadline:
                    raise TimeoutError("chunked body incomplete")
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                if not self._fill(deadline) and time.monotonic() >= deadline:
                    raise TimeoutError("body incomplete")
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, headers, body
        # Neither: the body runs to EOF.
        try:
            while time.monotonic() < deadline:
                self._fill(deadline)
        except Closed:
            pass
        body, self.buf = self.buf, b""
        return status, headers, body

    def start_stream(self, path, headers=None, timeout=10, read_head=True):
        """Sends a stream request; with read_head, waits for the response head (returns the status)."""
        self.sent.append(path)
        self.sock.sendall(request_bytes(path, self.host, headers, stream=True))
        if not read_head:
            return None
        return self.read_stream_head(timeout)

    def read_stream_head(self, timeout=10):
        self.status, self.headers = self._head(time.monotonic() + timeout)
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._decode()
        return self.status

    def _decode(self):
        if self.chunked:
            while not self.ended:
                size_line, sep, rest = self.buf.partition(b"\r\n")
                if not sep:
                    break
                try:
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise Closed(f"bad chunk size line {size_line[:40]!r}")
                if size == 0:
                    if len(rest) >= 2:
                        self.ended = True
                        self.buf = rest[2:]
                    break
                if len(rest) < size + 2:
                    break
                self.body += rest[:size]
                self.stream_bytes += size
                self.buf = rest[size + 2:]
        else:
            self.stream_bytes += len(self.buf)
            self.body += self.buf
            self.buf = b""
        while b"\n\n" in self.body:
            block, _, self.body = self.body.partition(b"\n\n")
            data = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].strip())
                elif line.startswith(b"retry:"):
                    self.retry = int(line[6:].strip() or 0)
                elif line.startswith(b":"):
                    self.heartbeats += 1
            if data:
                try:
                    self.events.append(json.loads(b"\n".join(data)))
                except ValueError:
                    self.events.append({"raw": b"\n".join(data).decode("latin-1")})

    def pump(self, timeout):
        """Reads stream bytes for up to `timeout` s (returns early after one read); False once closed."""
        try:
            self._fill(time.monotonic() + timeout)
            self._decode()
        except Closed:
            try:
                self._decode()
            except Closed:
                pass
            return False
        return True

    def wait_event(self, pred, timeout):
        """The next event not yet looked at by wait_event that matches pred (events before it are skipped),
        or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            while self.cursor < len(self.events):
                e = self.events[self.cursor]
                self.cursor += 1
                if pred(e):
                    return e
            if time.monotonic() >= deadline or self.eof or self.ended:
                return None
            self.pump(deadline - time.monotonic())

    def last_event(self, pred, timeout):
        """Waits until the newest event matches pred (events may be coalesced)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.events and pred(self.events[-1]):
                return self.events[-1]
            if time.monotonic() >= deadline or self.eof or self.ended:
                return None
            self.pump(deadline - time.monotonic())

    def wait_close(self, timeout):
        """Reads until EOF (True) or `timeout` (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pump(deadline - time.monotonic()):
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def back_to_back(server, room, repeats, tls=None, budget=8.0):
    """On `repeats` fresh connections: GET /widget.js, GET /api/stats, then a stream in `room`, each sent
    the moment the previous response is read (as a browser reuses a connection). Bounded by `budget`
    seconds in all. Returns (connections that answered all three, failure messages, connections tried)."""
    ok, failures, tried = 0, [], 0
    end = time.monotonic() + budget
    for i in range(repeats):
        if time.monotonic() >= end:
            failures.append(f"stopped after {tried} connections: over the {budget:.0f} s budget")
            break
        tried += 1
        c = H1(server.addr, tls=tls, timeout=2)
        try:
            c.request("/widget.js", timeout=2)
            c.request("/api/stats", timeout=2)
            if c.start_stream(f"/rooms/{room}/events?visitor=r{i}", timeout=2) == 200:
                ok += 1
            else:
                failures.append(f"connection {i + 1}: the stream got {c.status}")
        except (Closed, TimeoutError, OSError) as e:
            failures.append(f"connection {i + 1}: {e}")
        finally:
            c.close()
    return ok, failures, tried


def wait_closed(sock, timeout, sink=None):
    """Reads from a raw or TLS socket until the peer closes it (appending to the bytearray `sink`, if
    given, else discarding); returns the seconds it took, or None when it is still open after `timeout`."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(min(left, 0.5))
        try:
            chunk = _recv(sock)
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
        if not chunk:
            return time.monotonic() - t0
        if sink is not None:
            sink += chunk


# ---------- HTTP/2 ----------


class H2Stream:
    __slots__ = ("sid", "status", "headers", "data", "body", "events", "ended", "reset", "reset_code", "received")

    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = {}
        self.data = b""      # not yet split into events
        self.body = b""      # everything (ordinary requests)
        self.events = []
        self.ended = False   # END_STREAM from the server
        self.reset = False   # RST_STREAM from the server
        self.reset_code = None
        self.received = 0    # DATA bytes received


class H2:
    """One HTTP/2 connection over TLS (ALPN h2). `auto_ack=False` never sends WINDOW_UPDATE; `window`
    sets SETTINGS_INITIAL_WINDOW_SIZE (every stream's receive window) in the connection preface."""

    def __init__(self, addr, window=None, auto_ack=True, rcvbuf=None, timeout=10, verify=True, handshake=True):
        import h2.config
        import h2.connection
        import h2.settings

        self._h2 = __import__("h2.events").events
        self._errors = __import__("h2.errors").errors
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(addr)
        ctx = client_context(["h2", "http/1.1"], verify=verify)
        self.sock = ctx.wrap_socket(s, server_hostname=addr[0])
        self.alpn = self.sock.selected_alpn_protocol()
        self.addr = addr
        self.auto_ack = auto_ack
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        # h2 treats any GOAWAY as the end of the connection and rejects every later frame; RFC 9113 §6.8 lets
        # the streams it admitted finish (a draining server sends GOAWAY, then their last DATA and
        # END_STREAM), so this client keeps reading after a GOAWAY (it opens no stream after one).
        sm = self.conn.state_machine
        cs, ci = h2.connection.ConnectionState, h2.connection.ConnectionInputs
        sm._transitions = {**sm._transitions, (cs.CLIENT_OPEN, ci.RECV_GOAWAY): (None, cs.CLIENT_OPEN)}
        if window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                                             h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.streams = {}
        self.closed = False       # the TCP/TLS connection ended
        self.goaway = None        # error code of a GOAWAY from the server
        self.settings_acked = False
        self.protocol_error = None
        if handshake:
            self.conn.initiate_connection()
            self.flush()

    def flush(self):
        out = self.conn.data_to_send()
        if out and not self.closed:
            try:
                self.sock.sendall(out)
            except OSError:
                self.closed = True

    def _headers(self, path):
        return [(":method", "GET"), (":scheme", "https"), (":authority", f"{self.addr[0]}:{self.addr[1]}"),
                (":path", path), ("accept", "text/event-stream"), ("user-agent", "headcount-e2e")]

    def open(self, path, send=True):
        """Opens a request stream (END_STREAM on its HEADERS); returns its H2Stream."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, self._headers(path), end_stream=True)
        st = self.streams[sid] = H2Stream(sid)
        if send:
            self.flush()
        return st

    def request(self, path, timeout=10):
        """An ordinary request on its own stream: (status, headers, body bytes)."""
        st = self.open(path)
        self.wait(lambda: st.ended or st.reset, timeout)
        if not st.ended:
            raise TimeoutError(f"GET {path} over h2: no complete response (reset={st.reset}, closed={self.closed})")
        return st.status, st.headers, st.body

    def stream(self, path, timeout=10):
        """Opens an SSE stream and waits for its response headers."""
        st = self.open(path)
        self.wait(lambda: st.status is not None or st.reset or st.ended, timeout)
        return st

    def reset(self, st):
        self.conn.reset_stream(st.sid, error_code=self._errors.ErrorCodes.CANCEL)
        self.flush()

    def pump(self, timeout):
        """Reads and handles frames for up to `timeout` s (returns after one read); False once closed."""
        if self.closed:
            return False
        self.sock.settimeout(max(0.001, min(timeout, 1.0)))
        try:
            chunk = _recv(self.sock)
        except socket.timeout:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(chunk)
        except Exception as e:  # noqa: BLE001 - a protocol error is the server's fault: report it
            hc.log(f"  h2 protocol error: {e!r}")
            self.closed = True
            self.protocol_error = repr(e)
            raise
        ev = self._h2
        for e in events:
            st = self.streams.get(getattr(e, "stream_id", None) or -1)
            if isinstance(e, ev.ResponseReceived) and st:
                hdrs = dict(e.headers)
                st.headers = hdrs
                st.status = int(hdrs.get(":status", 0))
            elif isinstance(e, ev.DataReceived):
                if st:
                    st.received += len(e.data)
                    st.body += e.data
                    st.data += e.data
                    self._split(st)
                if self.auto_ack and e.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                    except Exception:  # noqa: BLE001 - the stream may be closed already
                        pass
            elif isinstance(e, ev.StreamEnded) and st:
                st.ended = True
            elif isinstance(e, ev.StreamReset) and st:
                if e.remote_reset:
                    st.reset = True
                    st.reset_code = e.error_code
            elif isinstance(e, ev.ConnectionTerminated):
                self.goaway = e.error_code
            elif isinstance(e, ev.SettingsAcknowledged):
                self.settings_acked = True
        self.flush()
        return True

    @staticmethod
    def _split(st):
        while b"\n\n" in st.data:
            block, _, st.data = st.data.partition(b"\n\n")
            data = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
            if data:
                try:
                    st.events.append(json.loads(b"\n".join(data)))
                except ValueError:
                    st.events.append({"raw": b"\n".join(data).decode("latin-1")})

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v or time.monotonic() >= deadline or self.closed:
                return v
            self.pump(deadline - time.monotonic())

    def wait_last(self, st, pred, timeout):
        return self.wait(lambda: st.events and pred(st.events[-1]) and st.events[-1], timeout)

    def close(self, goaway=True):
        if goaway and not self.closed:
            try:
                self.conn.close_connection()
                self.flush()
            except Exception:  # noqa: BLE001
                pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


def frozen_h2(addr, path, rcvbuf=1024):
    """An HTTP/2 connection that asks for one stream and then never reads its socket again."""
    c = H2(addr, rcvbuf=rcvbuf, handshake=True)
    c.open(path)
    return c


# ---------- churn ----------


class Churn:
    """A thread that opens a stream in `room` and closes it ~5 ms later, every ~10 ms (two count changes),
    until stop() or `limit` seconds. `kind`: 'http1' (a fresh plain connection per cycle, FIN on close) or
    'h2' (streams on HTTP/2 connections, a new connection every 100 streams, RST_STREAM on close)."""

    RESETS_PER_CONNECTION = 100

    def __init__(self, addr, room, kind="http1", limit=60):
        self.addr, self.room, self.kind, self.limit = addr, room, kind, limit
        self.cycles = 0
        self.errors = 0
        self.goaways = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(10)

    def _run(self):
        end = time.monotonic() + self.limit
        i = used = 0
        conn = None
        while not self._stop.is_set() and time.monotonic() < end:
            i += 1
            path = f"/rooms/{self.room}/events?visitor=churn{i}"
            try:
                if self.kind == "h2":
                    # A fresh connection every RESETS_PER_CONNECTION streams: servers answer a flood of
                    # RST_STREAM on one connection with GOAWAY (ENHANCE_YOUR_CALM after ~140 here).
                    if conn is not None and (conn.closed or conn.goaway is not None or used >= self.RESETS_PER_CONNECTION):
                        if conn.closed or conn.goaway is not None:
                            self.goaways += 1
                            if self.goaways <= 3:
                                hc.log(f"  churn: the server closed the h2 connection after {used} streams (GOAWAY {conn.goaway})")
                        conn.close()
                        conn = None
                    if conn is None:
                        conn, used = H2(self.addr), 0
                    used += 1
                    st = conn.open(path)
                    conn.pump(0.005)
                    conn.reset(st)
                    conn.pump(0.005)
                    conn.streams.pop(st.sid, None)
                else:
                    s = socket.create_connection(self.addr, timeout=5)
                    s.sendall(request_bytes(path, stream=True))
                    time.sleep(0.005)
                    s.close()
                    time.sleep(0.005)
                self.cycles += 1
            except Exception as e:  # noqa: BLE001 - keep churning; counted
                self.errors += 1
                if self.errors <= 3:
                    hc.log(f"  churn error: {e!r}")
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()


def send_q_blocked(port, threshold=4096):
    """How many established connections from the server's `port` have more than `threshold` bytes queued
    (needs `ss`; None when it is missing)."""
    try:
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    n = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) > threshold:
            n += 1
    return n
