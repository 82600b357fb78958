"""Transport test 6, drain-frozen: shutdown is not held up by readers that stopped reading, whatever the
transport. For each of fresh HTTP/1.1, keep-alive HTTP/1.1 (a stream after GET /api/stats on its
connection) and HTTP/2 over TLS: 200 frozen readers (1 KB receive buffers, never read; their send queues
backed up by churn in a long-named room) and 3 reading clients of the same transport; then SIGTERM with
--drain 2. The server must exit with status 0 within drain + 2 s of the signal, and every reading client
must get the end of its stream (the final 0 chunk over HTTP/1.1, END_STREAM over HTTP/2).
"""

import os
import signal
import subprocess
import threading
import time

import hc
import transports as t

FROZEN = int(os.environ.get("HC_DRAIN_FROZEN", "200"))
READERS = 3
DRAIN = 2.0
# The exit is seen through waitpid polling (subprocess's wait sleeps up to 50 ms between polls): a server
# that exits at drain + 2 s exactly is within the bound.
EXIT_SLACK = 0.25
ROOM = "drain-" + "x" * 120
KINDS = ("fresh-http1", "keepalive-http1", "http2")


class Reader:
    def __init__(self, kind, server, i):
        self.kind = kind
        self.ended_at = None
        self.clean = False
        self.error = None
        self.how = None
        path = f"/rooms/{ROOM}/events?visitor=reader{i}"
        if kind == "http2":
            self.conn = t.H2(server.addr)
            self.st = self.conn.stream(path)
            self.status = self.st.status
        else:
            self.conn = t.H1(server.addr)
            if kind == "keepalive-http1":
                self.conn.request("/widget.js")
                time.sleep(t.REUSE_PAUSE)
            self.status = self.conn.start_stream(path)

    def run(self, stop):
        try:
            while not stop.is_set():
                if self.kind == "http2":
                    alive = self.conn.pump(0.2)
                    if self.st.ended or self.st.reset or not alive:
                        self.clean = self.st.ended
                        self.how = ("END_STREAM" if self.st.ended else f"RST_STREAM {self.st.reset_code}" if self.st.reset
                                    else "connection closed") + (f" (GOAWAY {self.conn.goaway})" if self.conn.goaway is not None else "")
                        break
                else:
                    alive = self.conn.pump(0.2)
                    if self.conn.ended or not alive:
                        self.clean = self.conn.ended
                        self.how = "final chunk" if self.conn.ended else "EOF without the final chunk"
                        break
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
        self.ended_at = time.monotonic()

    def describe(self, sent):
        what = self.how or self.error or "still open"
        return what + (f" at {self.ended_at - sent:+.2f} s" if self.ended_at is not None else "")

    def close(self):
        self.conn.close() if self.kind != "http2" else self.conn.close(goaway=False)


def scenario(r, kind):
    tls = kind == "http2"
    server = t.start_server(r, f"drain-frozen-{kind}", ["--drain", str(DRAIN), "--heartbeat", "0.05", "--update-interval", "0.005",
                                                        "--leave-grace", "0", "--max-streams-per-ip", "100000"], tls=tls)
    if server is None:
        return None
    frozen, readers, churn = [], [], None
    stop = threading.Event()
    try:
        if kind == "keepalive-http1":
            # An ordinary request on each connection first, then (after one pause for all) the stream.
            conns = []
            for i in range(FROZEN):
                c = t.H1(server.addr, rcvbuf=1024)
                c.request("/api/stats")
                conns.append(c)
                frozen.append(c.sock)
            time.sleep(t.REUSE_PAUSE)
            for i, c in enumerate(conns):
                c.start_stream(f"/rooms/{ROOM}/events?visitor=frozen{i}", read_head=False)
        for i in range(FROZEN if kind != "keepalive-http1" else 0):
            path = f"/rooms/{ROOM}/events?visitor=frozen{i}"
            if kind == "fresh-http1":
                frozen.append(hc.frozen_reader(server.addr, path, 1024))
            else:
                frozen.append(t.frozen_h2(server.addr, path, 1024).sock)
        for i in range(READERS):
            readers.append(Reader(kind, server, i))
        if not r.check(all(rd.status == 200 for rd in readers), f"{kind}: readers got {[rd.status for rd in readers]}"):
            return None
        threads = [threading.Thread(target=rd.run, args=(stop,), daemon=True) for rd in readers]
        for th in threads:
            th.start()
        total = FROZEN + READERS
        counted = hc.wait_until(lambda: server.room(ROOM)["connections"] == total, 20, step=0.2)
        if not r.check(counted, f"{kind}: setup: {server.room(ROOM)}, expected {total} connections"):
            return None
        churn = t.Churn(server.addr, ROOM, "h2" if tls else "http1").start()
        t0 = time.monotonic()
        blocked = hc.wait_until(lambda: (t.send_q_blocked(server.port) or 0) >= FROZEN * 0.9, 15, step=0.25)
        fill = time.monotonic() - t0
        churn.stop()
        if not r.check(blocked, f"{kind}: setup: only {t.send_q_blocked(server.port)} of {FROZEN} frozen connections "
                                f"backed up after {fill:.0f} s of churn"):
            return None
        pre_exit = [rd for rd in readers if rd.ended_at is not None]
        r.check(not pre_exit, f"{kind}: {len(pre_exit)} reading clients lost their stream before the signal "
                              f"({[rd.error for rd in pre_exit]})")
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = None
        try:
            code = server.proc.wait(DRAIN + 2 + 5)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - sent
        for th in threads:
            th.join(max(0.1, sent + DRAIN + 4 - time.monotonic()))
        r.check(code == 0 and took <= DRAIN + 2 + EXIT_SLACK,
                f"{kind}: with {FROZEN} frozen readers the server "
                + (f"exited {code}" if code is not None else "had not exited")
                + f" {took:.2f} s after SIGTERM (limit: status 0 within drain {DRAIN:.0f} s + 2 s)")
        unclean = [rd for rd in readers if not rd.clean]
        r.check(not unclean, f"{kind}: {len(unclean)} of {READERS} reading clients did not get the end of their stream "
                             f"({', '.join(rd.describe(sent) for rd in unclean)})")
        ends = [rd.ended_at - sent for rd in readers if rd.ended_at is not None]
        return (f"{kind}: exit {code} {took:.2f} s after SIGTERM, {READERS - len(unclean)}/{READERS} readers ended "
                f"cleanly (last {max(ends) if ends else float('nan'):.1f} s), frozen backed up in {fill:.1f} s")
    finally:
        stop.set()
        if churn:
            churn.stop()
        for s in frozen:
            try:
                s.close()
            except OSError:
                pass
        for rd in readers:
            rd.close()
        server.kill()


def body(r):
    limit = hc.raise_fd_limit()
    r.check(limit > 3 * FROZEN, f"open-file limit {limit} is too low")
    kinds = [k for k in os.environ.get("HC_DRAIN_KINDS", ",".join(KINDS)).split(",") if k]
    for kind in kinds:
        note = scenario(r, kind)
        if note:
            r.note(note)


if __name__ == "__main__":
    hc.run("drain-frozen", body)
