"""Transport test 5, tls-http1-stream: HTTP/1.1 over TLS (a client offering only ALPN http/1.1) gets
HTTP/1.1, and its SSE streams, the first request of a TLS connection and one after an ordinary request on
a keep-alive TLS connection, are counted as transport="http1", receive every change and leave within 1 s
of their client closing. As in keepalive-stream, requests on a connection go back-to-back, and the
sequence GET /widget.js, GET /api/stats, stream is repeated on 10 more TLS connections.
"""

import time

import hc
import transports as t

ROOM = "tls1"
REPEATS = 10


def scenario(r, server, ctx):
    a = b = None
    try:
        a = t.H1(server.addr, tls=ctx)
        r.check(a.alpn == "http/1.1", f"ALPN offered http/1.1 only; the server chose {a.alpn!r}")
        status = a.start_stream(f"/rooms/{ROOM}/events?visitor=a")
        if not r.check(status == 200 and a.headers.get("content-type", "").startswith("text/event-stream"),
                       f"first request on a TLS connection: {status} {a.headers}"):
            return
        first = a.wait_event(lambda e: e.get("room") == ROOM, 5)
        r.check(first == {"room": ROOM, "online": 1, "connections": 1}, f"first event over TLS: {first}")
        r.check(hc.wait_until(lambda: t.room_is(server, ROOM, 1, 1), 3), f"/api/rooms/{ROOM}: {server.room(ROOM)}")
        t.check_gauges(r, server, 1, 0, "one HTTP/1.1-over-TLS stream")

        b = t.H1(server.addr, tls=ctx)
        status, _, js = b.request("/widget.js", timeout=5)
        r.check(status == 200 and len(js) > 1000, f"GET /widget.js over TLS (keep-alive): {status}, {len(js)} bytes")
        status = b.start_stream(f"/rooms/{ROOM}/events?visitor=b", timeout=5)
        r.check(status == 200, f"stream after GET /widget.js on one TLS connection: {status} {b.headers}")
        seen = a.wait_event(lambda e: e.get("online") == 2 and e.get("connections") == 2, 3)
        r.check(seen, f"the TLS stream did not receive the second join; it got {a.events[-3:]}")
        r.check(b.wait_event(lambda e: e.get("online") == 2, 3), f"the keep-alive TLS stream got {b.events[-3:]}")
        t.check_gauges(r, server, 2, 0, "two HTTP/1.1-over-TLS streams (fresh and keep-alive)")

        b.close()
        r.check(a.wait_event(lambda e: e.get("connections") == 1, 3), f"the TLS stream did not hear the leave: {a.events[-3:]}")
        a.close()
        t0 = time.monotonic()
        gone = hc.wait_until(lambda: t.room_is(server, ROOM, 0, 0), 3, step=0.02)
        took = time.monotonic() - t0
        r.check(gone and took <= 1.0, f"after both TLS clients closed the room was {server.room(ROOM)} {took:.2f} s later (limit 1 s)")
        t.check_gauges(r, server, 0, 0, "every TLS stream closed")
        r.note(f"ALPN http/1.1; a fresh and a keep-alive (after GET /widget.js) TLS stream counted as transport=\"http1\", "
               f"heard each other; counted out {took * 1000:.0f} ms after the close")
    finally:
        for c in (a, b):
            if c:
                c.close()


def body(r):
    server = t.start_server(r, "tls-http1-stream", ["--leave-grace", "0", "--update-interval", "0.02", "--heartbeat", "1"], tls=True)
    if server is None:
        return
    ctx = t.client_context(["http/1.1"])
    try:
        try:
            scenario(r, server, ctx)
        except (t.Closed, TimeoutError) as e:
            # A refused or lost request is this test's failure, not a crash of the test.
            r.check(False, str(e))
        ok, failures, tried = t.back_to_back(server, f"{ROOM}-repeat", REPEATS, tls=ctx)
        r.check(ok == tried == REPEATS, f"back-to-back keep-alive requests over TLS: only {ok} of {tried} connections "
                                        f"(of {REPEATS}) answered GET /widget.js, GET /api/stats and the stream; "
                                        f"first failure: {failures[:1]}")
        r.check(hc.wait_until(lambda: t.room_is(server, f"{ROOM}-repeat", 0, 0), 3),
                f"repeat streams not counted out: {server.room(f'{ROOM}-repeat')}")
        r.note(f"{ok}/{REPEATS} more TLS connections answered the same three requests back-to-back")
    finally:
        server.stop()


if __name__ == "__main__":
    hc.run("tls-http1-stream", body)
