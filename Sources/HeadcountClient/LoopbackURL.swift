/// An `http://` (or, where allowed, `https://`) URL whose host is a loopback address: 127.x.x.x,
/// `localhost` or `[::1]`.
///
/// The load tools only ever talk to loopback: any other host is refused before a socket is opened.
public struct LoopbackURL: Sendable, Hashable, CustomStringConvertible {
    /// `https://`: TLS (the bench's HTTP/2 transport).
    public var tls: Bool
    /// The host as written (`127.0.0.1`, `localhost`, `::1` without brackets).
    public var host: String
    public var port: Int
    /// Path and query, starting with `/` (`/` when the URL had none).
    public var pathAndQuery: String

    /// The address to connect to: `localhost` resolves to 127.0.0.1 (no resolver involved).
    public var connectHost: String { host == "localhost" ? "127.0.0.1" : host }
    public var isIPv6: Bool { host == "::1" }

    /// `Host:` header value.
    public var hostHeader: String {
        let h = isIPv6 ? "[::1]" : host
        return port == (tls ? 443 : 80) ? h : "\(h):\(port)"
    }

    public var description: String { (tls ? "https://" : "http://") + hostHeader + pathAndQuery }

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
        init(_ d: String) { description = d }
    }

    public init(host: String, port: Int, pathAndQuery: String = "/", tls: Bool = false) {
        self.tls = tls
        self.host = host
        self.port = port
        self.pathAndQuery = pathAndQuery
    }

    /// Parses `http://host[:port][/path][?query]` (and `https://…` when `allowTLS`), refusing every
    /// host outside loopback.
    public init(parsing text: String, allowTLS: Bool = false) throws(ParseError) {
        let trimmed = text.trimmingSpaces
        let isTLS = trimmed.lowercased().hasPrefix("https://")
        guard trimmed.lowercased().hasPrefix("http://") || (isTLS && allowTLS) else {
            if isTLS {
                throw ParseError("\(text): https is not supported here (plain http only)")
            }
            throw ParseError("\(text): expected a URL starting with http://")
        }
        let rest = trimmed.dropFirst(isTLS ? "https://".count : "http://".count)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[rest.startIndex..<authorityEnd]
        var path = String(rest[authorityEnd...])
        if let hash = path.firstIndex(of: "#") { path = String(path[path.startIndex..<hash]) }
        if path.isEmpty { path = "/" } else if path.first == "?" { path = "/" + path }
        guard !authority.contains("@") else { throw ParseError("\(text): credentials in the URL are not supported") }

        var host: Substring
        var portText: Substring?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { throw ParseError("\(text): unterminated [ in host") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw ParseError("\(text): unexpected characters after ]") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[authority.startIndex..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        var port = isTLS ? 443 : 80
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw ParseError("\(text): invalid port '\(portText)'") }
            port = p
        }
        let lower = host.lowercased()
        guard Self.isLoopback(lower) else {
            throw ParseError("\(text): host '\(host)' is not loopback (only 127.x.x.x, localhost and ::1 are allowed)")
        }
        self.tls = isTLS
        self.host = lower == "0:0:0:0:0:0:0:1" ? "::1" : lower
        self.port = port
        self.pathAndQuery = path
    }

    /// Whether `host` (lowercased, without brackets) is a loopback host.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        var octets: [Int] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(part), n <= 255 else { return false }
            octets.append(n)
        }
        return octets[0] == 127
    }

    /// The same server with another path and query.
    public func with(pathAndQuery: String) -> LoopbackURL {
        LoopbackURL(host: host, port: port, pathAndQuery: pathAndQuery, tls: tls)
    }

    /// Replaces `{room}` in the path with `room`, or appends `room` when there is no placeholder.
    public func substitutingRoom(_ room: String) -> LoopbackURL {
        if pathAndQuery.contains("{room}") {
            return with(pathAndQuery: pathAndQuery.replacing("{room}", with: room))
        }
        let (path, query) = splitQuery
        let joined = path.hasSuffix("/") ? path + room : path + "/" + room
        return with(pathAndQuery: query.map { joined + "?" + $0 } ?? joined)
    }

    var splitQuery: (path: String, query: String?) {
        guard let q = pathAndQuery.firstIndex(of: "?") else { return (pathAndQuery, nil) }
        return (String(pathAndQuery[pathAndQuery.startIndex..<q]), String(pathAndQuery[pathAndQuery.index(after: q)...]))
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
