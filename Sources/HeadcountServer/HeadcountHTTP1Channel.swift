import Glibc
import HTTPTypes
import HeadcountCore
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// How a connection is served, decided by its first request.
enum ConnectionMode: Sendable {
    /// An SSE stream served by `SSEStreamHandler` alone: no task, no async channel.
    case stream
    /// Everything else: Hummingbird's async HTTP/1 handling, as `HTTP1Channel` does it.
    case http
}

struct HeadcountChildValue: ServerChildChannelValue {
    let channel: any Channel
    let mode: EventLoopFuture<ConnectionMode>
    let entry: NIOLoopBound<HTTPEntryHandler>
}

/// The HTTP/1 child channel of `HTTPListener`, with an SSE fast path. `setup` runs in the listener's
/// child-channel initializer: a connection whose first request is an SSE stream becomes a plain NIO handler
/// and never gets a task; `handle` runs, in a task, only for any other connection, which it hands to
/// Hummingbird's own request loop (where a later SSE request on a keep-alive connection is served by the
/// route shape). See docs/DECISIONS.md §7.
struct HeadcountHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = HeadcountChildValue

    let responder: HTTPChannelHandler.Responder
    let hub: StreamHub
    let decoderLimits: NIOHTTPDecoderLimitConfiguration
    /// A connection that sends no request head within this time is closed.
    let firstRequestTimeout: TimeAmount
    /// Idle time after which a keep-alive HTTP connection is closed.
    let idleTimeout: Duration?
    /// Serve SSE streams from NIO handlers (false: every request goes to Hummingbird, the route shape).
    let fastPath: Bool

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            let encoder = HTTPResponseEncoder(configuration: .init())
            let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: decoderLimits))
            let codec = HTTP1ToHTTPServerCodec(secure: false)
            let promise = channel.eventLoop.makePromise(of: ConnectionMode.self)
            let entry = HTTPEntryHandler(hub: hub, mode: promise, httpHandlers: [encoder, decoder, codec], firstRequestTimeout: firstRequestTimeout, fastPath: fastPath)
            try sync.addHandler(encoder)
            try sync.addHandler(decoder)
            try sync.addHandler(entry)
            try sync.addHandler(codec)
            return HeadcountChildValue(channel: channel, mode: promise.futureResult, entry: NIOLoopBound(entry, eventLoop: channel.eventLoop))
        }
    }

    func handle(value: Value, logger: Logger) async {
        guard let mode = try? await value.mode.get(), mode == .http else { return }
        let channel = value.channel
        let idle = idleTimeout
        let asyncChannel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
        do {
            asyncChannel = try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: idle, logger: logger))
                let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                    wrappingChannelSynchronously: channel,
                    configuration: .init(isOutboundHalfClosureEnabled: true)
                )
                value.entry.value.release()
                return asyncChannel
            }.get()
        } catch {
            channel.close(promise: nil)
            return
        }
        await handleHTTP(asyncChannel: asyncChannel, logger: logger)
    }
}

/// Looks at a connection's first request: an SSE stream becomes an `SSEStreamHandler` (the HTTP handlers
/// leave the pipeline); anything else is buffered until Hummingbird's request loop is in place, then passed on.
final class HTTPEntryHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    enum State {
        case waitingForHead
        case streamWaitingForEnd(SSEPlan, HTTPRequestHead)
        case buffering([NIOAny])
        case passing
        case done
    }

    let hub: StreamHub
    let mode: EventLoopPromise<ConnectionMode>
    let httpHandlers: [any RemovableChannelHandler]
    let firstRequestTimeout: TimeAmount
    let fastPath: Bool
    var state = State.waitingForHead
    /// Client address of a stream accepted by the fast path (its slot is released when the stream ends).
    var clientIP: String?
    var context: ChannelHandlerContext?
    var timeout: Scheduled<Void>?

    init(hub: StreamHub, mode: EventLoopPromise<ConnectionMode>, httpHandlers: [any RemovableChannelHandler], firstRequestTimeout: TimeAmount, fastPath: Bool) {
        self.fastPath = fastPath
        self.hub = hub
        self.mode = mode
        self.httpHandlers = httpHandlers
        self.firstRequestTimeout = firstRequestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let channel = context.channel
        timeout = context.eventLoop.scheduleTask(in: firstRequestTimeout) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let ip = clientIP {
            hub.policy.release(ip: ip)
            clientIP = nil
        }
        timeout?.cancel()
        self.context = nil
        mode.fail(ChannelError.ioOnClosedChannel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        mode.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .passing:
            context.fireChannelRead(data)
        case .buffering(var parts):
            parts.append(data)
            state = .buffering(parts)
        case .done:
            break
        case .streamWaitingForEnd(let plan, let head):
            if case .end = unwrapInboundIn(data) { becomeStream(context: context, plan: plan, head: head) }
        case .waitingForHead:
            guard fastPath, case .head(let head) = unwrapInboundIn(data), let plan = acceptableStream(head, context: context) else {
                timeout?.cancel()
                timeout = nil
                state = .buffering([data])
                mode.succeed(.http)
                return
            }
            // The first-request timeout keeps running until the request is complete: a stream request that
            // announces a body and never sends it is closed, and its stream slot released.
            state = .streamWaitingForEnd(plan, head)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, case .waitingForHead = state {
            // Shutting down and no request yet: nothing to finish.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if case .passing = state { context.fireChannelReadComplete() }
    }

    /// Called on the loop once Hummingbird's async channel is in the pipeline.
    func release() {
        guard let context, case .buffering(let parts) = state else {
            state = .passing
            return
        }
        state = .passing
        for part in parts { context.fireChannelRead(part) }
        context.fireChannelReadComplete()
    }

    /// The plan of an SSE request that the fast path can serve; nil sends the request to Hummingbird (which
    /// also answers bad input and refusals with the same JSON errors as ever).
    private func acceptableStream(_ head: HTTPRequestHead, context: ChannelHandlerContext) -> SSEPlan? {
        guard head.method == .GET, head.version.major == 1, head.uri.utf8.count <= AccessPolicy.maxURLBytes else { return nil }
        let cookie = head.headers["cookie"].isEmpty ? nil : head.headers["cookie"].joined(separator: "; ")
        guard let plan = try? SSERoutes.plan(isGet: true, uri: URI(head.uri), cookieHeader: cookie, policy: hub.policy) else { return nil }
        let registry = hub.registry
        switch plan.target {
        case .room(let name, _):
            if !registry.canJoin(room: name) { return nil }
        case .site:
            if registry.isShuttingDown { return nil }
        }
        let forwarded = head.headers["x-forwarded-for"].isEmpty ? nil : head.headers["x-forwarded-for"].joined(separator: ", ")
        let ip = hub.policy.clientAddress(peer: context.channel.remoteAddress, forwardedFor: forwarded)
        do {
            try hub.policy.acquire(ip: ip)
        } catch {
            return nil  // Hummingbird answers the 429 or 503.
        }
        clientIP = ip
        return plan
    }

    /// An oversized head gets 431, any other malformed request 400, as JSON; then the connection closes.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        let (status, message, reason): (HTTPResponseStatus, String, RejectReason) =
            parserError == .headerOverflow
            ? (.requestHeaderFieldsTooLarge, "request head is larger than \(AccessPolicy.maxHeaderBytes) bytes", .headerTooLarge)
            : (.badRequest, "malformed HTTP request", .badRequest)
        hub.metrics.rejected(reason)
        hub.logLimiter.log(hub.logger, level: .info, "request rejected", reason: reason.rawValue, metadata: ["headcount.status": "\(status.code)", "headcount.reason": "\(message)"])
        let body = ByteBuffer(string: JSON.object(["error": .string(message)]).serialized)
        var headers = HTTPHeaders([("Content-Type", "application/json; charset=utf-8"), ("Connection", "close")])
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        state = .done
        timeout?.cancel()
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        mode.fail(ChannelError.ioOnClosedChannel)
    }

    private func becomeStream(context: ChannelHandlerContext, plan: SSEPlan, head: HTTPRequestHead) {
        state = .done
        timeout?.cancel()
        timeout = nil
        let chunked = head.version.minor >= 1
        let origin = head.headers.first(name: "origin")
        let response = SSEStreamHandler.responseHead(
            plan: plan,
            chunked: chunked,
            origin: origin,
            cors: hub.cors,
            retryMilliseconds: hub.randomRetryMilliseconds()
        )
        let stream = SSEStreamHandler(plan: plan, chunked: chunked, head: response, hub: hub, clientIP: clientIP)
        clientIP = nil
        let pipeline = context.pipeline.syncOperations
        do {
            for handler in httpHandlers { pipeline.removeHandler(handler, promise: nil) }
            pipeline.removeHandler(context: context, promise: nil)
            try pipeline.addHandler(stream)
            mode.succeed(.stream)
        } catch {
            if let ip = stream.clientIP { hub.policy.release(ip: ip) }
            stream.clientIP = nil
            context.close(promise: nil)
        }
    }
}

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
