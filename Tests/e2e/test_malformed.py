"""Test 4, 10,000 malformed requests while 100 subscribers watch.

100 subscribers (distinct visitors) hold streams in room `calm`. Then 10,000 malformed requests of many
kinds arrive from several threads: bad room names (every forbidden byte, raw and percent-encoded,
over-long, empty), bad visitor ids, bad `watch`, missing/forged/expired/misdirected join tokens for
private rooms, heads over 16 KB (431), URLs over 2 KB (414), truncated requests, binary garbage, invalid
methods, bad `limit`/`window` values, invalid percent-encoding and NUL bytes.

Every request that gets an answer must get a 4xx with a JSON body containing "error" (and the documented
status where the README names one); truncated and garbage ones may just be closed (counted apart). The
subscribers' streams stay open and every event they receive says online 100, connections 100;
/api/rooms/calm and /api/stats say 100 throughout; no other room appears; the server is alive at the end.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import selectors
import socket
import threading
import time

import hc

TOTAL = int(os.environ.get("HC_MALFORMED_TOTAL", "10000"))
SUBSCRIBERS = 100
SECRET = "x"
THREADS = 8
ALLOWED = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:")
FORBIDDEN = [b for b in range(256) if b not in ALLOWED]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(room, expires, prefix=False, visitor="", secret=SECRET):
    payload = f"v1|{room}|{'prefix' if prefix else 'exact'}|{expires}|{visitor}".encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return b64url(payload) + "." + b64url(mac)


def req(target, method="GET", headers=(), version="HTTP/1.1", close=True):
    lines = [f"{method} {target} {version}".encode() if isinstance(target, str) else method.encode() + b" " + target + b" " + version.encode(),
             b"Host: 127.0.0.1"]
    if close:
        lines.append(b"Connection: close")
    for h in headers:
        lines.append(h if isinstance(h, bytes) else h.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Case:
    __slots__ = ("kind", "data", "expect", "truncate")

    def __init__(self, kind, data, expect, truncate=False):
        self.kind, self.data, self.expect, self.truncate = kind, data, expect, truncate


def generate(total, seed):
    """`total` malformed requests; expect is a status, "4xx" (an answer, any 4xx) or "any" (answer optional)."""
    rng = random.Random(seed)
    now = int(time.time())
    makers = []

    def bad_room_encoded():
        b = rng.choice(FORBIDDEN)
        room = f"r{rng.randrange(1000)}%{b:02X}x"
        if rng.random() < 0.5:
            return Case("room-encoded", req(f"/rooms/{room}/events?visitor=m{rng.randrange(99)}"), 400)
        return Case("room-encoded", req(f"/api/rooms/{room}"), 400)

    def bad_room_raw():
        # Bytes that may appear raw in a request target but not in a room name.
        c = rng.choice("!$&'()*+,;=@[]|{}^`\"<>\\")
        target = f"/rooms/a{c}b/events?visitor=m1".encode()
        return Case("room-raw", req(target), "4xx")

    def bad_room_long():
        n = rng.randrange(129, 1900)
        if rng.random() < 0.5:
            return Case("room-long", req(f"/rooms/{'a' * n}/events?visitor=m1"), 400)
        return Case("room-long", req(f"/api/rooms/{'b' * n}"), 400)

    def bad_room_empty():
        # An empty path segment does not match the route at all: 404 there (the router's answer), 400 for " ".
        if rng.random() < 0.5:
            return Case("room-empty", req(rng.choice(["/rooms//events", "/rooms//events?visitor=m1", "/rooms///events"])), "4xx")
        return Case("room-empty", req(rng.choice(["/rooms/%20/events", "/api/rooms/%20"])), 400)

    def bad_visitor():
        v = rng.choice(["", "a" * rng.randrange(129, 400), f"a%{rng.choice(FORBIDDEN):02X}b", "%", "a%zz", "%E0%A4"])
        return Case("visitor", req(f"/rooms/calm/events?visitor={v}"), 400)

    def bad_watch():
        w = rng.choice(["2", "yes", "no", "on", "%00", "11", "-1", "true1"])
        return Case("watch", req(f"/rooms/calm/events?watch={w}"), 400)

    def bad_token():
        room = f"priv-{rng.randrange(50)}"
        choice = rng.randrange(9)
        if choice == 0:
            return Case("token-missing", req(f"/rooms/{room}/events?visitor=m1"), 401)
        if choice == 1:
            return Case("token-garbage", req(f"/rooms/{room}/events?token={rng.choice(['abc', 'a.b.c', '.', 'x.', '.y', '%00', '!!'])}"), 403)
        if choice == 2:
            return Case("token-forged", req(f"/rooms/{room}/events?token={token(room, now + 3600, secret='not-the-secret')}"), 403)
        if choice == 3:
            return Case("token-expired", req(f"/rooms/{room}/events?token={token(room, now - rng.randrange(1, 10**6))}"), 401)
        if choice == 4:
            return Case("token-other-room", req(f"/rooms/{room}/events?token={token('priv-other', now + 3600)}"), 403)
        if choice == 5:
            return Case("token-other-prefix", req(f"/rooms/{room}/events?token={token('team-', now + 3600, prefix=True)}"), 403)
        if choice == 6:
            return Case("token-other-visitor", req(f"/rooms/{room}/events?visitor=eve&token={token(room, now + 3600, visitor='bob')}"), 403)
        if choice == 7:
            t = token(room, now + 3600)
            # Not the last character of either half: its unused low bits may decode to the same bytes.
            dot = t.index(".")
            i = rng.choice([j for j in range(len(t) - 1) if j != dot - 1])
            flipped = t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1:]
            return Case("token-mutated", req(f"/rooms/{room}/events?token={flipped}"), 403)
        return Case("token-snapshot", req(f"/api/rooms/{room}"), 401)

    def huge_head():
        choice = rng.randrange(3)
        if choice == 0:
            headers = [f"X-Big: {'a' * rng.randrange(17_000, 40_000)}"]
        elif choice == 1:
            headers = [f"X-H{i}: {'b' * 100}" for i in range(rng.randrange(170, 400))]
        else:
            headers = [f"Cookie: hc_vid={'c' * rng.randrange(17_000, 30_000)}"]
        target = rng.choice(["/rooms/calm/events?visitor=big", "/api/stats", "/api/rooms/calm"])
        return Case("head-431", req(target, headers=headers), 431)

    def long_url():
        pad = "p" * rng.randrange(2_100, 7_000)
        target = rng.choice([f"/api/stats?pad={pad}", f"/rooms/calm/events?visitor=long&pad={pad}",
                             f"/api/rooms/calm?pad={pad}", f"/events?pad={pad}", f"/{pad}"])
        return Case("url-414", req(target), 414)

    def truncated():
        full = req(rng.choice(["/rooms/calm/events?visitor=trunc", "/api/stats", "/rooms/priv-1/events", "/events"]))
        cut = rng.randrange(1, len(full) - 1)
        return Case("truncated", full[:cut], "any", truncate=True)

    def garbage():
        n = rng.randrange(1, 600)
        data = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5:
            data += b"\r\n\r\n"
        return Case("garbage", data, "any")

    def bad_method():
        choice = rng.randrange(6)
        if choice == 0:
            m = rng.choice(["G@T", "GE T", "get", "BREW", "FOO", "G\x00T", "\x16\x03\x01"])
            return Case("method", req("/api/stats", method=m), "any")
        if choice == 1:
            return Case("method", req("/rooms/calm/events?visitor=post", method=rng.choice(["POST", "PUT", "DELETE", "PATCH"])), "4xx")
        if choice == 2:
            return Case("method", req("/api/stats", method=rng.choice(["POST", "PUT", "DELETE", "PATCH"])), "4xx")
        if choice == 3:
            return Case("version", req("/api/stats", version=rng.choice(["HTTP/9.9", "HTTP/1.x", "HTTX/1.1", "HTTP/1.1 extra"])), "any")
        if choice == 4:
            return Case("route", req(rng.choice(["/nope", "/rooms/calm", "/rooms/calm/events/extra", "/api/roomz", "/api",
                                                 "/rooms/calm/event", "/api/rooms/calm/x"])), 404)
        return Case("header", req("/api/stats", headers=[rng.choice(["NoColon", " Leading: space", "X: a\rb", "Content-Length: abc",
                                                                     "Content-Length: 1\r\nContent-Length: 2", "X\x00: y"])]), "any")

    def bad_limit():
        choice = rng.randrange(3)
        if choice == 0:
            v = rng.choice(["0", "-1", "1001", "abc", "1e3", "%00", "", "99999999999999999999", "1.5", " 5", "0x10"])
            return Case("limit", req(f"/api/rooms?limit={v}"), 400)
        if choice == 1:
            v = rng.choice(["0", "-5", "3601", "x", "", "1e2", "99999999999999999999", "2.5"])
            return Case("window", req(f"/api/history?window={v}"), 400)
        return Case("history-room", req(f"/api/history?room={rng.choice(['', 'a%20b', 'a' * 200, '%ff', 'a/b'])}"), 400)

    def bad_percent():
        p = rng.choice(["%zz", "%", "%4", "%E0%A4", "%C0%AF", "%ED%A0%80", "%FF%FE", "a%", "%%", "%G1"])
        if rng.random() < 0.5:
            return Case("percent", req(f"/rooms/{p}/events?visitor=m1"), 400)
        return Case("percent", req(f"/api/rooms/{p}"), 400)

    def nul_bytes():
        choice = rng.randrange(4)
        if choice == 0:
            return Case("nul", req(b"/rooms/ca\x00lm/events?visitor=n"), "any")
        if choice == 1:
            return Case("nul", req("/api/stats", headers=[b"X-Nul: a\x00b"]), "any")
        if choice == 2:
            return Case("nul", req("/rooms/calm%00/events?visitor=n"), 400)
        return Case("nul", req("/rooms/calm/events?visitor=n%00"), 400)

    makers = [bad_room_encoded, bad_room_raw, bad_room_long, bad_room_empty, bad_visitor, bad_watch, bad_token, huge_head,
              long_url, truncated, garbage, bad_method, bad_limit, bad_percent, nul_bytes]
    cases = [makers[i % len(makers)]() for i in range(total)]
    rng.shuffle(cases)
    return cases


def exchange(addr, case, timeout=8.0):
    """Sends a case; returns (status or 0 when closed without an answer, body, note)."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        try:
            s.sendall(case.data)
        except OSError:
            pass  # the server may answer and close before reading everything (431)
        if case.truncate:
            return 0, b"", "truncated"
        if not case.data.endswith(b"\r\n\r\n"):
            try:
                s.shutdown(socket.SHUT_WR)  # no complete head: tell the server nothing more comes
            except OSError:
                pass
        data = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return -1, data, "timeout"
            except OSError as e:
                if data:
                    break
                return 0, b"", f"reset {e.errno}"
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                status, headers, _ = hc.parse_response(data)
                if headers.get("content-type", "").startswith("text/event-stream"):
                    return status, b"", "stream"
                length = headers.get("content-length")
                if length is not None and len(body) >= int(length):
                    break
        status, headers, body = hc.parse_response(data)
        return status, body, ""
    finally:
        s.close()


class Watchers:
    """The 100 subscribers: a thread reads their events and records any that is not 100/100."""

    def __init__(self, server):
        self.sel = selectors.DefaultSelector()
        self.bufs = {}
        self.latest = {}
        self.bad = []
        self.closed = []
        self.strict = False
        self.events = 0
        self.stop = False
        for i in range(SUBSCRIBERS):
            s = socket.create_connection(server.addr, timeout=10)
            s.sendall(hc.stream_request(f"/rooms/calm/events?visitor=calm{i}"))
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, i)
            self.bufs[i] = b""
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            for key, _ in self.sel.select(timeout=0.1):
                i = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closed.append(i)
                    self.sel.unregister(key.fileobj)
                    continue
                buf = self.bufs[i] + chunk
                while True:
                    m = hc.EVENT_DATA.search(buf)
                    if not m:
                        break
                    event = json.loads(m.group(1))
                    self.latest[i] = event
                    if self.strict:
                        self.events += 1
                        if event.get("online") != SUBSCRIBERS or event.get("connections") != SUBSCRIBERS:
                            self.bad.append(event)
                    buf = buf[m.end():]
                self.bufs[i] = buf[-4096:]

    def all_at(self, n):
        return len(self.latest) == SUBSCRIBERS and all(e.get("online") == n and e.get("connections") == n for e in self.latest.values())

    def close(self):
        self.stop = True
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def body(r):
    hc.raise_fd_limit()
    seed = int(os.environ.get("HC_SEED", str(int(time.time()))))
    server = hc.Server("malformed", ["--secret", SECRET, "--private-rooms", "priv-*", "--max-streams-per-ip", "1000"])
    watchers = Watchers(server)
    try:
        ready = hc.wait_until(lambda: watchers.all_at(SUBSCRIBERS), 30)
        if not r.check(ready, f"subscribers not all at {SUBSCRIBERS}: {len(watchers.latest)} have events, room {server.room('calm')}"):
            return
        watchers.strict = True
        before = server.metrics()
        cases = generate(TOTAL, seed)
        hc.log(f"  seed {seed}: {len(cases)} cases")
        results = [None] * len(cases)
        problems = []
        snapshots = []
        lock = threading.Lock()
        next_index = [0]

        def work():
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(cases):
                    return
                case = cases[i]
                try:
                    status, resp, note = exchange(server.addr, case)
                except OSError as e:
                    status, resp, note = 0, b"", f"connect {e!r}"
                results[i] = (status, note)
                problem = judge(case, status, resp, note)
                if problem:
                    with lock:
                        problems.append(f"{case.kind} {case.data[:80]!r}: {problem}")

        threads = [threading.Thread(target=work, daemon=True) for _ in range(THREADS)]
        start = time.monotonic()
        for t in threads:
            t.start()
        # Watch the figures while the requests arrive.
        while any(t.is_alive() for t in threads) and time.monotonic() - start < 120:
            room, st = server.room("calm"), server.stats()
            snapshots.append((room["online"], room["connections"], st["online"], st["connections"], st["rooms"]))
            time.sleep(0.2)
        for t in threads:
            t.join(10)
        took = time.monotonic() - start
        done = sum(1 for x in results if x is not None)
        r.check(done == len(cases), f"only {done} of {len(cases)} requests completed in 120 s")
        r.check(not problems, f"{len(problems)} wrong answers, e.g. {problems[:3]}")
        for text in sorted(set(problems))[:60]:
            hc.log(f"  wrong: {text}")
        moved = [s for s in snapshots if s != (SUBSCRIBERS, SUBSCRIBERS, SUBSCRIBERS, SUBSCRIBERS, 1)]
        r.check(not moved, f"figures moved during the requests: {moved[:3]} (of {len(snapshots)} samples)")
        r.check(server.alive(), "the server died")
        time.sleep(0.5)  # anything a stray join would have caused has reached the subscribers by now
        final_room, final_stats = server.room("calm"), server.stats()
        listing = server.json("/api/rooms?limit=1000")
        r.check(final_room == {"room": "calm", "online": SUBSCRIBERS, "connections": SUBSCRIBERS}, f"/api/rooms/calm {final_room}")
        r.check(final_stats["online"] == SUBSCRIBERS and final_stats["connections"] == SUBSCRIBERS and final_stats["rooms"] == 1,
                f"/api/stats {final_stats}")
        r.check([x["room"] for x in listing["rooms"]] == ["calm"], f"/api/rooms lists {listing}")
        r.check(not watchers.bad, f"subscribers received {len(watchers.bad)} events not at {SUBSCRIBERS}: {watchers.bad[:3]}")
        r.check(not watchers.closed, f"{len(watchers.closed)} subscriber streams were closed")
        after = server.metrics()
        rejected = {k: int(after.get(k, 0) - before.get(k, 0)) for k in after
                    if k.startswith("headcount_requests_rejected_total") and after.get(k, 0) != before.get(k, 0)}
        statuses = {}
        kinds = {}
        for case, res in zip(cases, results):
            if res is None:
                continue
            key = str(res[0]) if res[0] > 0 else (res[1] or "closed").split(" ")[0]
            statuses[key] = statuses.get(key, 0) + 1
            kinds[case.kind] = kinds.get(case.kind, 0) + 1
        answered = sum(v for k, v in statuses.items() if k.isdigit())
        hc.log(f"  statuses {statuses}")
        hc.log(f"  kinds {kinds}")
        hc.log(f"  rejected_total delta {rejected}")
        total_rejected = sum(rejected.values())
        r.check(total_rejected >= answered, f"headcount_requests_rejected_total moved by {total_rejected}, fewer than the {answered} 4xx answers")
        r.note(f"{done} malformed requests in {took:.1f} s: {answered} answered 4xx JSON "
               f"({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}); "
               f"{SUBSCRIBERS} subscribers held {SUBSCRIBERS}/{SUBSCRIBERS} throughout ({watchers.events} events, {len(snapshots)} snapshots); server alive")
    finally:
        watchers.close()
        server.stop()


def judge(case, status, body, note):
    """None when the answer is acceptable, else what is wrong."""
    if note == "truncated":
        return None
    if note == "stream":
        return f"opened a stream ({status})"
    if status == -1:
        return "no answer and no close within 8 s"
    if status == 0:
        if case.expect == "any":
            return None
        return f"closed without an answer ({note or 'eof'})"
    if not 400 <= status <= 499:
        return f"status {status}"
    try:
        parsed = json.loads(body)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
            return f"body without error: {body[:100]!r}"
    except ValueError:
        return f"body is not JSON: {body[:100]!r}"
    if isinstance(case.expect, int) and status != case.expect:
        return f"status {status}, expected {case.expect}"
    return None


if __name__ == "__main__":
    hc.run("malformed", body)
