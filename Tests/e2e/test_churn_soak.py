"""Test 2, churn soak: 200,000 join/leave cycles against one server end with every count at exactly
zero and the server's memory where it was after a warm-up.

Several worker processes (this file with `--worker`) each loop: connect from a loopback source address,
send a raw `GET /rooms/soak-{k}/events` (HTTP/1.1 chunked or HTTP/1.0, visitor by query, by cookie or
none), read up to the first event, then leave in one of three ways: shutdown + close (FIN), plain close,
or an abortive close (SO_LINGER 0: RST). Every KILL_EVERY cycles a worker forks a child that opens 50
streams and is SIGKILLed (the kernel closes its sockets). Bounded by cycle count and by time: if the
target cannot be reached in MAIN_SECONDS the test reports how many cycles fitted.
"""

import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import hc

WORKERS = int(os.environ.get("HC_SOAK_WORKERS", "4"))
TARGET = int(os.environ.get("HC_SOAK_CYCLES", "200000"))
MAIN_SECONDS = float(os.environ.get("HC_SOAK_SECONDS", "170"))
WARMUP = 2000
FLOOR = 20_000
ROOMS = 16
KILL_EVERY = 2500
KILL_STREAMS = 50
LEAVE_GRACE = 3.0
RSS_TOLERANCE = 0.10

STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


def open_stream(addr, src, path, version, cookie=None, timeout=10):
    """Connects from `src`, asks for `path`, reads up to the first event; returns the socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, hc.IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect(addr)
        extra = f"Cookie: hc_vid={cookie}\r\n" if cookie else ""
        s.sendall(hc.stream_request(path, version=version, extra=extra))
        buf = b""
        while not hc.EVENT_DATA.search(buf):
            chunk = s.recv(8192)
            if not chunk:
                raise ConnectionError(f"closed before the first event: {buf[:200]!r}")
            buf += chunk
            if len(buf) > 65536:
                raise ConnectionError("no event in 64 KB")
        m = STATUS.match(buf)
        if not m or m.group(1) != b"200":
            raise ConnectionError(f"status {buf[:60]!r}")
        event = json.loads(hc.EVENT_DATA.search(buf).group(1))
        if "watch=1" not in path and event.get("connections", 0) < 1:
            raise ConnectionError(f"first event does not count the caller: {event}")
        return s
    except BaseException:
        s.close()
        raise


def close_stream(s, mode):
    if mode == 0:  # FIN after shutdown
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
    elif mode == 1:  # plain close (FIN, or RST when unread bytes are pending)
        s.close()
    else:  # abortive close: RST
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def kill_child(addr, wid, n):
    """Forks a child that opens KILL_STREAMS streams, waits for it to hold them, SIGKILLs it.
    Returns the number of streams the child held."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        held = []
        try:
            for j in range(KILL_STREAMS):
                held.append(open_stream(addr, f"127.{100 + wid}.{n % 250}.{j + 1}",
                                        f"/rooms/soak-{j % ROOMS}/events?visitor=k{wid}-{n}-{j}", "1.1"))
            os.write(wfd, b"%d\n" % len(held))
        except BaseException as e:  # noqa: BLE001
            os.write(wfd, b"%d %s\n" % (len(held), repr(e).encode()[:200]))
        time.sleep(60)  # SIGKILLed long before this
        os._exit(0)
    os.close(wfd)
    held, err = 0, None
    try:
        ready, _, _ = select.select([rfd], [], [], 30)
        if ready:
            line = os.read(rfd, 512).decode().strip()
            parts = line.split(" ", 1)
            held = int(parts[0]) if parts and parts[0].isdigit() else 0
            if len(parts) > 1 or held != KILL_STREAMS:
                err = f"kill child held {held}/{KILL_STREAMS}: {line}"
        else:
            err = "kill child did not report within 30 s"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(rfd)
    return held, err


def worker(port, wid, cycles, deadline, seed):
    """One worker process: prints a JSON summary on stdout."""
    addr = ("127.0.0.1", port)
    rng = random.Random(seed)
    done = {"cycles": 0, "fin": 0, "close": 0, "rst": 0, "killed": 0, "kills": 0, "errors": 0, "messages": []}
    start = time.monotonic()
    i = 0
    while i < cycles and time.time() < deadline:
        if i % KILL_EVERY == 100:
            held, err = kill_child(addr, wid, i)
            done["killed"] += held
            done["kills"] += 1
            if err:
                done["errors"] += 1
                done["messages"].append(err)
        room = f"soak-{(wid * 5 + i) % ROOMS}"
        kind = rng.randrange(10)
        cookie = None
        if kind < 7:
            path = f"/rooms/{room}/events?visitor=v{wid}-{i % 997}"  # returns often inside the leave grace
        elif kind < 9:
            path = f"/rooms/{room}/events"
            cookie = f"c{wid}-{i % 500}" if kind == 7 else None  # by cookie, or anonymous (fresh id)
        else:
            path = f"/rooms/{room}/events?watch=1"  # watchers come and go too
        src = f"127.{wid + 1}.{(i // 200) % 250}.{i % 200 + 1}"
        try:
            s = open_stream(addr, src, path, "1.1" if i % 2 == 0 else "1.0", cookie=cookie)
            mode = rng.randrange(3)
            close_stream(s, mode)
            done[("fin", "close", "rst")[mode]] += 1
            done["cycles"] += 1
        except (OSError, ValueError) as e:
            done["errors"] += 1
            if len(done["messages"]) < 5:
                done["messages"].append(f"cycle {i} {path}: {e!r}")
        i += 1
    done["seconds"] = time.monotonic() - start
    print(json.dumps(done), flush=True)


def run_phase(server, per_worker, seconds, seed):
    deadline = time.time() + seconds
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(server.port), str(w), str(per_worker), str(deadline),
                               str(seed + w)], stdout=subprocess.PIPE, text=True) for w in range(WORKERS)]
    totals = {}
    messages = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=seconds + 90)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            messages.append("a worker did not finish in time")
        try:
            summary = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            messages.append(f"worker exited {p.returncode} without a summary")
            continue
        messages += summary.pop("messages")
        for k, v in summary.items():
            totals[k] = totals.get(k, 0) + v if k != "seconds" else max(totals.get(k, 0), v)
    return totals, messages


def wait_idle(server, r, what):
    idle = hc.wait_until(server.is_idle, LEAVE_GRACE + 20, step=0.25)
    if not idle:
        m = server.metrics()
        r.check(False, f"{what}: counts did not return to zero: stats {server.stats()}, streams_open "
                       f"{hc.metric(m, 'headcount_streams_open')}, rooms {server.json('/api/rooms?limit=5')}")
    return idle


def body(r):
    hc.raise_fd_limit()
    seed = int(os.environ.get("HC_SEED", str(int(time.time()))))
    server = hc.Server("churn-soak", ["--max-streams-per-ip", "100000", "--leave-grace", str(LEAVE_GRACE)])
    try:
        warm, msgs = run_phase(server, WARMUP // WORKERS, 60, seed)
        r.check(not msgs and warm.get("errors", 0) == 0, f"warm-up errors: {warm.get('errors')} {msgs[:3]}")
        if not wait_idle(server, r, "after the warm-up"):
            return
        time.sleep(1)
        baseline = server.rss_kb()
        hc.log(f"  warm-up: {warm}; RSS baseline {baseline} kB")

        main, msgs = run_phase(server, TARGET // WORKERS, MAIN_SECONDS, seed + 1000)
        secs = main.get("seconds", 0) or 1
        cycles = main.get("cycles", 0)
        rate = (cycles + main.get("killed", 0)) / secs
        peak_rss = server.rss_kb()
        hc.log(f"  main: {main}; {rate:.0f} cycles/s; RSS right after {peak_rss} kB")
        r.check(not msgs and main.get("errors", 0) == 0, f"{main.get('errors')} failed cycles: {msgs[:3]}")
        # Bounded in time: what fits is reported; a floor keeps the soak meaningful on a slow machine.
        r.check(cycles >= min(TARGET, FLOOR), f"only {cycles} cycles fitted in {MAIN_SECONDS:.0f} s (floor {FLOOR})")
        r.check(server.alive(), "the server died during the soak")
        if not wait_idle(server, r, "after the soak"):
            return
        st = server.stats()
        m = server.metrics()
        listing = server.json("/api/rooms?limit=1000")
        samples = [server.room(f"soak-{k}") for k in range(ROOMS)]
        r.check(listing == {"rooms": []}, f"/api/rooms still lists rooms: {str(listing)[:200]}")
        r.check(all(c["online"] == 0 and c["connections"] == 0 for c in samples), f"a room is not at zero: {samples}")
        r.check(st["online"] == 0 and st["connections"] == 0 and st["rooms"] == 0 and st["subscribers"] == 0, f"/api/stats {st}")
        joins = hc.metric(m, "headcount_joins_total")
        leaves = hc.leaves_by_reason(m)
        r.check(joins == sum(leaves.values()), f"joins {joins:.0f} != leaves {leaves}")
        total_streams = warm.get("cycles", 0) + warm.get("killed", 0) + cycles + main.get("killed", 0)
        r.check(joins <= total_streams and joins >= 0.85 * total_streams,
                f"joins_total {joins:.0f} does not match the {total_streams} streams opened (~10 % are watchers)")
        time.sleep(1)
        final = server.rss_kb()
        growth = (final - baseline) / baseline
        r.check(growth <= RSS_TOLERANCE, f"RSS grew {growth * 100:.1f} % ({baseline} -> {final} kB) over the soak")
        reached = "" if cycles >= TARGET else f" (target {TARGET} did not fit in {MAIN_SECONDS:.0f} s)"
        r.note(f"{cycles} cycles{reached} + {main.get('killed', 0)} streams of {main.get('kills', 0)} SIGKILLed children "
               f"in {secs:.0f} s = {rate:.0f} cycles/s (fin {main.get('fin')}, close {main.get('close')}, rst {main.get('rst')}); "
               f"all counts 0; leaves {dict((k, int(v)) for k, v in leaves.items() if v)}; "
               f"RSS {baseline} -> {final} kB ({growth * 100:+.1f} %, peak {peak_rss} kB)")
        if cycles < TARGET:
            print(f"  churn-soak: reached {cycles} of {TARGET} cycles in {MAIN_SECONDS:.0f} s", file=sys.stderr)
    finally:
        r.check(server.stop() == 0, "the server did not exit 0 on SIGTERM")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        hc.raise_fd_limit()
        worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
    else:
        hc.run("churn-soak", body)
