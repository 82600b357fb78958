"""Transport test 7, tls-first-request-timeout: on the TLS port, a connection that has not completed its
first request head within --first-request-timeout (2 s here) is closed by the server within that + 1 s:

- a TCP connection that sends nothing (no ClientHello),
- a completed TLS handshake (ALPN http/1.1) that then sends nothing,
- a completed TLS handshake (ALPN h2) that sends nothing, not even the HTTP/2 preface,
- a TLS connection that sends half a request head and stops (slowloris).

A connection that completed a request in time is not cut by this timeout (keep-alive idle is governed by
--idle-timeout, 75 s by default): it is still open and answers a second request after the deadline.
"""

import socket
import threading
import time

import hc
import transports as t

FIRST_REQUEST_TIMEOUT = 2.0
LIMIT = FIRST_REQUEST_TIMEOUT + 1.0


def body(r):
    server = t.start_server(r, "tls-first-request-timeout", ["--first-request-timeout", str(FIRST_REQUEST_TIMEOUT)], tls=True)
    if server is None:
        return
    results = {}
    socks = []

    def watch(name, t0, sock):
        # Seconds from the connect to the server's close (None: still open).
        closed = t.wait_closed(sock, LIMIT + 3)
        results[name] = None if closed is None else time.monotonic() - t0

    try:
        cases = []
        t0 = time.monotonic()
        raw = socket.create_connection(server.addr, timeout=5)
        cases.append(("TCP only, nothing sent", t0, raw))
        for alpn in (["http/1.1"], ["h2"]):
            t0 = time.monotonic()
            s = t.client_context(alpn).wrap_socket(socket.create_connection(server.addr, timeout=5), server_hostname=server.host)
            cases.append((f"TLS handshake (ALPN {s.selected_alpn_protocol()}), nothing sent", t0, s))
        t0 = time.monotonic()
        half = t.client_context(["http/1.1"]).wrap_socket(socket.create_connection(server.addr, timeout=5), server_hostname=server.host)
        half.sendall(b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        cases.append(("TLS, half a request head", t0, half))
        socks = [s for _, _, s in cases]
        # The control: a request completed at once; the connection must outlive the first-request deadline.
        good = t.H1(server.addr, tls=t.client_context(["http/1.1"]))
        status, _, _ = good.request("/api/stats")
        r.check(status == 200, f"control request: {status}")
        threads = [threading.Thread(target=watch, args=c, daemon=True) for c in cases]
        for th in threads:
            th.start()
        for th in threads:
            th.join(LIMIT + 5)
        for name, _, _ in cases:
            took = results.get(name)
            r.check(took is not None and took <= LIMIT,
                    f"{name}: " + ("still open" if took is None else f"closed after {took:.2f} s")
                    + f" (limit --first-request-timeout {FIRST_REQUEST_TIMEOUT:.0f} s + 1 s)")
            r.check(took is None or took >= FIRST_REQUEST_TIMEOUT * 0.75,
                    f"{name}: closed after {took:.2f} s, before --first-request-timeout {FIRST_REQUEST_TIMEOUT:.0f} s")
        try:
            status, _, _ = good.request("/api/stats", timeout=5)
        except (t.Closed, OSError, TimeoutError) as e:
            status = repr(e)
        r.check(status == 200, f"a keep-alive TLS connection whose first request completed in time was cut: "
                               f"second request {LIMIT + 1:.0f}+ s later got {status}")
        good.close()
        r.check(server.alive(), "the server died")
        r.note("; ".join(f"{name}: closed after {results[name]:.2f} s" for name, _, _ in cases if results.get(name) is not None)
               + f" (--first-request-timeout {FIRST_REQUEST_TIMEOUT:.0f} s); a completed keep-alive connection stayed")
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        server.stop()


if __name__ == "__main__":
    hc.run("tls-first-request-timeout", body)
