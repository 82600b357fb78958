/// Where a node's local presence meets the rest of the cluster.
///
/// The registry keeps the local truth (streams, visitors, grace) and asks the backplane for the figures
/// it should show: the in-memory default answers the local figures; a cluster backplane adds what other
/// nodes contribute. A cluster backplane calls `PresenceRegistry.markChanged(room:)` when a remote
/// contribution changes, and the registry then fans the new global figure out, coalesced as usual.
public protocol Backplane: AnyObject, Sendable {
    /// Whether `publish(room:local:)` wants to be called; the in-memory default does not, and saves the work.
    var needsLocalState: Bool { get }
    /// The registry publishes its local figures of `room` after a change (coalesced per update interval).
    func publish(room: String, local: LocalRoomState)
    /// The figures subscribers of `room` should see, given the local ones.
    func merge(room: String, local: RoomCounts) -> RoomCounts
    /// Site totals subscribers should see, given the local ones.
    func mergeSite(local: SiteCounts) -> SiteCounts
    /// Names of rooms known anywhere in the cluster with their merged figures, for `/api/rooms`.
    func knownRooms(local: [RoomCounts]) -> [RoomCounts]
    /// Whether the backplane currently reaches the rest of the cluster. A degraded node keeps serving
    /// local counts (marked `partial`) and reports not ready.
    var isDegraded: Bool { get }
}

extension Backplane {
    public var isDegraded: Bool { false }
}

/// The local contribution of one room: what a cluster node shares with the others.
public struct LocalRoomState: Sendable {
    public var room: String
    public var connections: Int
    /// Visitor ids currently counted in this room on this node (including those in leave grace).
    public var visitors: [String]
    public init(room: String, connections: Int, visitors: [String]) {
        self.room = room
        self.connections = connections
        self.visitors = visitors
    }
}

/// The embedded default: one process, counts are the local counts.
public final class LocalBackplane: Backplane {
    public init() {}
    public var needsLocalState: Bool { false }
    public func publish(room: String, local: LocalRoomState) {}
    public func merge(room: String, local: RoomCounts) -> RoomCounts { local }
    public func mergeSite(local: SiteCounts) -> SiteCounts { local }
    public func knownRooms(local: [RoomCounts]) -> [RoomCounts] { local }
}

/// Observes the registry's fan-outs, for metrics. Called outside the registry's lock.
public protocol RegistryObserver: Sendable {
    /// One fan-out handed events to `subscribers` sinks in `duration`.
    func fanout(subscribers: Int, duration: Duration)
}
