import HTTPTypes
import HeadcountCore
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// Serves the requests of one HTTP/1.x connection, or the one request of an HTTP/2 stream (each stream is
/// its own child channel), on the channel's event loop. An SSE request, whether it is the first on its
/// connection or follows any number of ordinary requests, turns the channel into an `SSEStreamHandler`:
/// the HTTP handlers leave the pipeline and the stream holds no task. Any other request is answered by the
/// Hummingbird router in a task that lives only as long as that response (`RequestResponder`).
///
/// Pipelined requests are answered in order; a request pipelined behind an SSE request ends the
/// connection (the stream is closed cleanly and counted out), since nothing could ever answer it.
final class HTTPConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    enum State {
        /// Waiting for a request head (keep-alive: armed with the idle timer).
        case idle
        /// An ordinary request, collecting its body.
        case receiving(HTTPRequestHead, ByteBuffer?)
        /// An SSE request whose end has not arrived yet (its stream slot is held in `clientIP`).
        case streamPending(SSEPlan, HTTPRequestHead)
        /// An ordinary response is being written; later requests wait in `queued`.
        case responding
        case closed
    }

    let services: ConnectionServices
    let transport: StreamTransport
    /// The handlers that speak HTTP on this channel, removed when it becomes a stream.
    let protocolHandlers: [any RemovableChannelHandler]
    let secure: Bool
    /// The connection's deadline for its first complete request head (shared with the TLS handshake).
    let deadline: FirstRequestDeadline?
    /// A TLS connection's fate (nil on plaintext, where the stream sees the socket's errors itself).
    let fate: ConnectionFate?
    var state = State.idle
    /// Parts that arrived while a response was in flight (pipelining); empty, and unallocated, otherwise.
    var queued: [HTTPServerRequestPart] = []
    /// The keep-alive idle timer while idle, the request's completion deadline while one is read.
    var idleTimer: Scheduled<Void>?
    var keepAlive = true
    var quiescing = false
    /// Client address whose stream slot a pending stream holds (released if it never starts).
    var clientIP: String?
    var context: ChannelHandlerContext?

    /// Parts that may wait behind a response in flight before the connection is closed as abusive.
    static let maxQueuedParts = 64
    /// Largest request body read (no route takes a body; larger ones get 413).
    static let maxBodyBytes = 64 * 1024

    init(
        services: ConnectionServices,
        transport: StreamTransport,
        protocolHandlers: [any RemovableChannelHandler],
        secure: Bool,
        deadline: FirstRequestDeadline?,
        fate: ConnectionFate? = nil
    ) {
        self.fate = fate
        self.services = services
        self.transport = transport
        self.protocolHandlers = protocolHandlers
        self.secure = secure
        self.deadline = deadline
    }

    var hub: StreamHub { services.hub }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        releaseSlot()
        idleTimer?.cancel()
        idleTimer = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        releaseSlot()
        idleTimer?.cancel()
        deadline?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .responding:
            enqueue(part, context: context)
        case .closed:
            break
        default:
            if queued.isEmpty { process(part, context: context) } else { enqueue(part, context: context) }
        }
    }

    /// Whether a request part can be processed now (no response in flight, not closed).
    private var acceptsParts: Bool {
        switch state {
        case .responding, .closed: false
        default: true
        }
    }

    private func enqueue(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        guard queued.count < Self.maxQueuedParts else {
            close(context: context)
            return
        }
        queued.append(part)
    }

    private func process(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch (state, part) {
        case (.idle, .head(let head)):
            idleTimer?.cancel()
            idleTimer = nil
            deadline?.cancel()
            keepAlive = transport == .http2 || head.isKeepAlive
            if let plan = acceptableStream(head, context: context) {
                state = .streamPending(plan, head)
            } else {
                state = .receiving(head, nil)
            }
            // A request must be complete within the first-request timeout of its head: a body that
            // trickles in byte by byte does not hold the connection for ever.
            let channel = context.channel
            idleTimer = context.eventLoop.scheduleTask(in: services.firstRequestTimeout) { channel.close(promise: nil) }
        case (.receiving(let head, var body), .body(var chunk)):
            if body == nil {
                body = chunk
            } else {
                body!.writeBuffer(&chunk)
            }
            if body!.readableBytes > Self.maxBodyBytes {
                refuse(context: context, status: .payloadTooLarge, message: "request body is larger than \(Self.maxBodyBytes) bytes", reason: .badRequest)
                return
            }
            state = .receiving(head, body)
        case (.receiving(let head, let body), .end):
            idleTimer?.cancel()
            idleTimer = nil
            respond(head: head, body: body, context: context)
        case (.streamPending, .body):
            break  // a body on a stream request is read and ignored
        case (.streamPending(let plan, let head), .end):
            idleTimer?.cancel()
            idleTimer = nil
            becomeStream(plan: plan, head: head, context: context)
        default:
            // A part out of order (the decoders never produce one): end the connection.
            close(context: context)
        }
    }

    // MARK: Ordinary requests

    private func respond(head: HTTPRequestHead, body: ByteBuffer?, context: ChannelHandlerContext) {
        state = .responding
        let closeAfter = !keepAlive || quiescing
        let request: Request
        do {
            request = Request(head: try HTTPRequest(head, secure: secure, splitCookie: false), body: RequestBody(buffer: body ?? ByteBuffer()))
        } catch {
            refuse(context: context, status: .badRequest, message: "malformed HTTP request", reason: .badRequest)
            return
        }
        let channel = context.channel
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let responder = services.responder
        let version = head.version
        let transport = self.transport
        Task {
            let response = await responder.respond(to: request, channel: channel)
            let written = await ResponseWriting.write(response, to: channel, version: version, transport: transport, close: closeAfter)
            channel.eventLoop.execute { handler.value.responseFinished(written: written) }
        }
    }

    /// Called on the loop once a response is written (or failed to be).
    func responseFinished(written: Bool) {
        guard let context, case .responding = state else { return }
        if transport == .http2 {
            // The stream ends with its response.
            state = .closed
            return
        }
        guard written, keepAlive, !quiescing else {
            close(context: context)
            return
        }
        state = .idle
        // Parts that arrived meanwhile (a request pipelined behind this one), until the next response.
        while acceptsParts, !queued.isEmpty {
            let part = queued.removeFirst()
            process(part, context: context)
        }
        if case .idle = state { armIdleTimer(context: context) }
    }

    private func armIdleTimer(context: ChannelHandlerContext) {
        guard transport == .http1, let timeout = services.idleTimeout else { return }
        let channel = context.channel
        idleTimer?.cancel()
        idleTimer = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    /// Answers an error itself (the request never reaches the router) and closes the connection.
    private func refuse(context: ChannelHandlerContext, status: HTTPResponseStatus, message: String, reason: RejectReason) {
        hub.metrics.rejected(reason)
        hub.logLimiter.log(hub.logger, level: .info, "request rejected", reason: reason.rawValue, metadata: ["headcount.status": "\(status.code)", "headcount.reason": "\(message)"])
        let body = ByteBuffer(string: JSON.object(["error": .string(message)]).serialized)
        var headers = HTTPHeaders([("Content-Type", "application/json; charset=utf-8"), ("Content-Length", "\(body.readableBytes)")])
        if transport == .http1 { headers.add(name: "Connection", value: "close") }
        state = .closed
        queued.removeAll()
        deadline?.cancel()
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    private func close(context: ChannelHandlerContext) {
        state = .closed
        queued.removeAll()
        context.close(promise: nil)
    }

    /// An oversized head gets 431, any other malformed request 400, as JSON; then the connection closes.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if case .closed = state { return }
        parserError == .headerOverflow
            ? refuse(context: context, status: .requestHeaderFieldsTooLarge, message: "request head is larger than \(AccessPolicy.maxHeaderBytes) bytes", reason: .headerTooLarge)
            : refuse(context: context, status: .badRequest, message: "malformed HTTP request", reason: .badRequest)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            // The client half-closed: answer what is in flight, then close.
            keepAlive = false
            switch state {
            case .responding: break
            default: close(context: context)
            }
            return
        }
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if case .idle = state, queued.isEmpty {
                close(context: context)  // nothing in flight: nothing to finish
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Streams

    /// The plan of an SSE request that can be served now; nil sends the request to the router, which
    /// answers bad input and refusals (limits, shutdown) with the same JSON errors as every other route.
    private func acceptableStream(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> SSEPlan? {
        guard head.method == .GET, head.uri.utf8.count <= AccessPolicy.maxURLBytes, !quiescing else { return nil }
        let cookie = head.headers["cookie"].isEmpty ? nil : head.headers["cookie"].joined(separator: "; ")
        guard let plan = try? SSERoutes.plan(isGet: true, uri: URI(head.uri), cookieHeader: cookie, policy: hub.policy) else { return nil }
        let registry = hub.registry
        switch plan.target {
        case .room(let name, _):
            if !registry.canJoin(room: name) { return nil }
        case .site:
            if registry.isShuttingDown { return nil }
        }
        if hub.isDraining { return nil }
        let forwarded = head.headers["x-forwarded-for"].isEmpty ? nil : head.headers["x-forwarded-for"].joined(separator: ", ")
        let ip = hub.policy.clientAddress(peer: context.channel.remoteAddress, forwardedFor: forwarded)
        do {
            try hub.policy.acquire(ip: ip)
        } catch {
            return nil  // the router answers the 429 or 503
        }
        clientIP = ip
        return plan
    }

    private func releaseSlot() {
        if let ip = clientIP {
            clientIP = nil
            hub.policy.release(ip: ip)
        }
    }

    /// Replaces the HTTP handlers with an `SSEStreamHandler`. On HTTP/1 the decoder goes last, so that bytes
    /// it still holds (a request pipelined behind this one) reach the stream, which then ends the connection.
    private func becomeStream(plan: SSEPlan, head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard queued.isEmpty else {
            // A request pipelined behind the stream request: nothing could ever answer it.
            releaseSlot()
            close(context: context)
            return
        }
        let framing: StreamFraming = transport == .http2 ? .http2 : (head.version.minor >= 1 ? .chunked : .identity)
        let stream = SSEStreamHandler(
            plan: plan,
            framing: framing,
            origin: head.headers.first(name: "origin"),
            hub: hub,
            clientIP: clientIP,
            fate: fate
        )
        clientIP = nil
        state = .closed
        let pipeline = context.pipeline.syncOperations
        do {
            // Outbound handlers first: the stream writes its own bytes from the moment it is added.
            for handler in protocolHandlers where !(handler is ByteToMessageHandler<HTTPRequestDecoder>) {
                pipeline.removeHandler(handler, promise: nil)
            }
            try pipeline.addHandler(stream, position: .after(self))
            pipeline.removeHandler(context: context, promise: nil)
            for handler in protocolHandlers where handler is ByteToMessageHandler<HTTPRequestDecoder> {
                pipeline.removeHandler(handler, promise: nil)
            }
        } catch {
            stream.releaseSlot()
            context.close(promise: nil)
        }
    }
}

/// What carries a stream: HTTP/1.x (plain or TLS) or an HTTP/2 stream. The `transport` label of
/// `headcount_streams_open`.
enum StreamTransport: String, Sendable, CaseIterable {
    case http1
    case http2
}

/// The deadline a connection has to complete its first request head (the TLS handshake included):
/// armed when the connection is accepted, cancelled by the first complete head. Touched on its loop.
final class FirstRequestDeadline {
    private var task: Scheduled<Void>?

    init(channel: any Channel, timeout: TimeAmount) {
        task = channel.eventLoop.scheduleTask(in: timeout) { [channel] in channel.close(promise: nil) }
    }

    func cancel() {
        task?.cancel()
        task = nil
    }
}
