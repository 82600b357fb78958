"""Transport test 2, keepalive-slow-reader: a stream opened on a keep-alive HTTP/1.1 connection (after an
ordinary GET /api/stats on it) whose client then stops reading is dropped as `slow_reader` within
--write-timeout of its buffers filling, counted out, and its connection closed; a reader that keeps
reading on another keep-alive connection is untouched.

The frozen clients have 2 KB receive buffers; a thread churns the room (a join and a leave every ~10 ms)
and events are ~200 bytes (a long room name, --update-interval 0.005), so the buffers fill within a second
or two (as in test_frozen_readers.py).
"""

import threading
import time

import hc
import transports as t

FROZEN = 5
WRITE_TIMEOUT = 3.0
# The buffers fill within ~2 s of the churn starting; then the stream must be dropped within --write-timeout.
FILL_MARGIN = 4.0
ROOM = "ka-slow-" + "x" * 120


def body(r):
    server = hc.Server("keepalive-slow-reader", ["--write-timeout", str(WRITE_TIMEOUT), "--update-interval", "0.005",
                                                 "--leave-grace", "0", "--max-streams-per-ip", "100000", "--heartbeat", "0.2"])
    frozen, live, churn = [], None, None
    stop = threading.Event()
    try:
        for i in range(FROZEN):
            c = t.H1(server.addr, rcvbuf=2048)
            status, _, _ = c.request("/api/stats")
            r.check(status == 200, f"frozen client {i}: GET /api/stats {status}")
            frozen.append(c)
        time.sleep(t.REUSE_PAUSE)
        for i, c in enumerate(frozen):
            c.start_stream(f"/rooms/{ROOM}/events?visitor=frozen{i}", read_head=False)  # and never read again
        live = t.H1(server.addr)
        status, _, _ = live.request("/api/stats")
        time.sleep(t.REUSE_PAUSE)
        live.start_stream(f"/rooms/{ROOM}/events?watch=1")
        live_ended = [False]

        def read_live():
            while not stop.is_set():
                if not live.pump(0.2):
                    live_ended[0] = True
                    return

        counted = hc.wait_until(lambda: t.room_is(server, ROOM, FROZEN, FROZEN), 10)
        if not r.check(counted, f"setup: the keep-alive streams were not counted: {server.room(ROOM)}"):
            return
        threading.Thread(target=read_live, daemon=True).start()
        t.check_gauges(r, server, FROZEN + 1, 0, f"{FROZEN} frozen keep-alive streams and one reading")
        before = hc.leaves_by_reason(server.metrics())
        t0 = time.monotonic()
        churn = t.Churn(server.addr, ROOM, "http1").start()

        def dropped():
            after = hc.leaves_by_reason(server.metrics())
            return after.get("slow_reader", 0) - before.get("slow_reader", 0) >= FROZEN

        ok = hc.wait_until(dropped, WRITE_TIMEOUT + FILL_MARGIN + 10, step=0.1)
        took = time.monotonic() - t0
        churn.stop()
        after = hc.leaves_by_reason(server.metrics())
        slow = after.get("slow_reader", 0) - before.get("slow_reader", 0)
        r.check(ok, f"only {slow:.0f} of {FROZEN} frozen keep-alive streams were dropped as slow_reader "
                    f"{took:.1f} s after the churn began (leaves moved by "
                    f"{ {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)} })")
        r.check(not ok or took <= WRITE_TIMEOUT + FILL_MARGIN,
                f"the frozen keep-alive streams were dropped {took:.1f} s after the churn began "
                f"(limit --write-timeout {WRITE_TIMEOUT:.0f} s + {FILL_MARGIN:.0f} s to fill the buffers)")
        r.check(churn.cycles >= 50, f"the churn made only {churn.cycles} join/leave cycles ({churn.errors} errors)")
        empty = hc.wait_until(lambda: t.room_is(server, ROOM, 0, 0), 5)
        r.check(empty, f"the room is not empty after the frozen streams were dropped: {server.room(ROOM)}")
        # Their connections are closed, not left half-dead: reading what is buffered ends in EOF.
        still_open = sum(1 for c in frozen if t.wait_closed(c.sock, 3) is None)
        r.check(still_open == 0, f"{still_open} of {FROZEN} dropped keep-alive connections were still open")
        r.check(not live_ended[0] and live.stream_bytes > 2000,
                f"the reading keep-alive client was disturbed: ended={live_ended[0]}, {live.stream_bytes} bytes")
        t.check_gauges(r, server, 1, 0, "after the drop (the reading stream remains)")
        r.check(server.alive(), "the server died")
        r.note(f"{FROZEN} frozen keep-alive streams dropped as slow_reader {took:.1f} s after the churn began "
               f"({churn.cycles} join/leave cycles; --write-timeout {WRITE_TIMEOUT:.0f} s), counted out and closed; "
               f"the reading keep-alive stream got {live.stream_bytes} bytes and stayed")
    finally:
        stop.set()
        if churn:
            churn.stop()
        for c in frozen + ([live] if live else []):
            c.close()
        server.kill()


if __name__ == "__main__":
    hc.run("keepalive-slow-reader", body)
