"""Test 6, frozen readers: 1,000 clients that stop reading while the count changes 100 times a second.

A reader that takes no bytes never makes the server hold more than its bounded buffers (16 KB in NIO, a
16 KB kernel send buffer, a reference to the newest event), and is dropped after --write-timeout of no
progress, counted out as `slow_reader`. Meanwhile a reader that keeps reading is untouched and current.

One process holds the frozen sockets (small receive buffers, never read); a thread churns the room
(one stream opened and closed every 10 ms: two count changes) and the server sends an event per change
(--update-interval 0.005; large-room coalescing and the global fan-out budget decide how many of the
changes become events).
"""

import socket
import threading
import time

import hc

FROZEN = 1000
WRITE_TIMEOUT = 4.0
# A long room name makes each event ~200 bytes, so the frozen readers' buffers fill within seconds even
# though coalescing and the fan-out budget send far fewer events than there are changes.
ROOM = "frozen-" + "x" * 120
# What the server may hold for one stuck stream: 16 KB of NIO buffer plus bookkeeping; the kernel's send
# buffer is not RSS. Generous, and still far below what unbounded queues of 100 events/s would reach.
RSS_BUDGET_KB_PER_STREAM = 48


def body(r):
    limit = hc.raise_fd_limit()
    r.check(limit > FROZEN + 200, f"open-file limit {limit} is too low for {FROZEN} frozen readers")
    server = hc.Server("frozen-readers", ["--write-timeout", str(WRITE_TIMEOUT), "--update-interval", "0.005",
                                          "--leave-grace", "0", "--max-streams-per-ip", "100000", "--heartbeat", "0.2"])
    frozen = []
    stop = threading.Event()
    churned = [0]

    def churn():
        # Two count changes every 10 ms (a join and a leave), bounded by `stop` and by time.
        end = time.monotonic() + 120
        i = 0
        while not stop.is_set() and time.monotonic() < end:
            try:
                s = socket.create_connection(server.addr, timeout=5)
                s.sendall(hc.stream_request(f"/rooms/{ROOM}/events?visitor=churn{i}"))
                time.sleep(0.005)
                s.close()
                churned[0] += 1
            except OSError:
                pass
            i += 1
            time.sleep(0.005)

    live = None
    try:
        base_rss = server.rss_kb()
        # A reader that keeps reading, to show it is unaffected.
        live = socket.create_connection(server.addr, timeout=10)
        live.sendall(hc.stream_request(f"/rooms/{ROOM}/events?watch=1"))
        live.settimeout(0.2)
        live_bytes = [0]
        live_ended = [False]

        def read_live():
            while not stop.is_set():
                try:
                    chunk = live.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    live_ended[0] = True
                    return
                live_bytes[0] += len(chunk)

        threading.Thread(target=read_live, daemon=True).start()

        for i in range(FROZEN):
            frozen.append(hc.frozen_reader(server.addr, f"/rooms/{ROOM}/events?visitor=frozen{i}", 2048))
        counted = hc.wait_until(lambda: server.room(ROOM)["connections"] >= FROZEN, 30)
        if not r.check(counted, f"setup: {server.room(ROOM)}"):
            return
        before = hc.leaves_by_reason(server.metrics())
        t0 = time.monotonic()
        churner = threading.Thread(target=churn, daemon=True)
        churner.start()

        peak = [0]

        def all_dropped():
            peak[0] = max(peak[0], server.rss_kb())
            after = hc.leaves_by_reason(server.metrics())
            return after.get("slow_reader", 0) - before.get("slow_reader", 0) >= FROZEN

        dropped = hc.wait_until(all_dropped, 90, step=0.5)
        took = time.monotonic() - t0
        stop.set()
        churner.join(10)
        after = hc.leaves_by_reason(server.metrics())
        slow = after.get("slow_reader", 0) - before.get("slow_reader", 0)
        r.check(dropped, f"only {slow:.0f} of {FROZEN} frozen readers were dropped as slow readers in {took:.0f} s")
        r.check(2 * churned[0] >= 100 * took * 0.8, f"the churn made only {churned[0]} join/leave cycles in {took:.0f} s (aim: 100 changes a second)")
        growth = peak[0] - base_rss
        r.check(growth <= FROZEN * RSS_BUDGET_KB_PER_STREAM,
                f"server RSS grew by {growth} kB with {FROZEN} frozen readers (budget {FROZEN * RSS_BUDGET_KB_PER_STREAM} kB)")
        empty = hc.wait_until(lambda: server.room(ROOM) == {"room": ROOM, "online": 0, "connections": 0}, 15)
        r.check(empty, f"the room is not empty after the frozen readers were dropped: {server.room(ROOM)}")
        r.check(not live_ended[0] and live_bytes[0] > 10_000, f"the reading client was disturbed: ended={live_ended[0]}, {live_bytes[0]} bytes")
        r.check(server.alive(), "the server died")
        r.note(f"{FROZEN} frozen readers while the count changed {2 * churned[0] / max(took, 0.001):.0f} times a second ({churned[0]} join/leave cycles): all dropped "
               f"as slow_reader {took:.1f} s after the churn began (--write-timeout {WRITE_TIMEOUT:.0f} s); server RSS "
               f"{base_rss} -> peak {peak[0]} kB (+{growth / FROZEN:.1f} kB per frozen reader); the reading client got "
               f"{live_bytes[0]} bytes and stayed connected")
    finally:
        stop.set()
        for s in frozen:
            s.close()
        if live is not None:
            live.close()
        server.kill()


if __name__ == "__main__":
    hc.run("frozen-readers", body)
