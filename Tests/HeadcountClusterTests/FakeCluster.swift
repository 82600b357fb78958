import HeadcountCluster
import HeadcountCore

/// An in-memory stand-in for PostgreSQL: the `headcount_rooms` table, the notification channel (which can
/// lose messages, as a listener that was away does) and the node states that use them. It runs the same
/// publish / receive / fetch / resync steps as `PostgresBackplane`, synchronously.
struct FakeCluster {
    var table: [String: [String: Contribution]] = [:]
    var states: [String: ClusterState] = [:]
    /// Ground truth per node: room → visitor id → open streams.
    var streams: [String: [String: [String: Int]]] = [:]
    var now = ContinuousClock.now
    var loseNotifications = false
    let hasher = VisitorHasher(k0: 42, k1: 4242)

    init(nodes: [String], exactLimit: Int = 1000, lease: Duration = .seconds(10)) {
        for node in nodes {
            var state = ClusterState(nodeID: node, exactLimit: exactLimit, provisionalLease: lease)
            state.degraded = false
            states[node] = state
            streams[node] = [:]
        }
    }

    // MARK: What clients do

    mutating func open(_ node: String, room: String, visitor: String) {
        streams[node]![room, default: [:]][visitor, default: 0] += 1
        changed(node, room: room)
    }

    mutating func close(_ node: String, room: String, visitor: String) {
        guard let n = streams[node]![room]?[visitor] else { return }
        streams[node]![room]![visitor] = n > 1 ? n - 1 : nil
        if streams[node]![room]!.isEmpty { streams[node]![room] = nil }
        changed(node, room: room)
    }

    mutating func changed(_ node: String, room: String) {
        let visitors = streams[node]![room] ?? [:]
        let connections = visitors.values.reduce(0, +)
        if states[node]!.recordLocal(room: room, connections: connections, hashes: hasher.hashes(Array(visitors.keys))) {
            publish(node)
        }
    }

    // MARK: What the backplane does

    mutating func publish(_ node: String) {
        var messages: [ClusterMessage] = []
        for publication in states[node]!.takePending() {
            switch publication {
            case .upsert(let room, let c):
                table[node, default: [:]][room] = c
                messages.append(.announcing(node: node, room: room, c))
            case .remove(let room, let version):
                table[node]?[room] = nil
                messages.append(.removed(node: node, room: room, version: version))
            }
        }
        deliver(ClusterMessage.pack(messages))
    }

    mutating func deliver(_ payloads: [String]) {
        guard !loseNotifications else { return }
        for payload in payloads {
            for node in states.keys {
                for message in ClusterMessage.unpack(payload) { _ = states[node]!.receive(message, now: now) }
                fetch(node)
            }
        }
    }

    mutating func fetch(_ node: String) {
        let (rooms, nodes) = states[node]!.takeFetches()
        for key in rooms {
            if let c = table[key.node]?[key.room] {
                states[node]!.apply(node: key.node, room: key.room, version: c.version, contribution: c, now: now)
            }
        }
        for other in nodes {
            let mark = states[node]!.applySequence
            let rows = (table[other] ?? [:]).map { (node: other, room: $0.key, version: $0.value.version) }
            _ = states[node]!.reconcile(rows: rows, mark: mark, onlyNode: other)
            for (room, c) in table[other] ?? [:] { states[node]!.apply(node: other, room: room, version: c.version, contribution: c, now: now) }
        }
    }

    mutating func resync(_ node: String) {
        let mark = states[node]!.applySequence
        var rows: [(node: String, room: String, version: UInt64)] = []
        for (other, rooms) in table where other != node {
            for (room, c) in rooms { rows.append((other, room, c.version)) }
        }
        let (stale, _) = states[node]!.reconcile(rows: rows, mark: mark)
        for key in stale {
            if let c = table[key.node]?[key.room] {
                states[node]!.apply(node: key.node, room: key.room, version: c.version, contribution: c, now: now)
            }
        }
    }

    mutating func resyncAll() {
        for node in states.keys.sorted() { resync(node) }
    }

    /// A node killed without a word: its rows stay until reaped, its lease is no longer renewed.
    mutating func kill(_ node: String) {
        states[node] = nil
        streams[node] = nil
    }

    // MARK: What subscribers see

    mutating func counts(_ node: String, room: String) -> RoomCounts {
        let visitors = streams[node]![room] ?? [:]
        let local = RoomCounts(room: room, online: visitors.count, connections: visitors.values.reduce(0, +))
        return states[node]!.mergeRoom(local)
    }

    mutating func site(_ node: String) -> SiteCounts {
        let rooms = streams[node]!
        var distinct = Set<String>()
        for visitors in rooms.values { distinct.formUnion(visitors.keys) }
        let local = SiteCounts(online: distinct.count, connections: rooms.values.reduce(0) { $0 + $1.values.reduce(0, +) }, rooms: rooms.count)
        return states[node]!.mergeSite(local)
    }

    /// The true global figures of a room, from every live node's streams.
    func truth(room: String) -> (online: Int, connections: Int) {
        var visitors = Set<String>()
        var connections = 0
        for (_, rooms) in streams {
            for (id, n) in rooms[room] ?? [:] {
                visitors.insert(id)
                connections += n
            }
        }
        return (visitors.count, connections)
    }

    func truthSite() -> (online: Int, connections: Int, rooms: Int) {
        var visitors = Set<String>()
        var connections = 0
        var rooms = Set<String>()
        for (_, byRoom) in streams {
            for (room, ids) in byRoom where !ids.isEmpty {
                rooms.insert(room)
                visitors.formUnion(ids.keys)
                connections += ids.values.reduce(0, +)
            }
        }
        return (visitors.count, connections, rooms.count)
    }
}
