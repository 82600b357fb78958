"""Test 5, wire fuzz: at least 100,000 random and mutated request heads against the server's HTTP entry.

Valid requests of every route (streams with visitors, cookies, tokens, forwarded addresses; snapshots,
listings, history, metrics, health) are mutated 1-4 times (byte flips, insertions of a dictionary of
HTTP-significant tokens, deletions, duplications, truncations, case changes, huge repeats); one in ten
inputs is random bytes. Each input goes on its own connection. The server must never answer 5xx, every
4xx must be a JSON `{"error": ...}`, a connection may be closed without an answer, a mutated request that
is still a valid stream request may open a stream (the client closes it at once) — and at the end, after
the leave grace, nothing is counted: every figure and /metrics' open streams are 0, and the server is alive.

Several worker processes (this file with `--worker`) with a few threads each; bounded by count and time.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import hc

TOTAL = int(os.environ.get("HC_FUZZ_INPUTS", "100000"))
WORKERS = int(os.environ.get("HC_FUZZ_WORKERS", "4"))
THREADS = 8
SECONDS = float(os.environ.get("HC_FUZZ_SECONDS", "120"))
FLOOR = 20_000
SECRET = "fuzz-secret"
LEAVE_GRACE = 1.0

DICTIONARY = [b"%", b"%00", b"%zz", b"%E0%A4", b"%2F", b"%25", b"\r\n", b"\n", b"\r", b" ", b"\t", b"\x00", b"\xff", b"/", b"//",
              b"/..", b"?", b"&", b"=", b"#", b":", b";", b",", b"*", b"~", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"GET ",
              b"\r\nContent-Length: 7", b"\r\nTransfer-Encoding: chunked", b"\r\nHost: a", b"\r\nConnection: keep-alive",
              b"\r\nExpect: 100-continue", b"\r\nUpgrade: h2c", b"\r\nCookie: hc_vid=", b"\r\nX-Forwarded-For: ", b"visitor=",
              b"watch=1", b"token=", b"limit=", b"window=", b"room=", b"-1", b"0", b"99999999999999999999", b"1e9", b"\xc3\xa9",
              b"\xe2\x80\xae", b"\xf0\x9f\x98\x80", b"\xc0\xaf", b"A" * 200, b"%41" * 100, b"/rooms/", b"/events", b"/api/rooms/"]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(room, expires, prefix=False, visitor=""):
    payload = f"v1|{room}|{'prefix' if prefix else 'exact'}|{expires}|{visitor}".encode()
    return b64url(payload) + "." + b64url(hmac.new(SECRET.encode(), payload, hashlib.sha256).digest())


def templates(rng):
    now = int(time.time())
    k = rng.randrange(20)
    v = rng.randrange(1000)
    targets = [
        f"/rooms/fz-{k}/events?visitor=v{v}",
        f"/rooms/fz-{k}/events",
        f"/rooms/fz-{k}/events?watch=1",
        f"/rooms/priv-{k}/events?token={token(f'priv-{k}', now + 600)}",
        f"/rooms/priv-{k}/events?visitor=b{v}&token={token('priv-', now + 600, prefix=True, visitor=f'b{v}')}",
        "/events",
        "/api/sse",
        f"/api/rooms/fz-{k}",
        f"/api/rooms/priv-{k}?token={token(f'priv-{k}', now + 600)}",
        "/api/rooms?limit=5",
        "/api/stats",
        f"/api/history?room=fz-{k}&window=60",
        "/api/history?window=10",
        "/healthz",
        "/readyz",
        "/metrics",
    ]
    headers = [b"Host: 127.0.0.1"]
    if rng.random() < 0.3:
        headers.append(f"Cookie: hc_vid=c{v}; other=1".encode())
    if rng.random() < 0.2:
        headers.append(f"X-Forwarded-For: 203.0.113.{v % 250}, 10.0.0.1".encode())
    if rng.random() < 0.2:
        headers.append(b"Origin: https://example.com")
    if rng.random() < 0.7:
        headers.append(b"Connection: close")
    version = b"HTTP/1.1" if rng.random() < 0.8 else b"HTTP/1.0"
    return b"GET " + rng.choice(targets).encode() + b" " + version + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(9)
        n = len(data)
        i = rng.randrange(n + 1) if n else 0
        if op == 0 and n:  # flip a byte
            data[min(i, n - 1)] = rng.randrange(256)
        elif op == 1:  # insert a dictionary token
            data[i:i] = rng.choice(DICTIONARY)
        elif op == 2 and n:  # delete a range
            data[i:i + rng.randrange(1, 16)] = b""
        elif op == 3 and n:  # duplicate a range
            j = rng.randrange(n)
            data[i:i] = data[j:j + rng.randrange(1, 40)]
        elif op == 4 and n:  # truncate
            del data[rng.randrange(n):]
        elif op == 5 and n:  # swap case of a run
            seg = bytes(data[i:i + 8])
            data[i:i + 8] = seg.swapcase()
        elif op == 6:  # a long run
            data[i:i] = bytes([rng.choice(b"a/%.\r\n ")]) * rng.randrange(100, 5000)
        elif op == 7 and n:  # replace a digit run with a huge number
            data[i:i] = str(rng.choice([-1, 0, 2**31, 2**63, 10**30])).encode()
        else:  # random bytes
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
    return bytes(data)


def exchange(addr, data, timeout=3.0):
    """Returns (kind, status, body): kind is answer, stream, closed, stalled."""
    s = socket.create_connection(addr, timeout=10)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        complete = b"\r\n\r\n" in data
        if not complete:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        s.settimeout(timeout)
        buf = b""
        half_closed = not complete
        end = time.monotonic() + 2 * timeout
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if half_closed:
                    return "stalled", -1, b""
                # The server may be waiting for a body the mutation promised: say nothing more comes.
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                half_closed = True
                continue
            except OSError:
                if buf:
                    break
                return "closed", 0, b""
            if not chunk:
                break
            buf += chunk
            # Interim 1xx responses (Expect: 100-continue) are skipped.
            while buf.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in buf:
                buf = buf.partition(b"\r\n\r\n")[2]
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                status, headers, _ = hc.parse_response(buf)
                if headers.get("content-type", "").startswith("text/event-stream"):
                    return "stream", status, b""
                length = headers.get("content-length")
                if length is not None and length.isdigit() and len(body) >= int(length):
                    break
                if "chunked" in headers.get("transfer-encoding", "") and body.endswith(b"0\r\n\r\n"):
                    break
        if not buf:
            return "closed", 0, b""
        status, headers, body = hc.parse_response(buf)
        return "answer", status, body
    finally:
        s.close()


def judge(kind, status, body):
    if kind in ("closed", "stalled", "stream"):
        return None if kind != "stream" or status == 200 else f"stream with status {status}"
    if status >= 500 or status < 100:
        return f"status {status}: {body[:120]!r}"
    if 400 <= status < 500:
        try:
            parsed = json.loads(body)
            if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
                return f"{status} without an error field: {body[:120]!r}"
        except ValueError:
            return f"{status} body is not JSON: {body[:120]!r}"
    elif not 200 <= status < 300:
        return f"status {status}"
    return None


def worker(port, wid, count, deadline, seed):
    addr = ("127.0.0.1", port)
    out = {"inputs": 0, "answer": 0, "stream": 0, "closed": 0, "stalled": 0, "statuses": {}, "problems": [], "stalled_samples": []}
    lock = threading.Lock()
    def run(tid):
        rng = random.Random(seed * 1000 + tid)
        for _ in range(count // THREADS + (1 if tid < count % THREADS else 0)):
            if time.time() > deadline:
                return
            if rng.random() < 0.1:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
                if rng.random() < 0.5:
                    data += b"\r\n\r\n"
            else:
                data = mutate(rng, templates(rng))
            if not data:
                # Nothing at all: the server waits for a first request (up to 30 s) — not a parser input.
                data = bytes([rng.randrange(256)])
            try:
                kind, status, body = exchange(addr, data)
            except OSError as e:
                kind, status, body = "closed", 0, repr(e).encode()
            problem = judge(kind, status, body)
            with lock:
                out["inputs"] += 1
                out[kind] += 1
                if kind == "answer":
                    out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
                if problem and len(out["problems"]) < 20:
                    out["problems"].append(f"{data[:160]!r}: {problem}")
                if kind == "stalled" and len(out["stalled_samples"]) < 5:
                    out["stalled_samples"].append(repr(data[:300]))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out), flush=True)


def body(r):
    hc.raise_fd_limit()
    seed = int(os.environ.get("HC_SEED", str(int(time.time()))))
    server = hc.Server("wire-fuzz", ["--secret", SECRET, "--private-rooms", "priv-*", "--max-streams-per-ip", "100000",
                                     "--leave-grace", str(LEAVE_GRACE), "--log-level", "warning"])
    try:
        deadline = time.time() + SECONDS
        start = time.monotonic()
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(server.port), str(w),
                                   str(TOTAL // WORKERS + (1 if w < TOTAL % WORKERS else 0)),
                                   str(deadline), str(seed + w)], stdout=subprocess.PIPE, text=True) for w in range(WORKERS)]
        totals = {"inputs": 0, "answer": 0, "stream": 0, "closed": 0, "stalled": 0}
        statuses, problems = {}, []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=SECONDS + 60)
                summary = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                p.kill()
                p.communicate()
                problems.append("a worker did not report")
                continue
            for k in totals:
                totals[k] += summary[k]
            for k, v in summary["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
            problems += summary["problems"]
            for sample in summary["stalled_samples"]:
                hc.log(f"  stalled: {sample}")
        took = time.monotonic() - start
        hc.log(f"  seed {seed}: {totals}, statuses {statuses}")
        for p in problems[:40]:
            hc.log(f"  problem: {p}")
        r.check(server.alive(), f"the server died: {server.log_tail()}")
        r.check(not problems, f"{len(problems)} bad answers, e.g. {problems[:3]}")
        # Bounded in time: on a slow machine (or a debug build) what fits is reported; a floor keeps it meaningful.
        r.check(totals["inputs"] >= min(TOTAL, FLOOR), f"only {totals['inputs']} inputs fitted in {SECONDS:.0f} s (floor {FLOOR})")
        r.check(totals["stalled"] <= totals["inputs"] // 100, f"{totals['stalled']} connections neither answered nor closed")
        idle = hc.wait_until(server.is_idle, LEAVE_GRACE + 20, step=0.25)
        listing = server.json("/api/rooms?limit=1000")
        r.check(idle and listing == {"rooms": []}, f"something is still counted: stats {server.stats()}, rooms {str(listing)[:200]}, "
                                                   f"streams_open {hc.metric(server.metrics(), 'headcount_streams_open')}")
        fives = sum(v for k, v in statuses.items() if k.startswith("5"))
        reached = "" if totals["inputs"] >= TOTAL else f" (target {TOTAL} did not fit in {SECONDS:.0f} s)"
        r.note(f"{totals['inputs']} inputs{reached} in {took:.0f} s ({totals['inputs'] / took:.0f}/s): {totals['answer']} answered "
               f"({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}), {totals['stream']} still-valid streams opened and closed, "
               f"{totals['closed']} closed without an answer, {totals['stalled']} stalled; no 5xx ({fives}); nothing left counted; seed {seed}")
    finally:
        r.check(server.stop() == 0, "the server did not exit 0 on SIGTERM")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        hc.raise_fd_limit()
        worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
    else:
        hc.run("wire-fuzz", body)
