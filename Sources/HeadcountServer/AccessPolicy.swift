import Crypto
import Foundation
import HTTPTypes
import HeadcountCore
import NIOCore
import Synchronization

/// Who may join what, and how much any one client may hold: private rooms and tokens, the admin token,
/// stream limits per client address and in total, and which proxies may name the client's address.
final class AccessPolicy: Sendable {
    let tokens: JoinTokens?
    let privateRooms: RoomPatterns
    let adminToken: String?
    let maxStreamsPerIP: Int
    let maxStreams: Int
    let trustedProxies: [IPRange]
    private let counts = Mutex<(perIP: [String: Int], total: Int)>(([:], 0))

    static let maxURLBytes = 2048
    static let maxHeaderBytes = 16 * 1024

    init(configuration: HeadcountConfiguration) {
        tokens = configuration.secret.map { JoinTokens(secret: $0) }
        privateRooms = RoomPatterns(configuration.privateRooms)
        adminToken = configuration.adminToken
        maxStreamsPerIP = configuration.maxStreamsPerIP
        maxStreams = configuration.maxStreams
        trustedProxies = configuration.trustedProxies.compactMap(IPRange.init)
    }

    // MARK: Private rooms

    func isPrivate(_ room: String) -> Bool { !privateRooms.isEmpty && privateRooms.matches(room) }

    /// Checks the join token of a private room; returns the visitor the token binds, if any.
    func authorize(room: String, token: String?) throws(APIError) -> String? {
        guard isPrivate(room) else { return nil }
        guard let token, !token.isEmpty else { throw APIError(.unauthorized, "room \(room) is private: a join token is needed", reason: .unauthorized) }
        guard let tokens else { throw APIError(.forbidden, "private rooms are not configured with a secret", reason: .forbidden) }
        do {
            let claims = try tokens.verify(token, room: room, now: Int64(Date().timeIntervalSince1970))
            return claims.visitor
        } catch .expired {
            throw APIError(.unauthorized, "join token expired", reason: .unauthorized)
        } catch .wrongRoom {
            throw APIError(.forbidden, "join token is for another room", reason: .forbidden)
        } catch {
            throw APIError(.forbidden, "join token is not valid", reason: .forbidden)
        }
    }

    // MARK: Admin

    /// Whether `Authorization: Bearer …` (or nothing, when no admin token is set) allows the admin routes.
    func isAdmin(_ authorization: String?) -> Bool {
        guard let adminToken else { return true }
        guard let authorization, authorization.hasPrefix("Bearer ") else { return false }
        let given = Data(authorization.dropFirst(7).utf8)
        let expected = Data(adminToken.utf8)
        // Constant-time comparison of the digests.
        return Data(SHA256.hash(data: given)) == Data(SHA256.hash(data: expected))
    }

    func requireAdmin(_ authorization: String?) throws(APIError) {
        if !isAdmin(authorization) {
            throw APIError(.unauthorized, "this route needs Authorization: Bearer <admin token>", headers: [.wwwAuthenticate: "Bearer"], reason: .unauthorized)
        }
    }

    // MARK: Client addresses and limits

    /// The client's address: the peer, or — only when the peer is a trusted proxy — the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    func clientAddress(peer: SocketAddress?, forwardedFor: String?) -> String {
        let peerIP = peer?.ipAddress ?? "unknown"
        guard let forwardedFor, !trustedProxies.isEmpty, isTrusted(peerIP) else { return peerIP }
        let hops = forwardedFor.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for hop in hops.reversed() where !isTrusted(hop) {
            return IPRange.parseAddress(hop) != nil ? hop : peerIP
        }
        return hops.first ?? peerIP
    }

    func isTrusted(_ ip: String) -> Bool {
        guard let address = IPRange.parseAddress(ip) else { return false }
        return trustedProxies.contains { $0.contains(address) }
    }

    enum Refusal: Error {
        case perIP
        case total
    }

    /// Whether one more stream from `ip` would be accepted now (no reservation).
    func wouldAccept(ip: String) throws(APIError) {
        let (perIP, total) = counts.withLock { ($0.perIP[ip] ?? 0, $0.total) }
        try check(perIP: perIP, total: total)
    }

    /// Reserves a stream slot for `ip`; `release(ip:)` gives it back.
    func acquire(ip: String) throws(APIError) {
        let refusal: APIError? = counts.withLock { c in
            let perIP = c.perIP[ip] ?? 0
            do throws(APIError) {
                try check(perIP: perIP, total: c.total)
            } catch {
                return error
            }
            c.perIP[ip] = perIP + 1
            c.total += 1
            return nil
        }
        if let refusal { throw refusal }
    }

    func release(ip: String) {
        counts.withLock { c in
            c.total -= 1
            if let n = c.perIP[ip] {
                if n <= 1 { c.perIP.removeValue(forKey: ip) } else { c.perIP[ip] = n - 1 }
            }
        }
    }

    private func check(perIP: Int, total: Int) throws(APIError) {
        if total >= maxStreams {
            throw APIError(.serviceUnavailable, "the server holds its maximum number of streams", headers: [.retryAfter: "\(Int.random(in: 5...15))"], reason: .tooManyStreams)
        }
        if perIP >= maxStreamsPerIP {
            throw APIError(.tooManyRequests, "too many streams from your address (at most \(maxStreamsPerIP))", headers: [.retryAfter: "\(Int.random(in: 5...15))"], reason: .tooManyStreamsPerIP)
        }
    }

    var openByAddress: Int { counts.withLock { $0.total } }
}

/// An IPv4 or IPv6 address range written as an address or CIDR (`10.0.0.0/8`, `::1`).
struct IPRange: Sendable {
    let base: [UInt8]
    let prefix: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count >= 1, !parts[0].isEmpty, let address = IPRange.parseAddress(String(parts[0])) else { return nil }
        let bits = address.count * 8
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...bits).contains(p) else { return nil }
            prefix = p
        } else {
            prefix = bits
        }
        base = address
    }

    func contains(_ address: [UInt8]) -> Bool {
        guard address.count == base.count else { return false }
        var remaining = prefix
        for i in 0..<base.count where remaining > 0 {
            let take = min(8, remaining)
            let mask: UInt8 = take == 8 ? 0xFF : ~(0xFF >> UInt8(take))
            if address[i] & mask != base[i] & mask { return false }
            remaining -= take
        }
        return true
    }

    static func parseAddress(_ text: String) -> [UInt8]? {
        if let v4 = try? SocketAddress(ipAddress: text, port: 0) {
            switch v4 {
            case .v4(let a):
                return withUnsafeBytes(of: a.address.sin_addr.s_addr) { Array($0) }
            case .v6(let a):
                return withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            default:
                return nil
            }
        }
        return nil
    }
}

extension HTTPField.Name {
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
}
