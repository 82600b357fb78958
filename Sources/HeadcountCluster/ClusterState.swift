import HeadcountCore

/// The cluster as one node sees it: what this node has published and the live contributions of the other
/// nodes, with the merge rules that turn them into global figures.
///
/// Pure state: no I/O, no clock, no lock. `PostgresBackplane` keeps it under a `Mutex`; the tests drive it
/// directly with a fake "remote" side. Every method that changes what subscribers should see returns the
/// rooms concerned, so that the caller can tell the registry (outside the lock).
public struct ClusterState: Sendable {
    public let nodeID: String
    /// Rooms with up to this many visitors on a node are shared as exact hashed sets.
    public let exactLimit: Int
    /// Lease of a node first heard of through a notification, until a lease poll tells the real one.
    public let provisionalLease: Duration
    public let precision: Int
    /// A node is dropped this long before its lease runs out by the database's clock, so that with the
    /// sweep's own delay it is gone within the TTL of its last renewal.
    public var expiryMargin: Duration = .milliseconds(150)

    // MARK: Local side

    struct LocalEntry {
        var version: UInt64
        var connections: Int
        var hashes: Set<UInt64>
        var sketch: HyperLogLog?
    }
    var local: [String: LocalEntry] = [:]
    /// Hashed visitor → number of local rooms where it is counted.
    var localSite: [UInt64: Int] = [:]
    var localSiteSketch: HyperLogLog?
    /// Increases with every local change (keys the cached site figures).
    var localSiteGeneration: UInt64 = 0
    /// Local rooms above `exactLimit`.
    var largeLocalRooms = 0
    /// This node's sequence of changes (versions of its contributions).
    public private(set) var localSequence: UInt64 = 0
    /// Rooms changed locally and not yet written to the database.
    var pending: Set<String> = []

    // MARK: Remote side

    struct RemoteEntry {
        var version: UInt64
        /// nil: a tombstone (the room was emptied on that node), kept so that a late, older row is ignored.
        var contribution: Contribution?
        /// `applySequence` when this entry was written (see `reconcile`).
        var appliedAt: UInt64
    }
    struct RemoteNode {
        var deadline: ContinuousClock.Instant
        var rooms: [String: RemoteEntry] = [:]
        var lastApplied: UInt64
    }
    var nodes: [String: RemoteNode] = [:]
    /// Nodes that withdrew cleanly; per-boot ids never come back.
    var departed: Set<String> = []
    /// Increases with every remote entry written.
    public private(set) var applySequence: UInt64 = 0

    /// Rows to read from the database: single rooms, and whole nodes after a `hello`.
    var fetchRooms: Set<RoomKey> = []
    var fetchNodes: Set<String> = []

    struct RemoteRoom {
        var connections = 0
        var sumVisitors = 0
        var maxVisitors = 0
        var exact: Set<UInt64> = []
        var sketches: [HyperLogLog] = []
        var union: HyperLogLog?
        /// The visitor figure last computed against this node's local state `local` (its version, or the
        /// local site generation): merges run on every join and snapshot, the state changes far less often.
        var visitorsFor: (local: UInt64, value: Int)?
    }
    var roomCache: [String: RemoteRoom] = [:]
    var siteCache: RemoteSite?
    struct RemoteSite {
        var room = RemoteRoom()
        var occupiedRooms: Set<String> = []
    }

    /// True while the database is out of reach: merged figures are marked `partial`.
    public var degraded = true

    public init(nodeID: String, exactLimit: Int, provisionalLease: Duration, precision: Int = HyperLogLog.defaultPrecision) {
        self.nodeID = nodeID
        self.exactLimit = exactLimit
        self.provisionalLease = provisionalLease
        self.precision = precision
    }

    public struct RoomKey: Sendable, Hashable {
        public var node: String
        public var room: String
        public init(node: String, room: String) {
            self.node = node
            self.room = room
        }
    }

    // MARK: Local changes

    /// Records this node's figures of a room. Returns false when nothing changed (the registry also
    /// publishes after remote-triggered flushes, with the same local state).
    public mutating func recordLocal(room: String, connections: Int, hashes: Set<UInt64>) -> Bool {
        let existing = local[room]
        if connections == 0 && hashes.isEmpty {
            guard let existing else { return false }
            for h in existing.hashes { removeLocalSite(h) }
            if existing.hashes.count > exactLimit { largeLocalRooms -= 1 }
            local[room] = nil
            localSequence += 1
        } else {
            if let existing, existing.connections == connections, existing.hashes == hashes { return false }
            if let existing {
                for h in existing.hashes where !hashes.contains(h) { removeLocalSite(h) }
                for h in hashes where !existing.hashes.contains(h) { localSite[h, default: 0] += 1 }
                if existing.hashes.count > exactLimit { largeLocalRooms -= 1 }
            } else {
                for h in hashes { localSite[h, default: 0] += 1 }
            }
            if hashes.count > exactLimit { largeLocalRooms += 1 }
            localSequence += 1
            local[room] = LocalEntry(version: localSequence, connections: connections, hashes: hashes, sketch: nil)
        }
        localSiteSketch = nil
        localSiteGeneration += 1
        pending.insert(room)
        return true
    }

    private mutating func removeLocalSite(_ h: UInt64) {
        if let n = localSite[h] {
            if n <= 1 { localSite.removeValue(forKey: h) } else { localSite[h] = n - 1 }
        }
    }

    /// A change to write: a room's contribution, or its removal.
    public enum Publication: Sendable, Hashable {
        case upsert(room: String, Contribution)
        case remove(room: String, version: UInt64)
        public var room: String {
            switch self {
            case .upsert(let room, _), .remove(let room, _): room
            }
        }
    }

    /// Takes the rooms changed since the last call, with their latest contributions.
    public mutating func takePending() -> [Publication] {
        guard !pending.isEmpty else { return [] }
        let rooms = pending
        pending = []
        return rooms.sorted().map { publication(room: $0) }
    }

    /// Every local room, for a node that (re)joins: its rows are rewritten whole.
    public mutating func takeAll() -> [Publication] {
        pending = []
        return local.keys.sorted().map { publication(room: $0) }
    }

    var hasPending: Bool { !pending.isEmpty }

    private mutating func publication(room: String) -> Publication {
        guard let entry = local[room] else { return .remove(room: room, version: localSequence) }
        let payload: Contribution.Payload = entry.hashes.count <= exactLimit ? .exact(entry.hashes.sorted()) : .sketch(localSketch(room))
        return .upsert(
            room: room,
            Contribution(version: entry.version, connections: entry.connections, visitors: entry.hashes.count, payload: payload)
        )
    }

    mutating func localSketch(_ room: String) -> HyperLogLog {
        if let sketch = local[room]?.sketch { return sketch }
        let sketch = HyperLogLog(hashes: local[room]?.hashes ?? [], precision: precision)
        if local[room] != nil { local[room]!.sketch = sketch }
        return sketch
    }

    // MARK: Remote changes

    /// Applies another node's contribution (nil: the room was emptied there) unless an equal or newer
    /// version is known. Returns whether the figures changed.
    @discardableResult
    public mutating func apply(node: String, room: String, version: UInt64, contribution: Contribution?, now: ContinuousClock.Instant) -> Bool {
        guard node != nodeID, !departed.contains(node) else { return false }
        if let existing = nodes[node]?.rooms[room], existing.version >= version { return false }
        applySequence += 1
        var n = nodes[node] ?? RemoteNode(deadline: now + provisionalLease, lastApplied: applySequence)
        let wasLive = n.rooms[room]?.contribution != nil
        n.rooms[room] = RemoteEntry(version: version, contribution: contribution, appliedAt: applySequence)
        n.lastApplied = applySequence
        nodes[node] = n
        fetchRooms.remove(RoomKey(node: node, room: room))
        guard wasLive || contribution != nil else { return false }
        invalidate(room)
        return true
    }

    /// Applies one notification message. Returns the rooms whose figures changed; rows to read are queued.
    public mutating func receive(_ message: ClusterMessage, now: ContinuousClock.Instant) -> [String] {
        guard message.node != nodeID else { return [] }
        switch message {
        case .contribution(let node, let room, let c):
            return apply(node: node, room: room, version: c.version, contribution: c, now: now) ? [room] : []
        case .changed(let node, let room, let version):
            if departed.contains(node) { return [] }
            if let existing = nodes[node]?.rooms[room], existing.version >= version { return [] }
            fetchRooms.insert(RoomKey(node: node, room: room))
            return []
        case .removed(let node, let room, let version):
            return apply(node: node, room: room, version: version, contribution: nil, now: now) ? [room] : []
        case .hello(let node):
            if !departed.contains(node) { fetchNodes.insert(node) }
            return []
        case .bye(let node):
            departed.insert(node)
            return removeNode(node)
        }
    }

    /// Forgets a node and everything it contributed. Returns the rooms concerned.
    public mutating func removeNode(_ node: String) -> [String] {
        guard let n = nodes.removeValue(forKey: node) else { return [] }
        fetchNodes.remove(node)
        fetchRooms = fetchRooms.filter { $0.node != node }
        let rooms = n.rooms.compactMap { $0.value.contribution == nil ? nil : $0.key }
        for room in rooms { invalidate(room) }
        if !rooms.isEmpty { siteCache = nil }
        return rooms
    }

    /// Lease poll: `leases` lists every registered node other than this one with the seconds left on its
    /// lease (negative: expired). Nodes expired or missing are forgotten, unless something of theirs was
    /// applied after the poll began (`mark` = `applySequence` then). Returns the rooms concerned.
    public mutating func updateLeases(_ leases: [(node: String, remaining: Double)], mark: UInt64, now: ContinuousClock.Instant) -> [String] {
        var listed: [String: Double] = [:]
        for (node, remaining) in leases where node != nodeID { listed[node] = remaining }
        var changed: [String] = []
        for (node, n) in nodes {
            let remaining = listed[node]
            if let remaining, remaining > 0 {
                nodes[node]!.deadline = now + .milliseconds(Int64(remaining * 1000)) - expiryMargin
            } else if n.lastApplied <= mark {
                changed += removeNode(node)
            }
        }
        for (node, remaining) in listed where nodes[node] == nil && remaining > 0 && !departed.contains(node) {
            nodes[node] = RemoteNode(deadline: now + .milliseconds(Int64(remaining * 1000)) - expiryMargin, lastApplied: 0)
        }
        return changed
    }

    /// Forgets nodes whose lease ran out. Returns the rooms concerned.
    public mutating func expire(now: ContinuousClock.Instant) -> [String] {
        var changed: [String] = []
        for (node, n) in nodes where n.deadline <= now {
            changed += removeNode(node)
        }
        return changed
    }

    /// Resync: `rows` is every row of the live nodes (other than this one) as the database holds it now;
    /// `mark` is `applySequence` when the query began. Entries the database no longer has are dropped
    /// (unless applied after the query began); rows newer than what is known are returned to be read.
    /// When `onlyNode` is set, only that node's entries are reconciled (after its `hello`).
    public mutating func reconcile(
        rows: [(node: String, room: String, version: UInt64)],
        mark: UInt64,
        onlyNode: String? = nil
    ) -> (fetch: [RoomKey], changed: [String]) {
        var listed: [String: [String: UInt64]] = [:]
        for row in rows where row.node != nodeID && !departed.contains(row.node) { listed[row.node, default: [:]][row.room] = row.version }
        var fetch: [RoomKey] = []
        for (node, rooms) in listed {
            for (room, version) in rooms {
                if let known = nodes[node]?.rooms[room], known.version >= version { continue }
                fetch.append(RoomKey(node: node, room: room))
            }
        }
        var changed: [String] = []
        for (node, n) in nodes where onlyNode == nil || onlyNode == node {
            for (room, entry) in n.rooms where entry.appliedAt <= mark && listed[node]?[room] == nil {
                nodes[node]!.rooms[room] = nil
                if entry.contribution != nil {
                    invalidate(room)
                    changed.append(room)
                }
            }
        }
        return (fetch.sorted { ($0.node, $0.room) < ($1.node, $1.room) }, changed)
    }

    /// Takes the queued reads: single rooms and whole nodes.
    public mutating func takeFetches() -> (rooms: [RoomKey], nodes: [String]) {
        let result = (Array(fetchRooms), Array(fetchNodes))
        fetchRooms = []
        fetchNodes = []
        return result
    }

    var hasFetches: Bool { !fetchRooms.isEmpty || !fetchNodes.isEmpty }

    /// Names of the other nodes this node currently counts.
    public var liveNodes: [String] { nodes.keys.sorted() }

    private mutating func invalidate(_ room: String) {
        roomCache[room] = nil
        siteCache = nil
    }
}
