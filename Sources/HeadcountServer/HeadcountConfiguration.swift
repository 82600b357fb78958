public import HeadcountCore
public import Logging

/// Everything `headcount serve` can be told. Each field has a flag and an environment variable
/// (see the README's configuration table); the defaults are named here.
public struct HeadcountConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    /// Interval of `: heartbeat` comments on every stream.
    public var heartbeat: Duration = .seconds(15)
    /// Leave grace of identified visitors.
    public var leaveGrace: Duration = PresenceConfiguration.defaultLeaveGrace
    /// Minimum spacing of two events of one room.
    public var updateInterval: Duration = PresenceConfiguration.defaultUpdateInterval
    /// `*` or a list of origins allowed by CORS.
    public var allowOrigins: [String] = ["*"]
    /// Lower and upper bound of the randomised `retry:` sent at the start of each stream.
    public var retryMin: Duration = .seconds(1)
    public var retryMax: Duration = .seconds(6)
    /// Most rooms in existence at once.
    public var maxRooms: Int = 100_000
    /// Most streams one client address may hold (429 past it).
    public var maxStreamsPerIP: Int = 16
    /// Most streams the server holds (503 past it).
    public var maxStreams: Int = 100_000
    /// Proxies whose `X-Forwarded-For` names the client (addresses or CIDRs).
    public var trustedProxies: [String] = []
    /// A peer that stops acknowledging (no FIN or RST) is dropped after this (TCP keepalive + TCP_USER_TIMEOUT).
    public var deadPeerTimeout: Duration = .seconds(30)
    /// A stream that makes no write progress this long is dropped (slow or frozen reader).
    public var writeTimeout: Duration = .seconds(30)
    /// On shutdown, streams close spread over this window.
    public var drain: Duration = .seconds(5)
    /// Secret of signed join tokens (HMAC-SHA256).
    public var secret: String?
    /// Globs of rooms that accept only valid join tokens.
    public var privateRooms: [String] = []
    /// Bearer token that `/api/rooms`, `/api/stats` and `/api/history` require when set.
    public var adminToken: String?
    /// Rooms that keep an hour of history for `/api/history` (the site always does).
    public var historyRooms: Int = 1000
    /// The shortest spacing of two registry ticks (grace expiry, coalesced flushes): ticks are scheduled
    /// for the registry's next deadline, never closer together than this.
    public var tickInterval: Duration = .milliseconds(10)
    public var logLevel: Logger.Level = .info
    /// A connection that has not completed its first request head (TLS handshake included) within this
    /// time is closed; so is a request whose body is not complete this long after its head.
    public var firstRequestTimeout: Duration = .seconds(10)
    /// Keep-alive connections with no request in flight this long are closed (streams never are).
    public var idleTimeout: Duration = .seconds(75)

    /// HTTPS with HTTP/2 (and HTTP/1.1 by ALPN): PEM certificate chain and private key files.
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Cluster: PostgreSQL URL of the backplane; nil runs the embedded in-memory default.
    public var postgresURL: String?
    /// Cluster: lease of a node's registration; renewed every third of it.
    public var nodeTTL: Duration = .seconds(10)
    /// Cluster: rooms with up to this many visitors count distinct visitors exactly across nodes; above
    /// it, nodes merge HyperLogLog sketches.
    public var exactVisitors: Int = 1000
    /// Cluster: how often a node re-reads every contribution from the tables (repairs lost notifications).
    public var resyncInterval: Duration = .seconds(5)

    public init() {}

    /// The presence model's part of the configuration.
    public func presence(startWallTime: Double) -> PresenceConfiguration {
        PresenceConfiguration(
            leaveGrace: leaveGrace,
            updateInterval: updateInterval,
            maxRooms: maxRooms,
            startWallTime: startWallTime,
            initialSequence: UInt64(max(0, startWallTime) * 1_000_000)
        )
    }
}

extension HeadcountConfiguration {
    /// Whether this build can join a cluster (`--postgres`).
    public static let clusterAvailable = true

    /// Whether `text` is an IP address or CIDR accepted by `--trusted-proxy`.
    public static func isValidProxy(_ text: String) -> Bool { IPRange(text) != nil }
}

/// Name checks re-exported for the command line.
public func roomProblem(_ name: String) -> String? { Names.roomProblem(name) }
public func visitorProblem(_ id: String) -> String? { Names.visitorProblem(id) }
