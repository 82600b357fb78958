import Crypto
import Foundation
import HeadcountCore

/// Signed join tokens for private rooms: HMAC-SHA256 over the room (or a room prefix), the expiry and an
/// optional visitor id.
///
/// Wire format: `base64url(payload) "." base64url(mac)`, where payload is
/// `v1|<room>|<exact or prefix>|<expiry, unix seconds>|<visitor or empty>`. `|` cannot occur in room names
/// or visitor ids, and `.` is not in the base64url alphabet.
public struct JoinTokens: Sendable {
    let key: SymmetricKey

    public init(secret: String) {
        self.key = SymmetricKey(data: Data(secret.utf8))
    }

    public struct Claims: Sendable, Equatable {
        public var room: String
        public var prefix: Bool
        public var expires: Int64
        public var visitor: String?
        public init(room: String, prefix: Bool = false, expires: Int64, visitor: String? = nil) {
            self.room = room
            self.prefix = prefix
            self.expires = expires
            self.visitor = visitor
        }
    }

    public enum Failure: Error, Equatable, Sendable {
        case malformed
        case badSignature
        case expired
        case wrongRoom
        case wrongVisitor
    }

    /// Mints a token (for `headcount token` and page templates).
    public func sign(_ claims: Claims) -> String {
        let payload = "v1|\(claims.room)|\(claims.prefix ? "prefix" : "exact")|\(claims.expires)|\(claims.visitor ?? "")"
        let mac = HMAC<SHA256>.authenticationCode(for: Data(payload.utf8), using: key)
        return Self.base64url(Data(payload.utf8)) + "." + Self.base64url(Data(mac))
    }

    /// Verifies a token for joining `room` at time `now` (unix seconds) and returns its claims.
    public func verify(_ token: String, room: String, now: Int64) throws(Failure) -> Claims {
        guard token.utf8.count <= 1024 else { throw .malformed }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Self.decode(parts[0]), let mac = Self.decode(parts[1]) else { throw .malformed }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key) else { throw .badSignature }
        let fields = String(decoding: payload, as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 5, fields[0] == "v1", let expires = Int64(fields[3]), fields[2] == "exact" || fields[2] == "prefix" else {
            throw .malformed
        }
        let claims = Claims(room: String(fields[1]), prefix: fields[2] == "prefix", expires: expires, visitor: fields[4].isEmpty ? nil : String(fields[4]))
        guard expires > now else { throw .expired }
        let matches = claims.prefix ? room.hasPrefix(claims.room) : room == claims.room
        guard matches else { throw .wrongRoom }
        return claims
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: Substring) -> Data? {
        guard !text.isEmpty, text.utf8.allSatisfy({ b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
        }) else { return nil }
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.utf8.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }
}

/// Which rooms are private: comma-separated globs (`priv-*`, `team-??`).
public struct RoomPatterns: Sendable {
    let patterns: [String]
    public init(_ list: [String]) { patterns = list.filter { !$0.isEmpty } }
    public var isEmpty: Bool { patterns.isEmpty }

    public func matches(_ room: String) -> Bool {
        patterns.contains { Self.glob(Array($0.utf8)[...], Array(room.utf8)[...]) }
    }

    /// `*` matches any run, `?` one character; everything else literally.
    static func glob(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        var pi = p.startIndex, si = s.startIndex
        var star: Int? = nil, mark = s.startIndex
        while si < s.endIndex {
            if pi < p.endIndex && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) {
                pi += 1
                si += 1
            } else if pi < p.endIndex && p[pi] == UInt8(ascii: "*") {
                star = pi
                pi += 1
                mark = si
            } else if let st = star {
                pi = st + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.endIndex && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.endIndex
    }
}
