import Foundation
import Glibc
import HummingbirdCore
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The plaintext HTTP/1 listener: a NIO `ServerBootstrap` whose child-channel initializer is
/// `HeadcountHTTP1Channel.setup`. An SSE stream becomes an `SSEStreamHandler` on its event loop and never
/// touches Swift concurrency; a connection whose first request is anything else is handed to Hummingbird's
/// request loop in a task of this service's task group, as Hummingbird's own `Server` does for every
/// connection.
///
/// Why not Hummingbird's `Server`: it passes every accepted channel through an async sequence to a task
/// (`handle(value:)`), so each SSE connection cost a task, a continuation and two thread hand-offs before
/// the fast path could take it over — about a quarter of the server's CPU in a connect storm (perf profile,
/// docs/BENCHMARKS.md). Graceful shutdown is the same as Hummingbird's: the listener closes, every
/// connection gets `ChannelShouldQuiesceEvent` (streams close spread over `--drain`), and `run()` returns
/// once the HTTP connections' tasks have finished.
struct HTTPListener: Service {
    let childChannel: HeadcountHTTP1Channel
    let host: String
    let port: Int
    /// Pending-connection queue (the kernel caps it at `net.core.somaxconn`).
    let backlog: Int
    /// Listening sockets: one per event loop (SO_REUSEPORT), each accepting onto its own loop.
    let sockets: Int
    let onServerRunning: @Sendable (any Channel) async -> Void
    let logger: Logger

    func run() async throws {
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        let (httpConnections, continuation) = AsyncStream.makeStream(of: HeadcountChildValue.self)
        // A port held by another process is an error, not a silent share: SO_REUSEPORT would let a second
        // `headcount serve` on the same port take half the connections. Bind once without it first (this
        // also resolves port 0), then the listeners on that port.
        let probe: any Channel
        do {
            probe = try await bootstrap(on: loops[0], reusePort: false, continuation: continuation).bind(host: host, port: port).get()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ListenError(description: "cannot listen on \(host):\(port): the address is in use (is another server running on this port?)")
        } catch {
            throw ListenError(description: "cannot listen on \(host):\(port): \(error)")
        }
        let boundPort = probe.localAddress?.port ?? port
        try await probe.close()
        var channels: [any Channel] = []
        var quiescers: [ServerQuiescingHelper] = []
        do {
            for i in 0..<max(1, min(sockets, loops.count)) {
                let quiesce = ServerQuiescingHelper(group: loops[i])
                let channel = try await bootstrap(on: loops[i], reusePort: true, quiesce: quiesce, continuation: continuation)
                    .bind(host: host, port: boundPort).get()
                channels.append(channel)
                quiescers.append(quiesce)
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        logger.info("Server started and listening on \(host):\(boundPort)", metadata: ["headcount.listeners": "\(channels.count)"])
        let childChannel = self.childChannel
        let logger = self.logger
        let listeners = channels
        let quiescing = quiescers
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await onServerRunning(listeners[0])
                await withDiscardingTaskGroup { tasks in
                    tasks.addTask {
                        // Every listener closed (shutdown, or an error): no new HTTP connections.
                        for channel in listeners { try? await channel.closeFuture.get() }
                        continuation.finish()
                    }
                    for await value in httpConnections {
                        tasks.addTask { await childChannel.handle(value: value, logger: logger) }
                    }
                }
            } onGracefulShutdown: {
                // Closes the listeners and sends ChannelShouldQuiesceEvent to every open connection. Streams
                // then close over the drain window; nothing here waits for them (PresenceService does).
                for quiesce in quiescing { quiesce.initiateShutdown(promise: nil) }
            }
        } onCancel: {
            for channel in listeners { channel.close(promise: nil) }
        }
    }

    /// A bootstrap that accepts on `loop` and keeps each accepted connection on that same loop: no hop
    /// between threads while a connection is set up.
    private func bootstrap(
        on loop: any EventLoop,
        reusePort: Bool,
        quiesce: ServerQuiescingHelper? = nil,
        continuation: AsyncStream<HeadcountChildValue>.Continuation
    ) -> ServerBootstrap {
        let childChannel = self.childChannel
        let logger = self.logger
        let deadPeerTimeout = childChannel.hub.configuration.deadPeerTimeout
        let heartbeat = childChannel.hub.configuration.heartbeat
        return ServerBootstrap(group: loop, childGroup: loop)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: reusePort ? 1 : 0)
            // Accept up to 64 connections per wake-up of the listening socket (NIO's default is 4).
            .serverChannelOption(ChannelOptions.maxMessagesPerRead, value: 64)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    DeadPeerDetection.configure(channel, timeout: deadPeerTimeout, heartbeat: heartbeat)
                    if let quiesce {
                        try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                    }
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                childChannel.setup(channel: channel, logger: logger).map { value in
                    // Decided by the first request: only plain HTTP goes on to a task.
                    value.mode.whenSuccess { mode in
                        guard mode == .http else { return }
                        if case .terminated = continuation.yield(value) { channel.close(promise: nil) }
                    }
                }
            }
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
