/// Tunables of a cluster node. The defaults are named here and in the README.
public struct ClusterConfiguration: Sendable {
    public static let defaultNodeTTL: Duration = .seconds(10)
    public static let defaultExactVisitors = 1000
    public static let defaultResyncInterval: Duration = .seconds(5)

    /// `postgres://user:password@host:port/database?sslmode=...`
    public var postgresURL: String
    /// Lease of this node's registration: renewed every third of it; a node that stops renewing (SIGKILL)
    /// leaves every other node's counts when it runs out.
    public var nodeTTL: Duration
    /// Rooms with up to this many visitors on a node are shared as exact hashed sets; larger ones as sketches.
    public var exactVisitors: Int
    /// How often every contribution is re-read from the tables (repairs lost notifications).
    public var resyncInterval: Duration
    /// Longest wait for a connection (TCP, TLS and authentication).
    public var connectTimeout: Duration
    /// Longest wait for one statement; past it the connection is considered dead and replaced.
    public var statementTimeout: Duration
    /// Reconnection backoff: first delay, doubled per failure up to the maximum (with ±20 % jitter).
    public var reconnectMinimum: Duration
    public var reconnectMaximum: Duration
    /// How often leases are checked against the local clock.
    public var sweepInterval: Duration
    /// Register count of the sketches, as a power of two.
    public var sketchPrecision: Int
    /// Free text stored with the node's registration (host, pid, port), for operators.
    public var nodeInfo: String

    public init(
        postgresURL: String,
        nodeTTL: Duration = ClusterConfiguration.defaultNodeTTL,
        exactVisitors: Int = ClusterConfiguration.defaultExactVisitors,
        resyncInterval: Duration = ClusterConfiguration.defaultResyncInterval,
        connectTimeout: Duration = .seconds(5),
        statementTimeout: Duration = .seconds(5),
        reconnectMinimum: Duration = .milliseconds(100),
        reconnectMaximum: Duration = .seconds(5),
        sweepInterval: Duration = .milliseconds(100),
        sketchPrecision: Int = HyperLogLog.defaultPrecision,
        nodeInfo: String = ""
    ) {
        self.postgresURL = postgresURL
        self.nodeTTL = nodeTTL
        self.exactVisitors = exactVisitors
        self.resyncInterval = resyncInterval
        self.connectTimeout = connectTimeout
        self.statementTimeout = statementTimeout
        self.reconnectMinimum = reconnectMinimum
        self.reconnectMaximum = reconnectMaximum
        self.sweepInterval = sweepInterval
        self.sketchPrecision = sketchPrecision
        self.nodeInfo = nodeInfo
    }

    /// Interval of lease renewals (a third of the TTL).
    public var leaseRenewal: Duration { nodeTTL / 3 }

    /// The delay before reconnection attempt `failures` (1-based), without jitter.
    public func backoff(failures: Int) -> Duration {
        var delay = reconnectMinimum
        var n = 1
        while n < failures && delay < reconnectMaximum {
            delay *= 2
            n += 1
        }
        return min(delay, reconnectMaximum)
    }
}
