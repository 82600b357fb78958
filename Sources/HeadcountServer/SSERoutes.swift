import Foundation
import HTTPTypes
import HeadcountCore
import HummingbirdCore

/// What an SSE request asks for, decided once and shared by both stream shapes (the NIO fast path and
/// the Hummingbird route), so both validate and identify callers identically.
struct SSEPlan: Sendable {
    var target: SubscriptionTarget
    /// nil for watchers.
    var visitor: VisitorIdentity?
    /// `Set-Cookie` value when the caller got a fresh visitor id.
    var setCookie: String?
}

enum SSERoutes {
    static let visitorCookie = "hc_vid"

    /// The plan for a request, nil when the path is not an SSE route, or an `APIError` for bad input.
    static func plan(isGet: Bool, uri: URI, cookieHeader: String?, policy: AccessPolicy) throws(APIError) -> SSEPlan? {
        guard isGet else { return nil }
        let path = uri.path
        let target: SubscriptionTarget
        if path == "/api/sse" {
            target = .room("lobby", .legacy)
        } else if path == "/events" {
            return SSEPlan(target: .site, visitor: nil, setCookie: nil)
        } else if path.hasPrefix("/rooms/") && path.hasSuffix("/events") && path.utf8.count > "/rooms//events".utf8.count - 1 {
            let start = path.index(path.startIndex, offsetBy: 7)
            let end = path.index(path.endIndex, offsetBy: -7)
            guard start <= end else { return nil }
            let raw = String(path[start..<end])
            let room = raw.removingPercentEncodingIfNeeded
            if let problem = Names.roomProblem(room) { throw APIError(.badRequest, problem) }
            target = .room(room, .room)
        } else {
            return nil
        }
        let query = uri.queryParameters
        var boundVisitor: String?
        if case .room(let room, _) = target {
            boundVisitor = try policy.authorize(room: room, token: query["token"].map(String.init))
        }
        switch query["watch"].map(String.init) {
        case nil, "0", "false":
            break
        case "1", "true", "":
            return SSEPlan(target: target, visitor: nil, setCookie: nil)
        case .some:
            throw APIError(.badRequest, "watch must be 1 or 0")
        }
        if let raw = query["visitor"] {
            let id = String(raw)
            if let problem = Names.visitorProblem(id) { throw APIError(.badRequest, problem) }
            if let boundVisitor, boundVisitor != id { throw APIError(.forbidden, "join token is for another visitor", reason: .forbidden) }
            return SSEPlan(target: target, visitor: .identified(id), setCookie: nil)
        }
        if let boundVisitor {
            return SSEPlan(target: target, visitor: .identified(boundVisitor), setCookie: nil)
        }
        if let cookie = cookieValue(cookieHeader, name: visitorCookie), Names.isValidVisitor(cookie) {
            return SSEPlan(target: target, visitor: .identified(cookie), setCookie: nil)
        }
        let fresh = RandomID.make()
        return SSEPlan(target: target, visitor: .ephemeral(fresh), setCookie: "\(visitorCookie)=\(fresh); Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly")
    }

    /// The value of cookie `name` in a `Cookie` header (several headers arrive joined by `; `).
    static func cookieValue(_ header: String?, name: String) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ";") {
            let pair = part.drop(while: { $0 == " " })
            guard let eq = pair.firstIndex(of: "=") else { continue }
            if pair[..<eq] == name { return String(pair[pair.index(after: eq)...]) }
        }
        return nil
    }

    /// The response headers of every SSE stream.
    static func headers(setCookie: String?) -> HTTPFields {
        var headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8",
            .cacheControl: "no-cache, no-transform",
            HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        if let setCookie { headers[.setCookie] = setCookie }
        return headers
    }
}

extension String {
    /// Percent-decodes when the string contains `%`; invalid escapes leave it as is (and then fail validation).
    var removingPercentEncodingIfNeeded: String {
        guard self.contains("%") else { return self }
        return self.removingPercentEncoding ?? self
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
