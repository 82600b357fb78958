import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// One TLS connection speaking HTTP/2 (ALPN `h2`), ready for streams: the handshake is done and
/// the server's first SETTINGS frame has arrived, so its stream limit is known.
struct H2Connection: Sendable {
    let channel: any Channel
    let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS (Int.max when it set none: unlimited).
    let maxConcurrentStreams: Int

    /// A TLS client context for loopback benchmarks: ALPN `h2` only, and no certificate check (the
    /// server's certificate is a self-signed one on 127.0.0.1).
    static func makeSSLContext() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        tls.applicationProtocols = ["h2"]
        return try NIOSSLContext(configuration: tls)
    }

    /// Connects (optionally from `source`) and completes once the connection is ready; fails if it
    /// is not within `timeout` (TCP connect, TLS handshake and the server's SETTINGS together).
    static func connect(
        group: any EventLoopGroup, to address: SocketAddress, source: SocketAddress?, sslContext: NIOSSLContext, timeout: TimeAmount
    ) -> EventLoopFuture<H2Connection> {
        let loop = group.next()
        let ready = loop.makePromise(of: H2Connection.self)
        var bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: nil))
                    let multiplexer = try sync.configureHTTP2Pipeline(
                        mode: .client,
                        connectionConfiguration: .init(),
                        streamConfiguration: .init(),
                        inboundStreamInitializer: { stream in stream.close() }  // no server push
                    )
                    try sync.addHandler(H2ReadinessHandler(ready: ready, channel: channel, multiplexer: multiplexer))
                }
            }
        if let source {
            bootstrap = bootstrap.channelOption(StreamConnector.bindAddressNoPort, value: 1).bind(to: source)
        }
        return bootstrap.connect(to: address).flatMapError { error in
            ready.fail(error)
            return loop.makeFailedFuture(error)
        }.flatMap { channel in
            let timer = loop.scheduleTask(in: timeout) {
                ready.fail(BenchError("no HTTP/2 SETTINGS within \(timeout.nanoseconds / 1_000_000) ms"))
            }
            return ready.futureResult.map { connection in
                timer.cancel()
                return connection
            }.flatMapErrorThrowing { error in
                timer.cancel()
                channel.close(promise: nil)
                throw error
            }
        }
    }

    /// Opens a stream whose pipeline `initializer` sets up (it writes nothing by itself).
    func openStream(_ initializer: @escaping NIOChannelInitializer) -> EventLoopFuture<any Channel> {
        multiplexer.createStreamChannel { stream in initializer(stream) }
    }

    /// The limit a SETTINGS frame sets on the streams the peer accepts at once, if it sets one.
    static func maxConcurrentStreams(in settings: HTTP2Settings) -> Int? {
        settings.last(where: { $0.parameter == .maxConcurrentStreams })?.value
    }
}

/// The last handler of an HTTP/2 connection's pipeline: fails the connection unless ALPN chose
/// `h2`, and completes `ready` with the server's stream limit when its first SETTINGS frame
/// arrives (the multiplexer forwards stream-0 frames here).
final class H2ReadinessHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let ready: EventLoopPromise<H2Connection>
    private let channel: any Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private var done = false

    init(ready: EventLoopPromise<H2Connection>, channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
        self.ready = ready
        self.channel = channel
        self.multiplexer = multiplexer
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let negotiated) = event as? TLSUserEvent, negotiated != "h2" {
            complete(.failure(BenchError("the server did not negotiate HTTP/2 (ALPN: \(negotiated ?? "none"))")))
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .settings(.settings(let settings)) = frame.payload {
            let limit = H2Connection.maxConcurrentStreams(in: settings) ?? Int.max
            complete(.success(H2Connection(channel: channel, multiplexer: multiplexer, maxConcurrentStreams: limit)))
        } else if case .goAway(_, let code, _) = frame.payload {
            complete(.failure(BenchError("the server sent GOAWAY (\(code)) before SETTINGS")))
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(.failure(error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.failure(BenchError("connection closed before the HTTP/2 SETTINGS")))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        complete(.failure(BenchError("connection closed before the HTTP/2 SETTINGS")))
    }

    private func complete(_ result: Result<H2Connection, any Error>) {
        guard !done else { return }
        done = true
        ready.completeWith(result)
    }
}
