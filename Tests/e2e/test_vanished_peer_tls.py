"""Transport test 9, vanished-peer-tls: test_vanished_peer.py's network-namespace scenario over HTTPS.

The server's TLS listener is on the host end of the veth pair; inside the namespace an HTTP/1.1-over-TLS
client (sse_client.py --tls) and an HTTP/2 client (h2_sse_client.py) each hold a stream in their own room;
the namespace's link goes down (no FIN, no RST). Both must be counted out as dead peers within
--dead-peer-timeout, while a control stream from the host side stays. scripts/e2e-transports creates the
namespace (HC_NS, HC_VETH_NS, HC_HOST_ADDR, HC_NS_ADDR, or HC_NETNS_SKIP) and the certificate.
"""

import hc
import test_vanished_peer

if __name__ == "__main__":
    hc.run("vanished-peer-tls", lambda r: test_vanished_peer.body(r, tls=True))
