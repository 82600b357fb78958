import Foundation
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
    let onServerRunning: @Sendable (any Channel) async -> Void
    let logger: Logger

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let (httpConnections, continuation) = AsyncStream.makeStream(of: HeadcountChildValue.self)
        let quiesce = ServerQuiescingHelper(group: group)
        let childChannel = self.childChannel
        let logger = self.logger
        let serverChannel = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(clamping: backlog))
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // Accept up to 64 connections per wake-up of the listening socket (NIO's default is 4).
            .serverChannelOption(ChannelOptions.maxMessagesPerRead, value: 64)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
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
            .bind(host: host, port: port)
            .get()
        logger.info("Server started and listening on \(host):\(serverChannel.localAddress?.port ?? port)")
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await onServerRunning(serverChannel)
                await withDiscardingTaskGroup { tasks in
                    tasks.addTask {
                        // The listener closed (shutdown, or an error): no new HTTP connections.
                        try? await serverChannel.closeFuture.get()
                        continuation.finish()
                    }
                    for await value in httpConnections {
                        tasks.addTask { await childChannel.handle(value: value, logger: logger) }
                    }
                }
            } onGracefulShutdown: {
                // Closes the listener and sends ChannelShouldQuiesceEvent to every open connection. Streams
                // then close over the drain window; nothing here waits for them (PresenceService does).
                quiesce.initiateShutdown(promise: nil)
            }
        } onCancel: {
            serverChannel.close(promise: nil)
        }
    }
}

/// The `Date` response header (RFC 9110 IMF-fixdate), formatted at most once a second.
final class DateHeader: Sendable {
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
