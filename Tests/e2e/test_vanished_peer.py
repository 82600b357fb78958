"""Test 1, vanished peer: a client whose network disappears without FIN or RST is counted out within
`--dead-peer-timeout`.

The driver (scripts/e2e-reliability) creates a network namespace with a veth pair and passes it in
HC_NS, HC_VETH_NS, HC_HOST_ADDR, HC_NS_ADDR (or HC_NETNS_SKIP with the reason it could not). The
server listens on the host end of the pair; an SSE client runs inside the namespace; then the
namespace's end of the link goes down, so nothing the server sends is ever acknowledged and nothing
(no FIN, no RST) comes back.

`body(r, tls=True)` (test_vanished_peer_tls.py, run by scripts/e2e-transports) is the same scenario over
HTTPS: the server's TLS listener on the veth address, one HTTP/1.1-over-TLS client and one HTTP/2 client
(h2_sse_client.py) in the namespace, each in its own room; both must be counted out as dead peers.
"""

import os
import subprocess
import sys
import threading
import time

import hc

DEAD_PEER_TIMEOUT = 6
HEARTBEAT = 2
# The count must be back to 0 within --dead-peer-timeout of the cut (plus 0.5 s for the poll and the event).
LIMIT = DEAD_PEER_TIMEOUT + 0.5


def body(r, tls=False):
    name = "vanished-peer-tls" if tls else "vanished-peer"
    skip = os.environ.get("HC_NETNS_SKIP")
    if skip:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            r.check(False, f"network namespaces unavailable under CI: {skip}")
            return
        print(f"SKIP {name}: {skip}", flush=True)
        sys.exit(0)
    ns, veth_ns = os.environ["HC_NS"], os.environ["HC_VETH_NS"]
    host_addr = os.environ["HC_HOST_ADDR"]
    here = os.path.dirname(__file__)

    args = ["--dead-peer-timeout", str(DEAD_PEER_TIMEOUT), "--heartbeat", str(HEARTBEAT), "--leave-grace", "0", "--update-interval", "0.05"]
    if tls:
        import transports
        server = transports.tls_server(name, args, host=host_addr)
    else:
        server = hc.Server(name, args, host=host_addr)
    tls_arg = ["--tls"] if tls else []
    # A healthy stream from the host side, in another room: it must survive the whole test.
    control = subprocess.Popen([sys.executable, os.path.join(here, "sse_client.py"), *tls_arg, host_addr,
                                str(server.port), "/rooms/vanish-control/events?visitor=stays", "60"],
                               stdout=subprocess.PIPE, text=True)
    # The namespaced clients, one room each: HTTP/1.1 (over TLS for the TLS variant), and HTTP/2.
    rooms = {"client": "vanish"}
    clients = {"client": subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.join(here, "sse_client.py"), *tls_arg,
                                           host_addr, str(server.port), "/rooms/vanish/events?visitor=gone", "60"],
                                          stdout=subprocess.PIPE, text=True)}
    if tls:
        rooms["h2 client"] = "vanish-h2"
        clients["h2 client"] = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.join(here, "h2_sse_client.py"),
                                                 host_addr, str(server.port), "/rooms/vanish-h2/events?visitor=gone2", "60"],
                                                stdout=subprocess.PIPE, text=True)
    lines = {"control": [], **{k: [] for k in clients}}

    def pump(name, proc):
        for line in proc.stdout:
            lines[name].append((time.monotonic(), line.strip()))

    for cname, proc in (("control", control), *clients.items()):
        threading.Thread(target=pump, args=(cname, proc), daemon=True).start()
    try:
        counted = hc.wait_until(lambda: all(server.room(room) == {"room": room, "online": 1, "connections": 1} for room in rooms.values())
                                and server.room("vanish-control")["connections"] == 1, 15)
        if not r.check(counted, f"the namespaced clients were not counted: {[server.room(room) for room in rooms.values()]}, "
                                f"they said {lines}"):
            return
        for cname, room in rooms.items():
            r.check(any(l.startswith(f'EVENT {{"room":"{room}","online":1') for _, l in lines[cname]),
                    f"the {cname} did not receive its count: {lines[cname]}")
        before = hc.leaves_by_reason(server.metrics())

        # Cut the link: the namespace's end goes down, the host's end loses its carrier. Packets the server
        # sends are dropped silently; the client can send nothing.
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", veth_ns, "down"], check=True, timeout=10)
        cut = time.monotonic()
        gone = hc.wait_until(lambda: all(server.room(room) == {"room": room, "online": 0, "connections": 0} for room in rooms.values()),
                             LIMIT + 8, step=0.1)
        elapsed = time.monotonic() - cut
        after = hc.leaves_by_reason(server.metrics())
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        r.check(gone, f"the vanished clients were still counted {elapsed:.1f} s after the cut: {[server.room(room) for room in rooms.values()]}")
        r.check(elapsed <= LIMIT, f"the vanished clients left after {elapsed:.1f} s (limit {LIMIT:.1f} s)")
        # The client processes are still running: whatever happened, it was not a FIN or RST from them.
        r.check(all(p.poll() is None for p in clients.values()), "a namespaced client process ended: the test did not cut the link silently")
        r.check(elapsed >= 2.0, f"the leave came {elapsed:.1f} s after the cut: too early for a vanished peer (a FIN/RST got through?)")
        r.check(delta.get("dead_peer", 0) == len(clients) and sum(delta.values()) == len(clients),
                f"headcount_leaves_total moved by {delta}, expected exactly {len(clients)} dead_peer leave(s)")
        # The healthy stream was not touched.
        ctl = server.room("vanish-control")
        r.check(ctl["connections"] == 1 and control.poll() is None, f"the control stream was dropped too: {ctl}")
        st = server.stats()
        r.check(st["connections"] == 1 and st["online"] == 1, f"/api/stats after the cut: {st}")
        r.note(f"{' and '.join(rooms)}: count 1 -> 0 in {elapsed:.1f} s after a silent link cut (--dead-peer-timeout {DEAD_PEER_TIMEOUT}, "
               f"limit {LIMIT:.1f} s){' over TLS' if tls else ''}; leaves {delta}; control stream kept")
    finally:
        for p in (control, *clients.values()):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        server.stop()


if __name__ == "__main__":
    hc.run("vanished-peer", body)
