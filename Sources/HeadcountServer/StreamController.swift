import HTTPTypes
import HeadcountCore
import Hummingbird

/// The SSE routes as the router sees them: `/api/sse` (the original contract), `/rooms/{room}/events`
/// and `/events`. A stream that can be served never reaches the router (`HTTPConnectionHandler` turns
/// the channel into an `SSEStreamHandler`); these routes answer the requests it could not serve, with the
/// same JSON errors as every other route: bad input, a refused token, a limit, shutdown.
struct StreamController {
    let hub: StreamHub
    var registry: PresenceRegistry { hub.registry }

    func addRoutes(to router: Router<HeadcountRequestContext>) {
        let handler = { @Sendable (request: Request, context: HeadcountRequestContext) throws -> Response in
            guard let plan = try SSERoutes.plan(isGet: request.method == .get, uri: request.uri, cookieHeader: request.headers[.cookie], policy: hub.policy) else {
                throw APIError(.notFound, "no such route")
            }
            try refusal(request: request, context: context, plan: plan)
        }
        router.get("/api/sse", use: handler)
        router.get("/rooms/:room/events", use: handler)
        router.get("/events", use: handler)
    }

    /// The `room` path parameter, decoded and validated.
    static func room(from context: HeadcountRequestContext) throws -> String {
        let room = context.parameters.get("room")?.removingPercentEncodingIfNeeded ?? ""
        if let problem = Names.roomProblem(room) { throw APIError(.badRequest, problem) }
        return room
    }

    /// Throws why a valid stream request was not served.
    func refusal(request: Request, context: HeadcountRequestContext, plan: SSEPlan) throws -> Never {
        if registry.isShuttingDown || hub.isDraining {
            throw APIError(.serviceUnavailable, "server is shutting down", headers: [.retryAfter: "2"], reason: .shuttingDown)
        }
        if case .room(let name, _) = plan.target, !registry.canJoin(room: name) {
            throw APIError(.serviceUnavailable, "too many rooms", headers: [.retryAfter: "5"], reason: .tooManyRooms)
        }
        let ip = hub.policy.clientAddress(peer: context.remoteAddress, forwardedFor: request.headers[.xForwardedFor])
        try hub.policy.wouldAccept(ip: ip)
        // A slot freed between the two checks: the client retries.
        throw APIError(.serviceUnavailable, "stream could not be opened, retry", headers: [.retryAfter: "1"], reason: .tooManyStreams)
    }
}
