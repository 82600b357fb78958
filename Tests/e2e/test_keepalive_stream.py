"""Transport test 1, keepalive-stream: an SSE stream that is not the first request of its HTTP/1.1
connection (GET /widget.js, then GET /api/stats, then the stream, all on one socket) is served like any
other stream: counted in its room, counted in headcount_streams_open{transport="http1"}, receives every
change, and leaves the count within 1 s of the client closing its socket.

A browser does exactly this: the page and its scripts load over a connection that its EventSource then
reuses, sending each request as soon as the previous response is in. So the requests here go back-to-back
(no pause after a response), and the same sequence is repeated on 20 more connections: every one must
answer all three requests.
"""

import time

import hc
import transports as t

ROOM = "ka"
REPEATS = 20


def back_to_back(r, server):
    ok, failures, tried = t.back_to_back(server, f"{ROOM}-repeat", REPEATS)
    r.check(ok == tried == REPEATS, f"back-to-back keep-alive requests: only {ok} of {tried} connections (of {REPEATS}) "
                                    f"answered GET /widget.js, GET /api/stats and the stream; first failure: {failures[:1]}")
    r.check(hc.wait_until(lambda: t.room_is(server, f"{ROOM}-repeat", 0, 0), 3),
            f"repeat streams not counted out: {server.room(f'{ROOM}-repeat')}")
    return ok


def scenario(r, server):
    a = b = None
    try:
        a = t.H1(server.addr, timeout=5)
        local = a.sock.getsockname()
        status, headers, js = a.request("/widget.js", timeout=5)
        r.check(status == 200 and len(js) > 1000 and "javascript" in headers.get("content-type", ""),
                f"GET /widget.js: {status} {headers.get('content-type')} {len(js)} bytes")
        status, _, stats = a.request("/api/stats", timeout=5)
        r.check(status == 200 and b'"connections"' in stats, f"GET /api/stats on the same connection: {status} {stats[:120]!r}")
        status = a.start_stream(f"/rooms/{ROOM}/events?visitor=a", timeout=5)
        same = a.sock.getsockname() == local and not a.eof
        if not r.check(status == 200 and a.headers.get("content-type", "").startswith("text/event-stream") and same,
                       f"the stream request (third on the connection) got {status} {a.headers}"):
            return
        first = a.wait_event(lambda e: e.get("room") == ROOM, 5)
        r.check(first == {"room": ROOM, "online": 1, "connections": 1}, f"first event of the keep-alive stream: {first}")
        counted = hc.wait_until(lambda: t.room_is(server, ROOM, 1, 1), 3)
        r.check(counted, f"/api/rooms/{ROOM} with the keep-alive stream open: {server.room(ROOM)}")
        t.check_gauges(r, server, 1, 0, "one keep-alive HTTP/1.1 stream open")

        # A second client joins: the count changes, and the keep-alive stream hears it.
        b = t.H1(server.addr)
        b.start_stream(f"/rooms/{ROOM}/events?visitor=b")
        seen = a.wait_event(lambda e: e.get("online") == 2 and e.get("connections") == 2, 3)
        r.check(seen, f"the keep-alive stream did not receive the second join; it got {a.events[-3:]}")
        t.check_gauges(r, server, 2, 0, "a keep-alive and a fresh HTTP/1.1 stream open")
        b.close()
        back = a.wait_event(lambda e: e.get("online") == 1 and e.get("connections") == 1, 3)
        r.check(back, f"the keep-alive stream did not receive the second client's leave; it got {a.events[-3:]}")

        # Heartbeats arrive on it too (--heartbeat 1).
        beats = a.heartbeats
        hc.wait_until(lambda: a.pump(0.2) and a.heartbeats > beats, 3)
        r.check(a.heartbeats > beats, "no heartbeat on the keep-alive stream within 3 s (--heartbeat 1)")

        before = hc.leaves_by_reason(server.metrics())
        a.close()
        closed_at = time.monotonic()
        gone = hc.wait_until(lambda: t.room_is(server, ROOM, 0, 0), 3, step=0.02)
        took = time.monotonic() - closed_at
        r.check(gone and took <= 1.0, f"after the keep-alive client closed, the room was {server.room(ROOM)} "
                                      f"{took:.2f} s later (limit 1 s)")
        after = hc.leaves_by_reason(server.metrics())
        r.check(after.get("closed", 0) - before.get("closed", 0) == 1,
                f"headcount_leaves_total{{reason=\"closed\"}} moved by {after.get('closed', 0) - before.get('closed', 0)}, expected 1")
        t.check_gauges(r, server, 0, 0, "every stream closed")
        r.note(f"GET /widget.js ({len(js)} B), GET /api/stats, then the stream on one socket: counted (online 1, "
               f"connections 1, transport=\"http1\" 1), heard a second client join and leave, heartbeats; counted out "
               f"{took * 1000:.0f} ms after the close")
    finally:
        for c in (a, b):
            if c:
                c.close()


def body(r):
    server = hc.Server("keepalive-stream", ["--leave-grace", "0", "--update-interval", "0.02", "--heartbeat", "1"])
    try:
        try:
            scenario(r, server)
        except (t.Closed, TimeoutError) as e:
            # A refused or lost request is this test's failure, not a crash of the test.
            r.check(False, str(e))
        repeated = back_to_back(r, server)
        r.check(server.alive(), "the server died")
        r.note(f"{repeated}/{REPEATS} more connections answered the same three requests back-to-back")
    finally:
        server.stop()


if __name__ == "__main__":
    hc.run("keepalive-stream", body)
