#!/usr/bin/env python3
"""Small SSE probes for the end-to-end scripts (stdlib only).

  sse_probe.py latency URL            -> reads /selftest/stream through URL, prints max latency ms of events vs their server timestamps
  sse_probe.py hold URL SECONDS       -> keeps a stream open SECONDS, prints "open=<0|1> heartbeats=<n> events=<n> encoding=<value>"
  sse_probe.py status URL [SRC_IP]    -> prints the HTTP status of a GET (from source address SRC_IP), keeps the stream open 30 s in background if 200
"""
import socket, sys, time, json, urllib.parse, os


def open_stream(url, src=None, extra_headers=""):
    u = urllib.parse.urlsplit(url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(10)
    s.connect((u.hostname, u.port or 80))
    path = u.path + ("?" + u.query if u.query else "")
    req = f"GET {path} HTTP/1.1\r\nHost: {u.hostname}\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n{extra_headers}\r\n"
    s.sendall(req.encode())
    return s


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def main():
    mode = sys.argv[1]
    if mode == "latency":
        s = open_stream(sys.argv[2])
        status, headers, rest = read_head(s)
        if status != 200:
            print(f"status={status}")
            sys.exit(1)
        data = rest
        worst = 0.0
        seen = 0
        deadline = time.time() + 10
        while time.time() < deadline:
            for line in data.split(b"\n"):
                pass
            # parse complete lines
            *lines, data = data.split(b"\n")
            for line in lines:
                line = line.strip(b"\r")
                if line.startswith(b"data: {\"seq\""):
                    ev = json.loads(line[6:])
                    lat = time.time() * 1000 - ev["t"]
                    worst = max(worst, lat)
                    seen += 1
                if line.startswith(b"event: end"):
                    print(f"events={seen} max_latency_ms={worst:.1f}")
                    return
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        print(f"events={seen} max_latency_ms={worst:.1f}")
    elif mode == "hold":
        s = open_stream(sys.argv[2])
        status, headers, rest = read_head(s)
        end = time.time() + float(sys.argv[3])
        text = rest
        open_ = 1
        s.settimeout(0.5)
        while time.time() < end:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    open_ = 0
                    break
                text += chunk
            except socket.timeout:
                pass
        hb = text.count(b": heartbeat")
        ev = text.count(b"data: ")
        print(f"status={status} open={open_} heartbeats={hb} events={ev} encoding={headers.get('content-encoding','none')}")
    elif mode == "status":
        src = sys.argv[3] if len(sys.argv) > 3 else None
        s = open_stream(sys.argv[2], src)
        status, headers, rest = read_head(s)
        print(status, flush=True)
        if status == 200 and os.fork() == 0:
            # keep the stream open for a while in a child, then exit; let go of the caller's stdout so
            # that a shell's $(...) does not wait for the child
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            s.settimeout(1)
            end = time.time() + 30
            while time.time() < end:
                try:
                    if not s.recv(65536):
                        break
                except socket.timeout:
                    pass
            os._exit(0)


if __name__ == "__main__":
    main()
