import Foundation
import HeadcountCore
import Hummingbird
import HummingbirdCore
import NIOCore
import ServiceLifecycle

/// Operator routes: `/healthz`, `/readyz`, `/api/history`, `/selftest/stream`.
struct OpsController {
    let hub: StreamHub

    static let selftestEvents = 30
    static let selftestSpacing: Duration = .milliseconds(100)

    func addRoutes(to router: Router<HeadcountRequestContext>) {
        let registry = hub.registry
        router.get("/healthz") { _, _ in
            Response.json(.orderedObject([("status", .string("ok"))]))
        }
        router.get("/readyz") { _, _ in
            if hub.isDraining || registry.isShuttingDown {
                return Response.json(.orderedObject([("status", .string("draining"))]), status: .serviceUnavailable)
            }
            if registry.backplane.isDegraded {
                return Response.json(.orderedObject([("status", .string("degraded")), ("reason", .string("cluster backplane unreachable"))]), status: .serviceUnavailable)
            }
            return Response.json(.orderedObject([("status", .string("ready"))]))
        }
        router.get("/api/history") { request, _ in
            try hub.policy.requireAdmin(request.headers[.authorization])
            let query = request.uri.queryParameters
            var room: String?
            if let raw = query["room"] {
                let name = String(raw)
                if let problem = Names.roomProblem(name) { throw APIError(.badRequest, problem) }
                if hub.policy.adminToken == nil && hub.policy.isPrivate(name) {
                    _ = try hub.policy.authorize(room: name, token: query["token"].map(String.init))
                }
                room = name
            }
            var window = 3600
            if let raw = query["window"] {
                guard let w = Int(String(raw)), (1...hub.history.capacity).contains(w) else {
                    throw APIError(.badRequest, "window must be a whole number of seconds from 1 to \(hub.history.capacity)")
                }
                window = w
            }
            let now = Int64(Date().timeIntervalSince1970.rounded(.down))
            let samples = hub.history.samples(room: room, window: window, now: now)
            return Response.json(
                .orderedObject([
                    ("room", room.map { .string($0) } ?? .null),
                    ("interval", .int(1)),
                    ("window", .int(window)),
                    ("samples", .array(samples.map { .array([.int(Int($0.0)), .int($0.1)]) })),
                ])
            )
        }
        router.get("/selftest/stream") { _, _ in
            Response(
                status: .ok,
                headers: SSERoutes.headers(setCookie: nil),
                body: ResponseBody { writer in
                    // A client that goes away makes the next write fail, which ends the response (and its task).
                    try await writer.write(ByteBuffer(string: "retry: 5000\n\n"))
                    for seq in 0..<Self.selftestEvents {
                        if seq > 0 { try await Task.sleep(for: Self.selftestSpacing) }
                        let ms = Int((Date().timeIntervalSince1970 * 1000).rounded())
                        try await writer.write(ByteBuffer(string: "id: \(seq)\ndata: {\"seq\":\(seq),\"t\":\(ms)}\n\n"))
                    }
                    try await writer.write(ByteBuffer(string: "event: end\ndata: {\"events\":\(Self.selftestEvents)}\n\n"))
                    try await writer.finish(nil)
                }
            )
        }
    }
}
