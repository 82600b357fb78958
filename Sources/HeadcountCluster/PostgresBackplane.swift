public import HeadcountCore
import Logging
import PostgresNIO
import Synchronization

/// The cluster backplane: nodes share per-room contributions through PostgreSQL tables, announce changes
/// with LISTEN/NOTIFY, and each node merges the live contributions into global figures.
///
/// Create it with `PostgresBackplane.start(configuration:logger:)` (connects, creates the tables, and fails
/// with a clear error within a bounded time), hand it to the `PresenceRegistry`, call `attach(_:)` with the
/// registry, and run it as a `Service` (it keeps the node registered, publishes, listens, resyncs, and
/// reconnects with backoff when the database goes away).
public final class PostgresBackplane: Backplane {
    public let configuration: ClusterConfiguration
    public let nodeID: String
    public let url: PostgresURL
    let connectionConfiguration: PostgresConnection.Configuration
    /// One thread of its own for the database connection: a fan-out of thousands of events on the HTTP
    /// event loops never delays a lease renewal or a notification.
    let eventLoopGroup: MultiThreadedEventLoopGroup
    let hasher: VisitorHasher
    let logger: Logger
    let time: any TimeSource
    let state: Mutex<ClusterState>
    let degradedFlag = Atomic<Bool>(true)
    let registryRef = Mutex<RegistryRef>(RegistryRef())
    /// The connection opened at start-up, handed to the first session.
    let initialConnection: Mutex<PostgresConnection?>
    /// The connection of the running session (for the withdrawal at shutdown).
    let current = Mutex<ClusterLink?>(nil)
    /// Wakes the current session's publisher and fetcher.
    let wakeups = Mutex<Wakeups>(Wakeups())
    let statistics = Mutex<Statistics>(Statistics())

    struct RegistryRef {
        weak var registry: PresenceRegistry?
    }

    struct Wakeups {
        var publisher: AsyncStream<Void>.Continuation?
        var fetcher: AsyncStream<Void>.Continuation?
    }

    /// What this node sent, for docs/BENCHMARKS.md and the logs.
    public struct Statistics: Sendable, Hashable {
        public var statements = 0
        public var notificationsSent = 0
        public var notificationsReceived = 0
        public var rowsFetched = 0
        public var reconnects = 0
    }

    init(
        configuration: ClusterConfiguration,
        url: PostgresURL,
        connectionConfiguration: PostgresConnection.Configuration,
        eventLoopGroup: MultiThreadedEventLoopGroup,
        nodeID: String,
        hasher: VisitorHasher,
        connection: PostgresConnection?,
        logger: Logger,
        time: any TimeSource
    ) {
        self.configuration = configuration
        self.url = url
        self.connectionConfiguration = connectionConfiguration
        self.eventLoopGroup = eventLoopGroup
        self.nodeID = nodeID
        self.hasher = hasher
        self.initialConnection = Mutex(connection)
        var logger = logger
        logger[metadataKey: "headcount.node.id"] = "\(nodeID)"
        self.logger = logger
        self.time = time
        var initial = ClusterState(
            nodeID: nodeID,
            exactLimit: configuration.exactVisitors,
            provisionalLease: configuration.nodeTTL,
            precision: configuration.sketchPrecision
        )
        initial.expiryMargin = configuration.sweepInterval + .milliseconds(50)
        self.state = Mutex(initial)
    }

    /// Connects the backplane to the registry it serves: remote changes are fanned out through it.
    public func attach(_ registry: PresenceRegistry) {
        registryRef.withLock { $0.registry = registry }
    }

    var registry: PresenceRegistry? { registryRef.withLock { $0.registry } }

    /// Counters of what this node sent and received.
    public var stats: Statistics { statistics.withLock { $0 } }

    // MARK: Backplane

    public var needsLocalState: Bool { true }

    public func publish(room: String, local: LocalRoomState) {
        let hashes = hasher.hashes(local.visitors)
        let changed = state.withLock { $0.recordLocal(room: room, connections: local.connections, hashes: hashes) }
        if changed {
            wakeups.withLock { _ = $0.publisher?.yield() }
        }
    }

    public func merge(room: String, local: RoomCounts) -> RoomCounts {
        state.withLock { $0.mergeRoom(local) }
    }

    public func mergeSite(local: SiteCounts) -> SiteCounts {
        state.withLock { $0.mergeSite(local) }
    }

    public func knownRooms(local: [RoomCounts]) -> [RoomCounts] {
        state.withLock { $0.knownRooms(local) }
    }

    public var isDegraded: Bool { degradedFlag.load(ordering: .relaxed) }

    // MARK: Telling the registry

    /// Makes the registry fan out the new figures of `rooms` (and the site totals), coalesced as usual.
    /// Call outside the state lock.
    func announce(_ rooms: some Sequence<String>, site: Bool = true) {
        guard let registry else { return }
        var any = false
        for room in Set(rooms) {
            registry.markChanged(room: room)
            any = true
        }
        if any || site { registry.markSiteChanged() }
    }

    /// Switches between healthy and degraded; every subscriber learns of it (`partial`).
    func setDegraded(_ degraded: Bool) {
        let was = degradedFlag.exchange(degraded, ordering: .relaxed)
        state.withLock { $0.degraded = degraded }
        guard was != degraded else { return }
        if degraded {
            logger.warning("PostgreSQL out of reach: serving local counts (partial) until it is back")
        } else {
            logger.info("cluster backplane connected", metadata: ["headcount.postgres": "\(url.redacted)"])
        }
        guard let registry else { return }
        announce(registry.localRoomNames())
    }

    func count(_ update: (inout Statistics) -> Void) {
        statistics.withLock { update(&$0) }
    }
}
