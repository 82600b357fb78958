import Foundation
import HeadcountCore
import Hummingbird

/// JSON snapshots: `/api/rooms/{room}`, `/api/rooms`, `/api/stats`.
struct APIController {
    let registry: PresenceRegistry
    let policy: AccessPolicy

    static let defaultRoomLimit = 20
    static let maxRoomLimit = 1000

    func addRoutes(to router: Router<HeadcountRequestContext>) {
        router.get("/api/rooms/:room") { request, context in
            let room = try StreamController.room(from: context)
            // A private room's figures need its join token (or the admin token).
            if policy.isPrivate(room), !(policy.adminToken != nil && policy.isAdmin(request.headers[.authorization])) {
                _ = try policy.authorize(room: room, token: request.uri.queryParameters["token"].map(String.init))
            }
            return Response.json(Self.roomJSON(registry.counts(room: room)))
        }
        router.get("/api/rooms") { request, _ in
            try policy.requireAdmin(request.headers[.authorization])
            let limit = try Self.limit(request)
            // Without an admin token, private rooms are left out of the public listing.
            let hidePrivate = policy.adminToken == nil
            var rooms = registry.busiestRooms(limit: hidePrivate ? Self.maxRoomLimit : limit)
            if hidePrivate { rooms = Array(rooms.filter { !policy.isPrivate($0.room) }.prefix(limit)) }
            return Response.json(.object(["rooms": .array(rooms.map { Self.roomJSON($0, peak: true) })]))
        }
        router.get("/api/stats") { request, _ in
            try policy.requireAdmin(request.headers[.authorization])
            return Response.json(Self.statsJSON(registry.stats()))
        }
    }

    static func limit(_ request: Request) throws -> Int {
        guard let raw = request.uri.queryParameters["limit"] else { return defaultRoomLimit }
        guard let n = Int(String(raw)), n >= 1, n <= maxRoomLimit else {
            throw APIError(.badRequest, "limit must be a whole number from 1 to \(maxRoomLimit)")
        }
        return n
    }

    static func roomJSON(_ counts: RoomCounts, peak: Bool = false) -> JSON {
        var pairs: [(String, JSON)] = [("room", .string(counts.room)), ("online", .int(counts.online)), ("connections", .int(counts.connections))]
        if peak { pairs.append(("peak", .int(counts.peak))) }
        if counts.partial { pairs.append(("partial", .bool(true))) }
        return .orderedObject(pairs)
    }

    static func statsJSON(_ stats: SiteStats) -> JSON {
        var pairs: [(String, JSON)] = [
            ("online", .int(stats.counts.online)),
            ("connections", .int(stats.counts.connections)),
            ("rooms", .int(stats.counts.rooms)),
            ("peakOnline", .int(stats.peakOnline)),
            ("peakAt", stats.peakAt.map { .string(iso8601($0)) } ?? .null),
            ("uptimeSeconds", .double((stats.uptime * 1000).rounded() / 1000)),
            ("startedAt", .string(iso8601(stats.startedAt))),
            ("subscribers", .int(stats.subscribers)),
        ]
        if stats.counts.partial { pairs.append(("partial", .bool(true))) }
        return .orderedObject(pairs)
    }

    static func iso8601(_ seconds: Double) -> String {
        Date(timeIntervalSince1970: seconds).formatted(.iso8601)
    }
}
