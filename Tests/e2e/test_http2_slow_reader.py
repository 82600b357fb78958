"""Transport test 4, http2-slow-reader: an HTTP/2 SSE stream whose client keeps reading its socket but never
sends WINDOW_UPDATE (SETTINGS_INITIAL_WINDOW_SIZE 1024, the connection window never opened) can take no
more bytes once its 1 KB window is spent. While the room's count churns it must be dropped as
`slow_reader` within --write-timeout (+ margin), counted out, and its stream ended (RST_STREAM, or the
connection closed); the server must never send more than the window allows. A reading HTTP/2 client on
another connection is untouched.
"""

import threading
import time

import hc
import transports as t

WRITE_TIMEOUT = 3.0
FILL_MARGIN = 3.0   # 1 KB of window is spent within a second of churn (~200-byte events)
ROOM = "h2-slow-" + "x" * 120
WINDOW = 1024


def body(r):
    server = t.start_server(r, "http2-slow-reader", ["--write-timeout", str(WRITE_TIMEOUT), "--update-interval", "0.005",
                                                     "--leave-grace", "0", "--max-streams-per-ip", "100000", "--heartbeat", "0.2"], tls=True)
    if server is None:
        return
    stop = threading.Event()
    slow = live = churn = None
    errors = []
    try:
        slow = t.H2(server.addr, window=WINDOW, auto_ack=False)
        if not r.check(slow.alpn == "h2", f"ALPN: the server chose {slow.alpn!r}, not h2"):
            return
        ss = slow.stream(f"/rooms/{ROOM}/events?visitor=slow")
        if not r.check(ss.status == 200, f"the starved stream got {ss.status} (reset={ss.reset})"):
            return
        live = t.H2(server.addr)
        ls = live.stream(f"/rooms/{ROOM}/events?watch=1")
        r.check(ls.status == 200, f"the reading h2 stream got {ls.status}")
        counted = hc.wait_until(lambda: t.room_is(server, ROOM, 1, 1), 5)
        if not r.check(counted, f"setup: {server.room(ROOM)}"):
            return
        t.check_gauges(r, server, 0, 2, "a starved and a reading h2 stream")

        def pump(conn, name):
            # Reads every frame (so TCP never backs up) but, for `slow`, never opens a window.
            try:
                while not stop.is_set() and not conn.closed:
                    conn.pump(0.2)
            except Exception as e:  # noqa: BLE001 - flow-control violations by the server land here
                errors.append(f"{name}: {e!r}")

        for conn, name in ((slow, "starved"), (live, "reading")):
            threading.Thread(target=pump, args=(conn, name), daemon=True).start()
        before = hc.leaves_by_reason(server.metrics())
        t0 = time.monotonic()
        churn = t.Churn(server.addr, ROOM, "h2").start()

        def dropped():
            after = hc.leaves_by_reason(server.metrics())
            return after.get("slow_reader", 0) - before.get("slow_reader", 0) >= 1

        ok = hc.wait_until(dropped, WRITE_TIMEOUT + FILL_MARGIN + 10, step=0.1)
        took = time.monotonic() - t0
        ended = hc.wait_until(lambda: ss.reset or ss.ended or slow.closed, 3)
        churn.stop()
        after = hc.leaves_by_reason(server.metrics())
        moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        r.check(ok, f"the starved h2 stream was not dropped as slow_reader {took:.1f} s after the churn began "
                    f"(it received {ss.received} of its {WINDOW}-byte window; leaves moved by {moved})")
        r.check(not ok or took <= WRITE_TIMEOUT + FILL_MARGIN,
                f"the starved h2 stream was dropped {took:.1f} s after the churn began "
                f"(limit --write-timeout {WRITE_TIMEOUT:.0f} s + {FILL_MARGIN:.0f} s to spend the window)")
        r.check(ss.received >= WINDOW * 0.5, f"the starved stream received only {ss.received} bytes: its window was never spent")
        r.check(ended, f"the dropped stream was neither reset nor ended, nor its connection closed")
        r.check(churn.cycles >= 50, f"the churn made only {churn.cycles} join/leave cycles ({churn.errors} errors)")
        empty = hc.wait_until(lambda: t.room_is(server, ROOM, 0, 0), 5)
        r.check(empty, f"the room is not empty after the starved stream was dropped: {server.room(ROOM)}")
        r.check(not any(e.startswith("starved") for e in errors),
                f"the server broke HTTP/2 flow control on the starved connection: {errors}")
        r.check(not ls.reset and not ls.ended and not live.closed and ls.received > 2000,
                f"the reading h2 stream was disturbed: reset={ls.reset} ended={ls.ended} closed={live.closed}, "
                f"{ls.received} bytes; {errors}")
        t.check_gauges(r, server, 0, 1, "after the drop (the reading h2 stream remains)")
        r.check(server.alive(), "the server died")
        how = "RST_STREAM" if ss.reset else "END_STREAM" if ss.ended else "connection closed" if slow.closed else "?"
        r.note(f"h2 stream starved at a {WINDOW}-byte window ({ss.received} bytes received) dropped as slow_reader "
               f"{took:.1f} s after the churn began (--write-timeout {WRITE_TIMEOUT:.0f} s; {churn.cycles} cycles), ended "
               f"by {how}, counted out; the reading h2 stream got {ls.received} bytes and stayed")
    finally:
        stop.set()
        if churn:
            churn.stop()
        for c in (slow, live):
            if c:
                c.close(goaway=False)
        server.kill()


if __name__ == "__main__":
    hc.run("http2-slow-reader", body)
