import NIOCore
import NIOHTTP2
import NIOSSL
import Synchronization

/// The HTTP/2 connections of one client pool. Streams are handed out in order, `perConnection` to
/// a connection, with perConnection = min(`--streams-per-connection`, the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS), learnt from the first connection: more streams mean more
/// connections, never more streams on one than the server allows. Only one task opens streams.
final class H2Connections: Sendable {
    private struct State {
        var connections: [EventLoopFuture<H2Connection>] = []
        var current: EventLoopFuture<H2Connection>?
        /// Streams handed to `current`.
        var used = 0
        var perConnection: Int?
        var serverLimit: Int?
    }

    let group: any EventLoopGroup
    let address: SocketAddress
    let sources: [SocketAddress]?
    let sslContext: NIOSSLContext
    let timeout: TimeAmount
    /// `--streams-per-connection`.
    let wanted: Int
    private let state = Mutex(State())

    init(group: any EventLoopGroup, address: SocketAddress, sources: [SocketAddress]?, sslContext: NIOSSLContext, timeout: TimeAmount, streamsPerConnection: Int) {
        self.group = group
        self.address = address
        self.sources = sources
        self.sslContext = sslContext
        self.timeout = timeout
        self.wanted = max(1, streamsPerConnection)
    }

    /// Connections opened (or being opened) so far.
    var connectionCount: Int { state.withLock { $0.connections.count } }
    /// The server's stream limit as the first ready connection announced it (nil: not known yet;
    /// Int.max: none set).
    var serverLimit: Int? { state.withLock { $0.serverLimit } }
    /// Streams per connection actually used.
    var perConnection: Int? { state.withLock { $0.perConnection } }

    /// Streams per connection for a wanted count and the server's limit.
    static func streamsPerConnection(wanted: Int, serverLimit: Int) -> Int {
        max(1, min(wanted, serverLimit))
    }

    /// Connections needed for `streams` streams at `perConnection` each.
    static func connections(streams: Int, perConnection: Int) -> Int {
        streams <= 0 ? 0 : (streams + perConnection - 1) / max(1, perConnection)
    }

    /// Opens the next stream; `initializer` sets up its pipeline.
    func openStream(_ initializer: @escaping NIOChannelInitializer) async -> EventLoopFuture<any Channel> {
        if state.withLock({ $0.perConnection == nil }) {
            // The first connection tells how many streams a connection may carry.
            let first = newConnection()
            do {
                let connection = try await first.get()
                let limit = connection.maxConcurrentStreams
                state.withLock { s in
                    s.serverLimit = limit
                    s.perConnection = Self.streamsPerConnection(wanted: wanted, serverLimit: limit)
                    s.current = first
                    s.used = 0
                }
            } catch {
                // This stream fails; the next one tries a new connection.
                return first.map { $0.channel }
            }
        }
        let (reuse, index) = state.withLock { s -> (EventLoopFuture<H2Connection>?, Int) in
            guard let current = s.current, s.used < (s.perConnection ?? 1) else { return (nil, 0) }
            s.used += 1
            return (current, s.used - 1)
        }
        let connection: EventLoopFuture<H2Connection>
        let slot: Int
        if let reuse {
            connection = reuse
            slot = index
        } else {
            connection = newConnection()
            slot = 0
            state.withLock { s in
                s.current = connection
                s.used = 1
            }
        }
        return connection.flatMap { c in
            guard slot < c.maxConcurrentStreams else {
                return c.channel.eventLoop.makeFailedFuture(
                    BenchError("stream \(slot + 1) of a connection would exceed the server's SETTINGS_MAX_CONCURRENT_STREAMS (\(c.maxConcurrentStreams))")
                )
            }
            return c.openStream(initializer)
        }
    }

    private func newConnection() -> EventLoopFuture<H2Connection> {
        let index = connectionCount
        let source = sources.map { $0[index % $0.count] }
        let future = H2Connection.connect(group: group, to: address, source: source, sslContext: sslContext, timeout: timeout)
        state.withLock { $0.connections.append(future) }
        return future
    }

    /// Closes every connection (and so every stream on it).
    func closeAll() {
        for future in state.withLock({ $0.connections }) {
            future.whenSuccess { $0.channel.close(promise: nil) }
        }
    }
}
