import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS

/// Sets up an accepted connection's pipeline, on its event loop, with no task: plaintext HTTP/1, or TLS
/// with ALPN choosing HTTP/2 or HTTP/1.1. Every request of every connection ends in an
/// `HTTPConnectionHandler`, so an SSE stream is served the same way whatever carries it.
struct ConnectionPipeline: Sendable {
    let services: ConnectionServices
    let tls: NIOSSLContext?
    /// Concurrent HTTP/2 streams a client may open on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    static let maxConcurrentHTTP2Streams = 256

    static let decoderLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = AccessPolicy.maxHeaderBytes
        limits.maxHeaderFieldSize = AccessPolicy.maxHeaderBytes
        return limits
    }()

    func configure(_ channel: any Channel) throws {
        let deadline = FirstRequestDeadline(channel: channel, timeout: services.firstRequestTimeout)
        guard let tls else {
            try Self.configureHTTP1(channel, services: services, secure: false, deadline: deadline)
            return
        }
        let services = self.services
        let sync = channel.pipeline.syncOperations
        // TLS turns the socket's own errors into its own: note a vanished peer before it does.
        let fate = ConnectionFate()
        try sync.addHandler(DeadPeerRecorder(fate: fate))
        try sync.addHandler(NIOSSLServerHandler(context: tls))
        try sync.addHandler(
            ApplicationProtocolNegotiationHandler { result, channel in
                channel.eventLoop.makeCompletedFuture {
                    switch result {
                    case .negotiated("h2"):
                        try Self.configureHTTP2(channel, services: services, deadline: deadline, fate: fate)
                    case .negotiated("http/1.1"), .fallback:
                        try Self.configureHTTP1(channel, services: services, secure: true, deadline: deadline, fate: fate)
                    case .negotiated:
                        channel.close(promise: nil)
                    }
                }
            }
        )
    }

    static func configureHTTP1(_ channel: any Channel, services: ConnectionServices, secure: Bool, deadline: FirstRequestDeadline, fate: ConnectionFate? = nil) throws {
        let sync = channel.pipeline.syncOperations
        let encoder = HTTPResponseEncoder(configuration: .init())
        let decoder = ByteToMessageHandler(
            HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .drop, limitConfiguration: decoderLimits)
        )
        let handler = HTTPConnectionHandler(services: services, transport: .http1, protocolHandlers: [encoder, decoder], secure: secure, deadline: deadline, fate: fate)
        try sync.addHandler(encoder)
        try sync.addHandler(decoder)
        try sync.addHandler(handler)
    }

    static func configureHTTP2(_ channel: any Channel, services: ConnectionServices, deadline: FirstRequestDeadline, fate: ConnectionFate) throws {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxConcurrentHTTP2Streams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: AccessPolicy.maxHeaderBytes),
        ]
        let streams = NIOHTTP2Handler.StreamConfiguration()
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(HTTP2FlushBatcher(streams: services.hub.streams(on: channel.eventLoop)))
        let connectionHandler = HTTP2ConnectionHandler(idleTimeout: services.idleTimeout, deadline: deadline)
        let parent = NIOLoopBound(connectionHandler, eventLoop: channel.eventLoop)
        _ = try sync.configureHTTP2Pipeline(mode: .server, connectionConfiguration: connection, streamConfiguration: streams) { stream in
            stream.eventLoop.makeCompletedFuture {
                // NIO's handler fires no stream events down the parent pipeline with an inline multiplexer:
                // the parent hears of its streams from here.
                parent.value.streamOpened()
                stream.closeFuture.whenComplete { _ in parent.value.streamClosed() }
                let codec = HTTP2StreamCodec()
                let handler = HTTPConnectionHandler(services: services, transport: .http2, protocolHandlers: [codec], secure: true, deadline: nil, fate: fate)
                try stream.pipeline.syncOperations.addHandler(codec)
                try stream.pipeline.syncOperations.addHandler(handler)
            }
        }
        try sync.addHandler(connectionHandler)
    }
}

/// The parent channel of an HTTP/2 connection: the first stream ends the first-request deadline; with no
/// stream open the connection is closed after the idle timeout, or at once while shutting down.
final class HTTP2ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame

    let idleTimeout: TimeAmount?
    let deadline: FirstRequestDeadline
    var openStreams = 0
    var quiescing = false
    var idleTimer: Scheduled<Void>?
    var context: ChannelHandlerContext?

    init(idleTimeout: TimeAmount?, deadline: FirstRequestDeadline) {
        self.idleTimeout = idleTimeout
        self.deadline = deadline
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        deadline.cancel()
        context.fireChannelInactive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// A stream of this connection opened (its HEADERS arrived): the first request has come.
    func streamOpened() {
        openStreams += 1
        deadline.cancel()
        idleTimer?.cancel()
        idleTimer = nil
    }

    func streamClosed() {
        openStreams = max(0, openStreams - 1)
        if openStreams == 0, let context { becameIdle(context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if openStreams == 0 { context.close(promise: nil) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func becameIdle(context: ChannelHandlerContext) {
        if quiescing {
            context.close(promise: nil)
            return
        }
        guard let idleTimeout else { return }
        let channel = context.channel
        idleTimer?.cancel()
        idleTimer = context.eventLoop.scheduleTask(in: idleTimeout) { channel.close(promise: nil) }
    }
}

/// NIO's HTTP/2-to-HTTP/1 server codec, removable: an HTTP/2 stream that becomes an SSE stream drops it
/// (the stream writes its own frames). The codec keeps no bytes of its own between calls, so delegating
/// its two methods with this handler's context is all it takes.
final class HTTP2StreamCodec: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let codec = HTTP2FramePayloadToHTTP1ServerCodec()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        codec.channelRead(context: context, data: data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        codec.write(context: context, data: data, promise: promise)
    }
}

/// What ended a TLS connection, as far as its streams need to know: the socket's own error is seen only
/// by the first handler (TLS reports its own), and HTTP/2 streams see their connection close, not its
/// error. Touched on the connection's loop.
final class ConnectionFate: @unchecked Sendable {
    /// The peer vanished (TCP_USER_TIMEOUT or keepalive gave up).
    var deadPeer = false
}

/// First in a TLS connection's pipeline: notes a vanished peer in the connection's fate.
final class DeadPeerRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let fate: ConnectionFate

    init(fate: ConnectionFate) {
        self.fate = fate
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if LeaveReason(error) == .deadPeer { fate.deadPeer = true }
        context.fireErrorCaught(error)
    }
}
