"""A minimal SSE client for tests that must run it elsewhere (e.g. inside a network namespace).

    python3 sse_client.py [--tls] HOST PORT PATH [SECONDS]

Prints `STATUS <code>`, then `RETRY <ms>` and `EVENT <json>` for every event as it arrives, and
`CLOSED <reason>` when the stream ends or SECONDS (default 120) pass. `--tls`: HTTP/1.1 over TLS (ALPN
http/1.1, the certificate not verified). Standard library only.
"""

import re
import socket
import ssl
import sys
import time

args = sys.argv[1:]
tls = args[:1] == ["--tls"]
if tls:
    args = args[1:]
host, port, path = args[0], int(args[1]), args[2]
limit = float(args[3]) if len(args) > 3 else 120.0
end = time.monotonic() + limit

s = socket.create_connection((host, port), timeout=10)
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    s = ctx.wrap_socket(s, server_hostname=host)
s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
buf = b""
head_done = False
reason = "timeout"
while time.monotonic() < end:
    s.settimeout(max(0.1, min(1.0, end - time.monotonic())))
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        continue
    except OSError as e:
        reason = f"error {e!r}"
        break
    if not chunk:
        reason = "eof"
        break
    buf += chunk
    if not head_done and b"\r\n\r\n" in buf:
        head, _, buf = buf.partition(b"\r\n\r\n")
        print("STATUS", head.split(b" ")[1].decode(), flush=True)
        head_done = True
    if head_done:
        # Events are framed whole (one chunk each), so complete lines can be taken from the raw bytes.
        while True:
            m = re.search(rb"(retry: (\d+)\n)|(data: (\{[^\n]*\})\n)", buf)
            if not m:
                break
            if m.group(2):
                print("RETRY", m.group(2).decode(), flush=True)
            else:
                print("EVENT", m.group(4).decode(), flush=True)
            buf = buf[m.end():]
print("CLOSED", reason, flush=True)
