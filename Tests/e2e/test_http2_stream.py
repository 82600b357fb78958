"""Transport test 3, http2-stream: SSE over HTTP/2 (TLS, ALPN h2) is a stream like any other.

On one HTTP/2 connection: an ordinary request stream (GET /api/stats, read whole), then an SSE stream. The
SSE stream is counted in its room and in headcount_streams_open{transport="http2"}, receives every change
(a second client on its own connection joins), and leaves the count within 1 s of RST_STREAM. The
connection stays usable: another SSE stream on it is counted, and closing the connection (GOAWAY + FIN)
counts it out within 1 s too; a connection dropped without GOAWAY likewise.

Flow control is the client's right: a reading stream whose client announces a 1 KB window
(SETTINGS_INITIAL_WINDOW_SIZE 1024) and opens it again with WINDOW_UPDATE as it reads must carry ~20 KB of
events (a few dozen WINDOW_UPDATEs) and stay open, counted.
"""

import json
import time

import hc
import transports as t

ROOM = "h2r"
FLOW_ROOM = "h2-flow-" + "x" * 120
CYCLES = 60


def flow_control(r, server):
    """A reading stream with a 1 KB window, opened again by WINDOW_UPDATE after every ~512 bytes, while
    another connection joins and leaves the room CYCLES times (each event ~200 bytes)."""
    reader = t.H2(server.addr, window=1024, auto_ack=True)
    other = t.H2(server.addr)
    try:
        st = reader.stream(f"/rooms/{FLOW_ROOM}/events?visitor=reader")
        if not r.check(st.status == 200, f"flow control: the 1 KB-window stream got {st.status}"):
            return None
        for i in range(CYCLES):
            s = other.stream(f"/rooms/{FLOW_ROOM}/events?visitor=other{i}")
            reader.wait(lambda: st.events and st.events[-1].get("connections") == 2, 2)
            other.reset(s)
            reader.wait(lambda: st.events and st.events[-1].get("connections") == 1, 2)
            if st.ended or st.reset or reader.closed:
                break
        reader.wait(lambda: False, 0.3)
        r.check(not (st.ended or st.reset or reader.closed),
                f"flow control: the reading stream with a 1 KB window was ended after {st.received} bytes "
                f"(END_STREAM={st.ended}, RST_STREAM={st.reset} code {st.reset_code}, connection closed={reader.closed}, "
                f"GOAWAY {reader.goaway}) although its client kept reading and sending WINDOW_UPDATE")
        r.check(st.received > 8 * 1024, f"flow control: the reading stream got only {st.received} bytes through its 1 KB window")
        r.check(t.room_is(server, FLOW_ROOM, 1, 1), f"flow control: /api/rooms after the cycles: {server.room(FLOW_ROOM)}")
        return st.received
    finally:
        reader.close()
        other.close()


def counted_out_within(r, server, room, online, connections, limit, what):
    t0 = time.monotonic()
    ok = hc.wait_until(lambda: t.room_is(server, room, online, connections), limit + 2, step=0.02)
    took = time.monotonic() - t0
    r.check(ok and took <= limit, f"{what}: /api/rooms/{room} was {server.room(room)} {took:.2f} s later "
                                  f"(expected online {online}, connections {connections} within {limit:.0f} s)")
    return took


def body(r):
    server = t.start_server(r, "http2-stream", ["--leave-grace", "0", "--update-interval", "0.02", "--heartbeat", "1"], tls=True)
    if server is None:
        return
    a = b = None
    try:
        a = t.H2(server.addr)
        if not r.check(a.alpn == "h2", f"ALPN offered h2 and http/1.1; the server chose {a.alpn!r}"):
            return
        status, _, stats = a.request("/api/stats")
        r.check(status == 200 and "connections" in json.loads(stats), f"GET /api/stats over h2: {status} {stats[:120]!r}")
        st = a.stream(f"/rooms/{ROOM}/events?visitor=a")
        if not r.check(st.status == 200 and st.headers.get("content-type", "").startswith("text/event-stream"),
                       f"the SSE request (second stream of the connection) got {st.status} {st.headers} reset={st.reset}"):
            return
        first = a.wait(lambda: next((e for e in st.events if e.get("room") == ROOM), None), 5)
        r.check(first == {"room": ROOM, "online": 1, "connections": 1}, f"first event of the h2 stream: {first}")
        r.check(hc.wait_until(lambda: t.room_is(server, ROOM, 1, 1), 3), f"/api/rooms/{ROOM}: {server.room(ROOM)}")
        t.check_gauges(r, server, 0, 1, "one HTTP/2 stream open")

        b = t.H2(server.addr)
        sb = b.stream(f"/rooms/{ROOM}/events?visitor=b")
        r.check(sb.status == 200, f"second client's h2 stream: {sb.status}")
        seen = a.wait_last(st, lambda e: e.get("online") == 2 and e.get("connections") == 2, 3)
        r.check(seen, f"the h2 stream did not receive the second join; it got {st.events[-3:]}")
        t.check_gauges(r, server, 0, 2, "two HTTP/2 streams on two connections")

        before = hc.leaves_by_reason(server.metrics())
        a.reset(st)
        took_rst = counted_out_within(r, server, ROOM, 1, 1, 1.0, "after RST_STREAM")
        seen = b.wait_last(sb, lambda e: e.get("online") == 1 and e.get("connections") == 1, 3)
        r.check(seen, f"the other h2 stream did not hear the reset stream leave; it got {sb.events[-3:]}")
        t.check_gauges(r, server, 0, 1, "after RST_STREAM")

        # The connection is still good for more streams after the reset.
        s2 = a.stream(f"/rooms/{ROOM}/events?visitor=a2")
        r.check(s2.status == 200 and not a.closed, f"a new SSE stream after RST_STREAM on the same connection: {s2.status}, closed={a.closed}")
        r.check(hc.wait_until(lambda: t.room_is(server, ROOM, 2, 2), 3), f"after the second stream on connection a: {server.room(ROOM)}")
        a.close(goaway=True)
        took_close = counted_out_within(r, server, ROOM, 1, 1, 1.0, "after closing the connection (GOAWAY)")
        b.close(goaway=False)
        took_drop = counted_out_within(r, server, ROOM, 0, 0, 1.0, "after dropping the connection (no GOAWAY)")
        after = hc.leaves_by_reason(server.metrics())
        moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        r.check(moved.get("closed", 0) == 3, f"headcount_leaves_total moved by {moved}, expected 3 closed")
        t.check_gauges(r, server, 0, 0, "every h2 stream closed")
        flowed = flow_control(r, server)
        r.check(server.alive(), "the server died")
        r.note(f"ALPN h2; GET /api/stats then SSE on one connection: counted (transport=\"http2\" 1), heard a join; "
               f"counted out {took_rst * 1000:.0f} ms after RST_STREAM, {took_close * 1000:.0f} ms after GOAWAY+close, "
               f"{took_drop * 1000:.0f} ms after a bare close; {flowed} bytes through a 1 KB window with WINDOW_UPDATEs")
    finally:
        for c in (a, b):
            if c:
                c.close(goaway=False)
        server.stop()


if __name__ == "__main__":
    hc.run("http2-stream", body)
