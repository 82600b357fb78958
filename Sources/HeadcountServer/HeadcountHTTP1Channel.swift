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

/// Hummingbird's HTTP/1 child channel with an SSE fast path. A connection whose first request is an SSE
/// stream becomes a plain NIO handler and its task ends at once; any other connection is handed to
/// Hummingbird's own request loop (where a later SSE request on a keep-alive connection is served by the
/// route shape). See docs/DECISIONS.md.
struct HeadcountHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = HeadcountChildValue

    let responder: HTTPChannelHandler.Responder
    let hub: StreamHub
    let decoderLimits: NIOHTTPDecoderLimitConfiguration
    /// A connection that sends no request head within this time is closed.
    let firstRequestTimeout: TimeAmount
    /// Idle time after which a keep-alive HTTP connection is closed.
    let idleTimeout: Duration?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            let encoder = HTTPResponseEncoder(configuration: .init())
            let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: decoderLimits))
            let codec = HTTP1ToHTTPServerCodec(secure: false)
            let promise = channel.eventLoop.makePromise(of: ConnectionMode.self)
            let entry = HTTPEntryHandler(hub: hub, mode: promise, httpHandlers: [encoder, decoder, codec], firstRequestTimeout: firstRequestTimeout)
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
    var state = State.waitingForHead
    var context: ChannelHandlerContext?
    var timeout: Scheduled<Void>?

    init(hub: StreamHub, mode: EventLoopPromise<ConnectionMode>, httpHandlers: [any RemovableChannelHandler], firstRequestTimeout: TimeAmount) {
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
            timeout?.cancel()
            timeout = nil
            guard case .head(let head) = unwrapInboundIn(data), let plan = acceptableStream(head) else {
                state = .buffering([data])
                mode.succeed(.http)
                return
            }
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
    private func acceptableStream(_ head: HTTPRequestHead) -> SSEPlan? {
        guard head.method == .GET, head.version.major == 1 else { return nil }
        let cookie = head.headers["cookie"].isEmpty ? nil : head.headers["cookie"].joined(separator: "; ")
        guard let plan = try? SSERoutes.plan(isGet: true, uri: URI(head.uri), cookieHeader: cookie) else { return nil }
        let registry = hub.registry
        switch plan.target {
        case .room(let name, _):
            if !registry.canJoin(room: name) { return nil }
        case .site:
            if registry.isShuttingDown { return nil }
        }
        return plan
    }

    private func becomeStream(context: ChannelHandlerContext, plan: SSEPlan, head: HTTPRequestHead) {
        state = .done
        let chunked = head.version.minor >= 1
        let origin = head.headers.first(name: "origin")
        let response = SSEStreamHandler.responseHead(
            plan: plan,
            chunked: chunked,
            origin: origin,
            cors: hub.cors,
            retryMilliseconds: hub.randomRetryMilliseconds()
        )
        let stream = SSEStreamHandler(plan: plan, chunked: chunked, head: response, hub: hub)
        let pipeline = context.pipeline.syncOperations
        do {
            for handler in httpHandlers { pipeline.removeHandler(handler, promise: nil) }
            pipeline.removeHandler(context: context, promise: nil)
            try pipeline.addHandler(stream)
            mode.succeed(.stream)
        } catch {
            context.close(promise: nil)
        }
    }
}
