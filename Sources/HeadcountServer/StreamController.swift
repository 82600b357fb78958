import CoreMetrics
import HTTPTypes
import HeadcountCore
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The SSE routes: `/api/sse` (the original contract), `/rooms/{room}/events` and `/events`.
struct StreamController {
    let hub: StreamHub
    var registry: PresenceRegistry { hub.registry }
    var configuration: HeadcountConfiguration { hub.configuration }

    func addRoutes(to router: Router<HeadcountRequestContext>) {
        let handler = { @Sendable (request: Request, context: HeadcountRequestContext) throws -> Response in
            guard let plan = try SSERoutes.plan(isGet: request.method == .get, uri: request.uri, cookieHeader: request.headers[.cookie], policy: hub.policy) else {
                throw APIError(.notFound, "no such route")
            }
            return try open(request: request, context: context, plan: plan)
        }
        router.get("/api/sse", use: handler)
        router.get("/rooms/:room/events", use: handler)
        router.get("/events", use: handler)
    }

    static func room(from context: HeadcountRequestContext) throws -> String {
        let room = context.parameters.get("room")?.removingPercentEncodingIfNeeded ?? ""
        if let problem = Names.roomProblem(room) { throw APIError(.badRequest, problem) }
        return room
    }

    /// The response of one SSE stream. The subscriber joins once the head is on its way and leaves on
    /// every exit path: client close (seen at once through the inbound-close handler), a failed write,
    /// server shutdown or cancellation.
    func open(request: Request, context: HeadcountRequestContext, plan: SSEPlan) throws -> Response {
        let target = plan.target
        let visitor = plan.visitor
        if registry.isShuttingDown { throw APIError(.serviceUnavailable, "server is shutting down", headers: [.retryAfter: "2"], reason: .shuttingDown) }
        if case .room(let name, _) = target, !registry.canJoin(room: name) {
            throw APIError(.serviceUnavailable, "too many rooms", headers: [.retryAfter: "5"], reason: .tooManyRooms)
        }
        let ip = hub.policy.clientAddress(peer: context.remoteAddress, forwardedFor: request.headers[.xForwardedFor])
        try hub.policy.wouldAccept(ip: ip)
        let headers = SSERoutes.headers(setCookie: plan.setCookie)
        let retry = SSEEncoder.retry(milliseconds: hub.randomRetryMilliseconds())
        let registry = self.registry
        let hub = self.hub
        let logger = context.logger
        let eventLoop = context.channel.eventLoop
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody { writer in
                let sink = StreamSink()
                let subscription: Subscription
                do {
                    try hub.policy.acquire(ip: ip)
                } catch {
                    logger.info("stream refused after accept", metadata: ["headcount.reason": "\(error)"])
                    try await writer.finish(nil)
                    return
                }
                defer { hub.policy.release(ip: ip) }
                do {
                    subscription = try registry.join(target, visitor: visitor, sink: sink)
                } catch {
                    logger.info("stream refused after accept", metadata: ["headcount.reason": "\(error)"])
                    try await writer.finish(nil)
                    return
                }
                hub.routeStreams.add(1, ordering: .relaxed)
                if visitor != nil { hub.metrics.joins.increment() }
                var reason = LeaveReason.writeFailure
                defer {
                    registry.leave(subscription)
                    hub.routeStreams.subtract(1, ordering: .relaxed)
                    if visitor != nil { hub.metrics.left(reason) }
                }
                try await withGracefulShutdownHandler {
                    try await request.body.consumeWithInboundCloseHandler { _ in
                        try await withTaskCancellationHandler {
                            try await writer.write(retry)
                            while let bytes = await sink.next() {
                                try await writer.write(bytes)
                                hub.metrics.sent(events: 1, bytes: bytes.readableBytes)
                            }
                            reason = sink.closeReason
                        } onCancel: {
                            sink.close(reason: .closed)
                        }
                    } onInboundClosed: {
                        sink.close(reason: .closed)
                    }
                } onGracefulShutdown: {
                    // Spread the closes over the drain window.
                    let window = hub.configuration.drain.timeAmount.nanoseconds
                    if window > 0 {
                        eventLoop.scheduleTask(in: .nanoseconds(Int64.random(in: 0...window))) { sink.close(reason: .shutdown) }
                    } else {
                        sink.close(reason: .shutdown)
                    }
                }
                try await writer.finish(nil)
            }
        )
    }

}

