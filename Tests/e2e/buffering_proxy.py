#!/usr/bin/env python3
"""A deliberately bad reverse proxy for tests: it holds the whole upstream response and sends it only
when the upstream closes (as a buffering CDN or proxy would). Usage: buffering_proxy.py LISTEN_PORT UPSTREAM_PORT SECONDS"""
import socket, sys, threading, time

listen_port, upstream_port, lifetime = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])


def serve(client):
    try:
        client.settimeout(10)
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = client.recv(65536)
            if not chunk:
                return
            request += chunk
        up = socket.create_connection(("127.0.0.1", upstream_port), timeout=15)
        # Force the upstream to close after the response.
        head, _, rest = request.partition(b"\r\n\r\n")
        head = b"\r\n".join(l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")) + b"\r\nConnection: close"
        up.sendall(head + b"\r\n\r\n" + rest)
        held = b""
        while True:
            chunk = up.recv(65536)
            if not chunk:
                break
            held += chunk
        client.sendall(held)
    except OSError:
        pass
    finally:
        client.close()


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(16)
server.settimeout(0.5)
end = time.time() + lifetime
while time.time() < end:
    try:
        c, _ = server.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
