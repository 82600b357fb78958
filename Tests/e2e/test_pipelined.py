"""Transport test 8, pipelined: a request pipelined behind an SSE request on the same connection (both sent
in ONE write) makes the server close that connection cleanly: the client reads EOF within 2 s, the stream
(if it was opened at all) is counted out, and nothing stays open half-dead. Its stream slot is released
too: with --max-streams-per-ip 2, two ordinary streams still open afterwards.

Variants: the SSE request first on a fresh connection; the SSE request after GET /widget.js on a
keep-alive connection; and the first over HTTP/1.1 over TLS.
"""

import time

import hc
import transports as t

LIMIT = 2.0


def pipelined(server, room, host, warmup, tls=None):
    """Returns (seconds until EOF or None, the first line the server answered)."""
    c = t.H1(server.addr, tls=tls)
    try:
        if warmup:
            status, _, _ = c.request("/widget.js")
            if status != 200:
                return None, f"warm-up GET /widget.js {status}"
            time.sleep(t.REUSE_PAUSE)
        two = (t.request_bytes(f"/rooms/{room}/events?visitor=x", host, stream=True)
               + t.request_bytes("/api/stats", host))
        got = bytearray(c.buf)
        t0 = time.monotonic()
        c.sock.sendall(two)
        closed = t.wait_closed(c.sock, LIMIT + 3, sink=got)
        first = bytes(got).split(b"\r\n", 1)[0].decode("latin-1") if got else "nothing"
        hc.log(f"  pipelined ({room}): {bytes(got)[:300]!r}")
        return (None if closed is None else time.monotonic() - t0), first
    finally:
        c.close()


def run_variants(r, server, variants, tls=None):
    notes = []
    for name, room, warmup in variants:
        took, first = pipelined(server, room, server.host, warmup, tls)
        r.check(took is not None and took <= LIMIT,
                f"{name}: the connection was " + ("still open" if took is None else f"closed only after {took:.2f} s")
                + f" (limit {LIMIT:.0f} s; it answered {first!r})")
        gone = hc.wait_until(lambda: t.room_is(server, room, 0, 0), 2)
        r.check(gone, f"{name}: the room is {server.room(room)} after the pipelined connection, expected 0 connections")
        if took is not None:
            notes.append(f"{name}: answered {first!r}, EOF after {took * 1000:.0f} ms")
    # The slots of the pipelined streams were released: two streams (the per-IP limit) still open.
    probes = []
    try:
        for i in range(2):
            c = t.H1(server.addr, tls=tls)
            probes.append(c)
            status = c.start_stream(f"/rooms/after/events?visitor=after{i}")
            r.check(status == 200, f"stream {i + 1} of 2 after the pipelined connections got {status} "
                                   f"(--max-streams-per-ip 2: a slot was not released)")
    finally:
        for c in probes:
            c.close()
    r.check(hc.wait_until(lambda: t.room_is(server, "after", 0, 0), 2), f"probe streams not counted out: {server.room('after')}")
    gauges = t.transport_gauges(server)
    total = (gauges["http1"] or 0) + (gauges["http2"] or 0) + (gauges["unlabelled"] or 0)
    r.check(hc.wait_until(lambda: server.stats()["connections"] == 0, 2) and total == 0,
            f"streams left open: /api/stats {server.stats()}, {gauges['series']}")
    r.check(server.alive(), "the server died")
    return notes


def body(r):
    args = ["--leave-grace", "0", "--max-streams-per-ip", "2", "--heartbeat", "1"]
    server = hc.Server("pipelined", args)
    notes = []
    try:
        notes += run_variants(r, server, [("fresh connection", "p1", False), ("keep-alive after GET /widget.js", "p2", True)])
    finally:
        server.stop()
    tls = t.start_server(r, "pipelined-tls", args, tls=True)
    if tls is not None:
        try:
            notes += run_variants(r, tls, [("TLS HTTP/1.1", "p3", False)], tls=t.client_context(["http/1.1"]))
        finally:
            tls.stop()
    r.note("; ".join(notes) + "; every slot released")


if __name__ == "__main__":
    hc.run("pipelined", body)
