"""A minimal HTTP/2 SSE client (TLS, ALPN h2, certificate not verified) for tests that must run it elsewhere
(e.g. inside a network namespace); the HTTP/2 counterpart of sse_client.py. Needs the PyPI package `h2`.

    python3 h2_sse_client.py HOST PORT PATH [SECONDS]

Prints `ALPN <protocol>`, `STATUS <code>`, then `EVENT <json>` for every event as it arrives, and
`CLOSED <reason>` when the stream or connection ends or SECONDS (default 120) pass.
"""

import json
import sys
import time

import transports

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
limit = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
end = time.monotonic() + limit
reason = "timeout"
try:
    c = transports.H2((host, port), verify=False)
    print("ALPN", c.alpn, flush=True)
    st = c.open(path)
    printed = 0
    status_shown = False
    while time.monotonic() < end:
        alive = c.pump(min(1.0, max(0.05, end - time.monotonic())))
        if st.status is not None and not status_shown:
            print("STATUS", st.status, flush=True)
            status_shown = True
        while printed < len(st.events):
            print("EVENT", json.dumps(st.events[printed], separators=(",", ":")), flush=True)
            printed += 1
        if st.ended:
            reason = "end_stream"
            break
        if st.reset:
            reason = f"rst_stream {st.reset_code}"
            break
        if not alive:
            reason = "eof"
            break
except Exception as e:  # noqa: BLE001 - reported on the last line
    reason = f"error {e!r}"
print("CLOSED", reason, flush=True)
