import Foundation
import Glibc
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The listener of every connection, plaintext or TLS: a NIO `ServerBootstrap` per event loop whose
/// child-channel initializer sets up the connection's pipeline (`ConnectionPipeline`) on its loop. No
/// connection and no stream gets a task; an ordinary request gets one for as long as its response.
///
/// Why not Hummingbird's `Server`: it passes every accepted channel through an async sequence to a task
/// per connection, so a stream cost a task, a continuation and two thread hand-offs, and its memory
/// (~30 KB) for as long as it stayed open (docs/DECISIONS.md §7).
///
/// Graceful shutdown: the listeners close, every connection gets `ChannelShouldQuiesceEvent` (idle HTTP
/// connections close, HTTP/2 connections close once their last stream has), every loop closes its streams
/// spread over `--drain`, and whatever is still open `drainMargin` after the window is closed: `run()`
/// returns within `--drain` + `drainMargin` whatever the readers do.
struct HTTPListener: Service {
    let pipeline: ConnectionPipeline
    let host: String
    let port: Int
    /// Pending-connection queue (the kernel caps it at `net.core.somaxconn`).
    let backlog: Int
    /// Listening sockets: one per event loop (SO_REUSEPORT), each accepting onto its own loop.
    let sockets: Int
    let onServerRunning: @Sendable (any Channel) async -> Void
    let logger: Logger

    /// How long after the drain window the last connections are closed by force.
    static let drainMargin: Duration = .seconds(1)

    var hub: StreamHub { pipeline.services.hub }

    func run() async throws {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        let connections = loops.map { ConnectionTable(eventLoop: $0) }
        // A port held by another process is an error, not a silent share: SO_REUSEPORT would let a second
        // `headcount serve` on the same port take half the connections. Bind once without it first (this
        // also resolves port 0), then the listeners on that port.
        let probe: any Channel
        do {
            probe = try await bootstrap(on: loops[0], reusePort: false, connections: connections[0]).bind(host: host, port: port).get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ListenError(description: "cannot listen on \(host):\(port): the address is in use (is another server running on this port?)")
        } catch {
            throw ListenError(description: "cannot listen on \(host):\(port): \(error)")
        }
        let boundPort = probe.localAddress?.port ?? port
        try await probe.close()
        var channels: [any Channel] = []
        do {
            for i in 0..<max(1, min(sockets, loops.count)) {
                channels.append(try await bootstrap(on: loops[i], reusePort: true, connections: connections[i]).bind(host: host, port: boundPort).get())
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        logger.info("Server started and listening on \(host):\(boundPort)", metadata: ["headcount.listeners": "\(channels.count)"])
        let listeners = channels
        await withTaskCancellationHandler {
            await onServerRunning(listeners[0])
            try? await gracefulShutdown()
        } onCancel: {
            for channel in listeners { channel.close(promise: nil) }
        }
        await drain(listeners: listeners, connections: connections)
    }

    /// Stops accepting, quiesces every connection, drains the streams, and closes what is left at the end.
    private func drain(listeners: [any Channel], connections: [ConnectionTable]) async {
        for channel in listeners { try? await channel.close() }
        hub.beginDrain()
        for table in connections { table.eventLoop.execute { table.quiesceAll() } }
        hub.drainStreams()
        let deadline = ContinuousClock.now + hub.configuration.drain + Self.drainMargin
        while ContinuousClock.now < deadline, connections.contains(where: { $0.count > 0 }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        hub.closeAllStreams()
        for table in connections { table.eventLoop.execute { table.closeAll() } }
        let end = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < end, connections.contains(where: { $0.count > 0 }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// A bootstrap that accepts on `loop` and keeps each accepted connection on that same loop: no hop
    /// between threads while a connection is set up.
    private func bootstrap(on loop: any EventLoop, reusePort: Bool, connections: ConnectionTable) -> ServerBootstrap {
        let pipeline = self.pipeline
        let deadPeerTimeout = hub.configuration.deadPeerTimeout
        let heartbeat = hub.configuration.heartbeat
        return ServerBootstrap(group: loop, childGroup: loop)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: reusePort ? 1 : 0)
            // Accept up to 64 connections per wake-up of the listening socket (NIO's default is 4).
            .serverChannelOption(ChannelOptions.maxMessagesPerRead, value: 64)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    DeadPeerDetection.configure(channel, timeout: deadPeerTimeout, heartbeat: heartbeat)
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    connections.add(channel)
                    try pipeline.configure(channel)
                }
            }
    }
}

/// The open connections of one event loop, for shutdown. Touched on its loop, except `count`.
final class ConnectionTable: @unchecked Sendable {
    let eventLoop: any EventLoop
    private var channels: [ObjectIdentifier: any Channel] = [:]
    private let open = Atomic<Int>(0)

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    var count: Int { open.load(ordering: .relaxed) }

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        channels[id] = channel
        open.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in
            self.channels.removeValue(forKey: id)
            self.open.subtract(1, ordering: .relaxed)
        }
    }

    func quiesceAll() {
        for channel in channels.values { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    func closeAll() {
        for channel in channels.values { channel.close(promise: nil) }
    }
}

/// Why `headcount serve` could not open its port.
public struct ListenError: Error, CustomStringConvertible {
    public let description: String
}

/// The `Date` response header (RFC 9110 IMF-fixdate), formatted at most once a second.
final class DateHeader: Sendable {
    /// One per process: every response and every stream's head reads it.
    static let shared = DateHeader()

    private let cache = Mutex<(second: Int, text: String)>((-1, ""))

    var now: String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let second = ts.tv_sec
        return cache.withLock { cached in
            if cached.second == second { return cached.text }
            let text = DateHeader.format(epochSeconds: second)
            cached = (second, text)
            return text
        }
    }

    static func format(epochSeconds: Int) -> String {
        var t = time_t(epochSeconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
