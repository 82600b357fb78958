import HTTPTypes
import HeadcountCore
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle

/// The SSE routes: `/api/sse` (the original contract), `/rooms/{room}/events` and `/events`.
struct StreamController {
    let registry: PresenceRegistry
    let configuration: HeadcountConfiguration

    static let visitorCookie = "hc_vid"

    func addRoutes(to router: Router<HeadcountRequestContext>) {
        router.get("/api/sse") { request, context in
            try stream(request: request, context: context, room: "lobby", format: .legacy)
        }
        router.get("/rooms/:room/events") { request, context in
            let room = try Self.room(from: context)
            return try stream(request: request, context: context, room: room, format: .room)
        }
        router.get("/events") { request, context in
            try open(request: request, context: context, target: .site, visitor: nil, setCookie: nil)
        }
    }

    static func room(from context: HeadcountRequestContext) throws -> String {
        let room = context.parameters.get("room") ?? ""
        if let problem = Names.roomProblem(room) { throw APIError(.badRequest, problem) }
        return room
    }

    /// Validates a room stream request, resolves who the caller is, and opens the stream.
    func stream(request: Request, context: HeadcountRequestContext, room: String, format: EventFormat) throws -> Response {
        let query = request.uri.queryParameters
        let watch: Bool
        switch query["watch"].map(String.init) {
        case nil, "0", "false": watch = false
        case "1", "true", "": watch = true
        case .some: throw APIError(.badRequest, "watch must be 1 or 0")
        }
        if watch {
            return try open(request: request, context: context, target: .room(room, format), visitor: nil, setCookie: nil)
        }
        let (visitor, cookie) = try Self.identify(request)
        return try open(request: request, context: context, target: .room(room, format), visitor: visitor, setCookie: cookie)
    }

    /// Who the caller is: `?visitor=`, else the `hc_vid` cookie, else a fresh id (set as a cookie) that
    /// counts as its own visitor and leaves at once.
    static func identify(_ request: Request) throws -> (VisitorIdentity, setCookie: String?) {
        if let raw = request.uri.queryParameters["visitor"] {
            let id = String(raw)
            if let problem = Names.visitorProblem(id) { throw APIError(.badRequest, problem) }
            return (.identified(id), nil)
        }
        if let cookie = request.cookies[visitorCookie]?.value, Names.isValidVisitor(cookie) {
            return (.identified(cookie), nil)
        }
        let fresh = RandomID.make()
        let cookie = "\(visitorCookie)=\(fresh); Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly"
        return (.ephemeral(fresh), cookie)
    }

    /// The response of one SSE stream. The subscriber joins once the head is on its way and leaves on
    /// every exit path: client close (seen at once through the inbound-close handler), a failed write,
    /// server shutdown or cancellation.
    func open(request: Request, context: HeadcountRequestContext, target: SubscriptionTarget, visitor: VisitorIdentity?, setCookie: String?) throws -> Response {
        if registry.isShuttingDown { throw APIError(.serviceUnavailable, "server is shutting down", headers: [.retryAfter: "2"]) }
        if case .room(let name, _) = target, !registry.canJoin(room: name) {
            throw APIError(.serviceUnavailable, "too many rooms", headers: [.retryAfter: "5"])
        }
        var headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8",
            .cacheControl: "no-cache, no-transform",
            HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        if let setCookie { headers[.setCookie] = setCookie }
        let retry = SSEEncoder.retry(milliseconds: randomRetryMilliseconds())
        let registry = self.registry
        let logger = context.logger
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody { writer in
                let sink = StreamSink()
                let subscription: Subscription
                do {
                    subscription = try registry.join(target, visitor: visitor, sink: sink)
                } catch {
                    logger.info("stream refused after accept", metadata: ["headcount.reason": "\(error)"])
                    try await writer.finish(nil)
                    return
                }
                defer { registry.leave(subscription) }
                try await withGracefulShutdownHandler {
                    try await request.body.consumeWithInboundCloseHandler { _ in
                        try await withTaskCancellationHandler {
                            try await writer.write(retry)
                            while let bytes = await sink.next() {
                                try await writer.write(bytes)
                            }
                        } onCancel: {
                            sink.close()
                        }
                    } onInboundClosed: {
                        sink.close()
                    }
                } onGracefulShutdown: {
                    sink.close()
                }
                try await writer.finish(nil)
            }
        )
    }

    func randomRetryMilliseconds() -> Int {
        let low = Int(configuration.retryMin.seconds * 1000)
        let high = max(low, Int(configuration.retryMax.seconds * 1000))
        return Int.random(in: low...high)
    }
}

enum RandomID {
    /// 128 random bits as 32 hex characters.
    static func make() -> String {
        var rng = SystemRandomNumberGenerator()
        let a = rng.next() as UInt64
        let b = rng.next() as UInt64
        let hexA = String(a, radix: 16)
        let hexB = String(b, radix: 16)
        return String(repeating: "0", count: 16 - hexA.count) + hexA + String(repeating: "0", count: 16 - hexB.count) + hexB
    }
}
