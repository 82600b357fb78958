"""Test 3, restart without a stampede: 2,000 subscribers, then SIGTERM. Every stream must end within
`--drain` (+1 s), the ends spread over the window rather than all at once, each stream having received a
`retry:` drawn from --retry-min..--retry-max (so that reconnects spread too), and the server exits 0.

One process holds every subscriber on non-blocking sockets behind a selector.

A second, small server then gets SIGTERM while 5 of its 8 readers have stopped reading (1 KB receive
buffers filled by 5 ms heartbeats, so their final chunk can never be written): the live streams must still
end properly and the server must exit 0 within drain + 3 s.
"""

import os
import selectors
import signal
import socket
import subprocess
import time

import hc

SUBSCRIBERS = int(os.environ.get("HC_RESTART_SUBSCRIBERS", "2000"))
DRAIN = float(os.environ.get("HC_RESTART_DRAIN", "3"))
RETRY_MIN, RETRY_MAX = 1000, 6000
ROOM = "restart"
TERMINATOR = b"\r\n0\r\n\r\n"


class Sub:
    __slots__ = ("sock", "buf", "retry", "events", "ended", "clean", "error")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.retry = None
        self.events = 0
        self.ended = None
        self.clean = False
        self.error = None


def pump(sel, subs_open, until, stop_when=None, on_end=None):
    """Reads whatever is ready until `until` or stop_when(); records ends."""
    while subs_open and time.monotonic() < until:
        for key, _ in sel.select(timeout=0.05):
            sub = key.data
            try:
                chunk = sub.sock.recv(65536)
            except (ConnectionResetError, OSError) as e:
                chunk, sub.error = b"", repr(e)
            now = time.monotonic()
            if chunk:
                sub.buf += chunk
                if sub.retry is None:
                    m = hc.RETRY.search(sub.buf)
                    if m:
                        sub.retry = int(m.group(1))
                sub.events += len(hc.EVENT_DATA.findall(sub.buf))
                # Keep only a tail (enough to see a terminator or a split line).
                if b"\r\n0\r\n\r\n" in sub.buf:
                    sub.clean = True
                sub.buf = sub.buf[-64:] if sub.retry is not None else sub.buf
                continue
            sub.ended = now
            sel.unregister(sub.sock)
            sub.sock.close()
            subs_open.discard(sub)
            if on_end:
                on_end(sub)
        if stop_when and stop_when():
            return


def body(r):
    limit = hc.raise_fd_limit()
    r.check(limit > SUBSCRIBERS + 200, f"open-file limit {limit} is too low for {SUBSCRIBERS} subscribers")
    server = hc.Server("restart-drain", ["--drain", str(DRAIN), "--retry-min", "1", "--retry-max", "6",
                                         "--max-streams-per-ip", "100000", "--leave-grace", "3"])
    sel = selectors.DefaultSelector()
    subs = []
    open_set = set()
    try:
        # Connect in batches so the listen backlog never overflows, reading as we go.
        for batch in range(0, SUBSCRIBERS, 100):
            for i in range(batch, min(SUBSCRIBERS, batch + 100)):
                s = socket.create_connection(server.addr, timeout=10)
                s.sendall(hc.stream_request(f"/rooms/{ROOM}/events?visitor=r{i}"))
                s.setblocking(False)
                sub = Sub(s)
                subs.append(sub)
                open_set.add(sub)
                sel.register(s, selectors.EVENT_READ, sub)
            pump(sel, open_set, time.monotonic() + 0.05)
        # Every subscriber holds its stream and has its retry: and first event.
        deadline = time.monotonic() + 60
        pump(sel, open_set, deadline, stop_when=lambda: all(s.retry is not None and s.events > 0 for s in subs))
        counted = hc.wait_until(lambda: server.room(ROOM) == {"room": ROOM, "online": SUBSCRIBERS, "connections": SUBSCRIBERS}, 30)
        early = [s for s in subs if s.ended is not None]
        if not r.check(counted and not early and all(s.retry is not None for s in subs),
                       f"setup: room {server.room(ROOM)}, {len(early)} streams ended early, "
                       f"{sum(s.retry is None for s in subs)} without retry"):
            return
        # Drain whatever is queued (the joins' coalesced events), then SIGTERM.
        pump(sel, open_set, time.monotonic() + 0.5)
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        pump(sel, open_set, sent + DRAIN + 10)
        code = None
        try:
            code = server.proc.wait(20)
        except Exception:  # noqa: BLE001
            pass
        ends = [s.ended - sent for s in subs if s.ended is not None]
        missing = len(subs) - len(ends)
        retries = [s.retry for s in subs if s.retry is not None]
        p10, p50, p90 = (hc.percentile(ends, p) for p in (10, 50, 90))
        last = max(ends) if ends else float("nan")
        unclean = sum(1 for s in subs if not s.clean)
        r.check(missing == 0, f"{missing} streams still open {DRAIN + 10:.0f} s after SIGTERM")
        r.check(last <= DRAIN + 1, f"the last stream ended {last:.2f} s after SIGTERM (drain {DRAIN:.0f} s + 1 s)")
        r.check(p90 - p10 >= 1.5, f"closes were not spread: p10 {p10:.2f} s, p90 {p90:.2f} s")
        r.check(unclean == 0, f"{unclean} streams ended without the final chunk (0\\r\\n\\r\\n)")
        r.check(code == 0, f"server exit status {code} after SIGTERM")
        r.check(min(retries) >= RETRY_MIN and max(retries) <= RETRY_MAX, f"retry: outside {RETRY_MIN}..{RETRY_MAX}: {min(retries)}..{max(retries)}")
        rp10, rp90 = hc.percentile(retries, 10), hc.percentile(retries, 90)
        distinct = len(set(retries))
        r.check(rp10 <= 2000 and rp90 >= 5000 and distinct >= 500,
                f"retry: values not spread over {RETRY_MIN}..{RETRY_MAX}: p10 {rp10}, p90 {rp90}, {distinct} distinct")
        # Buckets of the closes, one per 0.5 s, for the log.
        buckets = [0] * int((DRAIN + 1) * 2)
        for e in ends:
            buckets[min(len(buckets) - 1, int(e * 2))] += 1
        hc.log(f"  closes per 0.5 s after SIGTERM: {buckets}")
        # When each client comes back: an EventSource reconnects `retry:` ms after its stream ends.
        back = [s.ended - sent + s.retry / 1000 for s in subs if s.ended is not None and s.retry is not None]
        bp10, bp50, bp90 = (hc.percentile(back, p) for p in (10, 50, 90))
        per_second = [0] * (int(max(back)) + 1)
        for b in back:
            per_second[int(b)] += 1
        hc.log(f"  reconnects per second after SIGTERM (close + retry:): {per_second}")
        r.note(f"{SUBSCRIBERS} streams closed over {min(ends):.2f}..{last:.2f} s after SIGTERM (p10 {p10:.2f}, p50 {p50:.2f}, "
               f"p90 {p90:.2f} s; drain {DRAIN:.0f} s), {len(subs) - unclean} with the final chunk; retry: {min(retries)}..{max(retries)} ms "
               f"(p10 {rp10}, p90 {rp90}, {distinct} distinct); reconnects due over {min(back):.2f}..{max(back):.2f} s "
               f"(p10 {bp10:.2f}, p50 {bp50:.2f}, p90 {bp90:.2f} s; busiest second {max(per_second)} of {len(back)}); exit {code}")
    finally:
        for s in subs:
            if s.ended is None:
                try:
                    s.sock.close()
                except OSError:
                    pass
        server.kill()
    frozen_readers(r)


FROZEN, LIVE, FROZEN_DRAIN = 5, 3, 1.0


def frozen_readers(r):
    """SIGTERM while some readers have stopped reading (their streams cannot take the final chunk): the
    live streams still end properly within the drain, and the server exits 0 soon after it."""
    # Heartbeats every 5 ms fill the frozen readers' windows (1 KB receive buffers) within seconds.
    server = hc.Server("restart-frozen", ["--drain", str(FROZEN_DRAIN), "--heartbeat", "0.005", "--max-streams-per-ip", "1000"])
    socks = []
    try:
        for i in range(FROZEN):
            socks.append(hc.frozen_reader(server.addr, f"/rooms/frozen/events?visitor=f{i}", 1024))
        live = []
        for i in range(LIVE):
            s = socket.create_connection(server.addr, timeout=10)
            s.sendall(hc.stream_request(f"/rooms/frozen/events?visitor=l{i}"))
            live.append(Sub(s))
            socks.append(s)
        counted = hc.wait_until(lambda: server.room("frozen")["connections"] == FROZEN + LIVE, 15)
        if not r.check(counted, f"frozen-readers setup: {server.room('frozen')}"):
            return
        sel = selectors.DefaultSelector()
        open_set = set(live)
        for sub in live:
            sub.sock.setblocking(False)
            sel.register(sub.sock, selectors.EVENT_READ, sub)

        def blocked():
            # The server's send queues towards the frozen readers are backed up (needs `ss`; else time).
            try:
                out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{server.port} )"],
                                     capture_output=True, text=True, timeout=5).stdout
            except (OSError, subprocess.SubprocessError):
                return time.monotonic() - t0 > 6
            return sum(1 for line in out.splitlines() if int(line.split()[1]) > 4096) >= FROZEN

        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and not blocked():
            pump(sel, open_set, time.monotonic() + 0.25)
        r.check(blocked(), "frozen-readers setup: the frozen streams never backed up")
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        pump(sel, open_set, sent + FROZEN_DRAIN + 3)
        try:
            code = server.proc.wait(max(0.1, sent + FROZEN_DRAIN + 3 - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - sent
        r.check(code == 0, f"with {FROZEN} frozen readers the server "
                           + (f"exited {code} (crashed)" if code not in (0, None) else "had not exited")
                           + f" {took:.1f} s after SIGTERM (drain {FROZEN_DRAIN:.0f} s): {server.log_tail(3)[:300]}")
        r.check(all(sub.clean for sub in live), f"{sum(not sub.clean for sub in live)} live streams did not get the final chunk")
        r.note(f"with {FROZEN} frozen readers: exit {code} after {took:.1f} s, live streams ended properly")
    finally:
        for s in socks:
            s.close()
        server.kill()


if __name__ == "__main__":
    hc.run("restart-drain", body)
