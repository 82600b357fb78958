import Glibc
import HeadcountCore
import NIOCore

/// TCP keepalive and TCP_USER_TIMEOUT on accepted sockets: a peer that vanished without FIN or RST (cable
/// pulled, laptop lid, phone out of coverage) is noticed within `timeout`.
///
/// TCP_USER_TIMEOUT counts from the oldest unacknowledged write, and every stream writes at least once per
/// `heartbeat` (the loop's timer heartbeats every stream). After the peer vanishes the next write comes
/// within one heartbeat, so the user timeout is 90 % of `timeout - heartbeat` (the rest is margin for the
/// retransmission timer and the leave's own event) and the leave is seen within `timeout`. When the
/// heartbeat is more than half the timeout, the user timeout is 90 % of half the timeout and the bound is
/// heartbeat + timeout/2. Keepalive probes cover connections with nothing to send.
///
/// The options are set once on the listening socket: Linux copies them to every connection it accepts,
/// which saves five system calls per connection (measured with `strace -c` in a connect storm).
enum DeadPeerDetection {
    /// The TCP_USER_TIMEOUT for a dead-peer timeout and heartbeat interval, in milliseconds.
    static func userTimeoutMilliseconds(timeout: Duration, heartbeat: Duration) -> Int32 {
        let total = timeout.seconds
        let user = max(total - heartbeat.seconds, total / 2) * 0.9
        return Int32((max(0.5, user) * 1000).rounded())
    }

    static func configure(_ channel: any Channel, timeout: Duration, heartbeat: Duration) {
        guard timeout > .zero, let options = channel.syncOptions else { return }
        let seconds = max(1, Int32(timeout.seconds.rounded()))
        let tcp = NIOBSDSocket.OptionLevel(rawValue: CInt(IPPROTO_TCP))
        func set(_ name: CInt, _ value: Int32) {
            try? options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: NIOBSDSocket.Option(rawValue: name)), value: SocketOptionValue(value))
        }
        try? options.setOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
        let idle = max(1, seconds / 3)
        let count: Int32 = 4
        set(CInt(TCP_KEEPIDLE), idle)
        set(CInt(TCP_KEEPINTVL), max(1, (seconds - idle) / count))
        set(CInt(TCP_KEEPCNT), count)
        set(CInt(TCP_USER_TIMEOUT), userTimeoutMilliseconds(timeout: timeout, heartbeat: heartbeat))
    }
}
