import HeadcountCore
import PropertyBased
import Testing

/// Random sequences of joins, leaves, clock moves and ticks, checked step by step against a plainly
/// written model of the presence rules.
@Suite struct PropertyTests {
    static let rooms = ["r0", "r1", "r2"]
    static let visitors = ["alice", "bob", "carol", "dave"]
    static let updateIntervalMs = 100

    enum JoinKind: Sendable, Equatable {
        case identified(legacy: Bool)
        case ephemeral(legacy: Bool)
        case watcher(legacy: Bool)
        case site
    }

    enum Op: Sendable, CustomStringConvertible {
        case join(room: Int, visitor: Int, kind: JoinKind)
        case leave(pick: Int)
        case advance(ms: Int)
        case tick
        /// Two ticks one coalescing interval apart, after which every subscriber must hold the true counts.
        case checkpoint

        var description: String {
            switch self {
            case .join(let r, let v, let k): "join(\(PropertyTests.rooms[r]), \(PropertyTests.visitors[v]), \(k))"
            case .leave(let pick): "leave(#\(pick))"
            case .advance(let ms): "advance(\(ms)ms)"
            case .tick: "tick"
            case .checkpoint: "checkpoint"
            }
        }
    }

    static let operation = zip(
        Gen.int(in: 0...19), Gen.int(in: 0...2), Gen.int(in: 0...3), Gen.int(in: 0...7), Gen.int(in: 0...3_500)
    ).map { t -> Op in
        let (code, room, visitor, kind, amount) = t
        switch code {
        case 0...6:
            let joinKind: JoinKind =
                switch kind {
                case 0, 1: .identified(legacy: false)
                case 2: .identified(legacy: true)
                case 3: .ephemeral(legacy: false)
                case 4: .ephemeral(legacy: true)
                case 5: .watcher(legacy: false)
                case 6: .watcher(legacy: true)
                default: .site
                }
            return .join(room: room, visitor: visitor, kind: joinKind)
        case 7...11: return .leave(pick: amount)
        case 12...13: return .advance(ms: amount % 150)
        case 14: return .advance(ms: amount)
        case 15...17: return .tick
        default: return .checkpoint
        }
    }

    static let program = operation.array(of: 1...120)

    @Test(arguments: [3_000, 250, 0])
    func registryMatchesTheModel(graceMs: Int) async {
        await propertyCheck(count: 150, input: Self.program) { ops in
            var run = ModelRun(graceMs: graceMs)
            for (step, op) in ops.enumerated() {
                run.apply(op, step: step)
            }
            run.finish()
        }
    }

    @Test func aLongFixedProgramWithEveryKindOfOperation() {
        // Deterministic: a long program from a fixed generator, so this runs the same on every machine.
        var rng = SplitMix64(seed: 2024)
        var run = ModelRun(graceMs: 700)
        for step in 0..<2_000 {
            let r = Int(rng.next() % 3)
            let v = Int(rng.next() % 4)
            let op: Op =
                switch rng.next() % 12 {
                case 0, 1: .join(room: r, visitor: v, kind: .identified(legacy: rng.next() % 4 == 0))
                case 2: .join(room: r, visitor: v, kind: .ephemeral(legacy: false))
                case 3: .join(room: r, visitor: v, kind: rng.next() % 2 == 0 ? .watcher(legacy: false) : .site)
                case 4, 5, 6, 7: .leave(pick: Int(rng.next() % 1_000))
                case 8: .advance(ms: Int(rng.next() % 120))
                case 9: .advance(ms: Int(rng.next() % 1_500))
                case 10: .tick
                default: rng.next() % 4 == 0 ? .checkpoint : .tick
                }
            run.apply(op, step: step)
        }
        run.finish()
    }
}

/// The presence rules, written as plainly as possible.
struct PresenceModel {
    let graceMs: Int
    var nowMs = 0
    /// room → visitor → open streams (only visitors with at least one).
    var streams: [String: [String: Int]] = [:]
    /// room → visitor → grace deadline in ms (only visitors without streams).
    var graces: [String: [String: Int]] = [:]
    var peakOnline = 0

    func onlineVisitors(_ room: String) -> Set<String> {
        Set(streams[room, default: [:]].keys).union(graces[room, default: [:]].keys)
    }
    func online(_ room: String) -> Int { onlineVisitors(room).count }
    func connections(_ room: String) -> Int { streams[room, default: [:]].values.reduce(0, +) }
    var siteOnline: Int { PropertyTests.rooms.reduce(into: Set<String>()) { $0.formUnion(onlineVisitors($1)) }.count }
    var siteConnections: Int { PropertyTests.rooms.map(connections).reduce(0, +) }
    var occupiedRooms: Int { PropertyTests.rooms.filter { online($0) > 0 }.count }

    mutating func join(room: String, visitor: String) {
        streams[room, default: [:]][visitor, default: 0] += 1
        graces[room]?[visitor] = nil
        peakOnline = max(peakOnline, siteOnline)
    }

    mutating func leave(room: String, visitor: String, identified: Bool) {
        let left = streams[room]![visitor]! - 1
        if left > 0 {
            streams[room]![visitor] = left
        } else {
            streams[room]![visitor] = nil
            if identified && graceMs > 0 { graces[room, default: [:]][visitor] = nowMs + graceMs }
        }
    }

    /// Removes expired graces; returns the rooms that lost someone.
    mutating func tick() -> Set<String> {
        var changed = Set<String>()
        for (room, entries) in graces {
            for (visitor, deadline) in entries where deadline <= nowMs {
                graces[room]![visitor] = nil
                changed.insert(room)
            }
        }
        return changed
    }
}

/// One run of a program against a registry and the model side by side.
struct ModelRun {
    struct Open {
        let sub: Subscription
        let sink: TestSink
        let room: String?
        let visitor: String?
        let identified: Bool
        let legacy: Bool
    }

    let h: Harness
    var model: PresenceModel
    var open: [Open] = []
    var ephemeralCounter = 0
    var lastVersion: [String: UInt64] = [:]
    var maxVersion: [String: UInt64] = [:]
    var existedBefore: Set<String> = []
    var trace: [String] = []

    init(graceMs: Int) {
        h = Harness(leaveGrace: .milliseconds(graceMs), updateInterval: .milliseconds(PropertyTests.updateIntervalMs))
        model = PresenceModel(graceMs: graceMs)
        for room in PropertyTests.rooms {
            lastVersion[room] = 0
            maxVersion[room] = 0
        }
    }

    var context: Comment { "after \(trace.suffix(12).joined(separator: "; "))" }

    mutating func apply(_ op: PropertyTests.Op, step: Int) {
        trace.append("\(step): \(op)")
        var changedRooms = Set<String>()
        switch op {
        case .join(let r, let v, let kind):
            let room = PropertyTests.rooms[r]
            let sink = TestSink()
            let visitor: VisitorIdentity?
            let legacy: Bool
            switch kind {
            case .identified(let l):
                visitor = .identified(PropertyTests.visitors[v])
                legacy = l
            case .ephemeral(let l):
                ephemeralCounter += 1
                visitor = .ephemeral("eph-\(ephemeralCounter)")
                legacy = l
            case .watcher(let l):
                visitor = nil
                legacy = l
            case .site:
                visitor = nil
                legacy = false
            }
            let target: SubscriptionTarget = kind == .site ? .site : .room(room, legacy ? .legacy : .room)
            guard let sub = try? h.registry.join(target, visitor: visitor, sink: sink) else {
                Issue.record("join refused \(context)")
                return
            }
            #expect(sink.rawCount >= 1, "a joiner gets its first event before join returns \(context)")
            if kind == .site {
                let first = sink.events.first?.parsed
                #expect(first?.online == model.siteOnline, "site joiner's first event \(context)")
                open.append(Open(sub: sub, sink: sink, room: nil, visitor: nil, identified: false, legacy: false))
            } else {
                if let visitor {
                    model.join(room: room, visitor: visitor.id)
                    changedRooms.insert(room)
                }
                let first = sink.events.first?.parsed
                if legacy {
                    #expect(first?.onlineUsers == model.online(room), "joiner's own count \(context)")
                } else {
                    #expect(first?.room == room)
                    #expect(first?.online == model.online(room), "joiner's own count \(context)")
                    #expect(first?.connections == model.connections(room), "joiner's own count \(context)")
                }
                let isIdentified = if case .identified = visitor { true } else { false }
                open.append(Open(sub: sub, sink: sink, room: room, visitor: visitor?.id, identified: isIdentified, legacy: legacy))
            }
        case .leave(let pick):
            guard !open.isEmpty else { break }
            let leaving = open.remove(at: pick % open.count)
            h.registry.leave(leaving.sub)
            if let room = leaving.room, let visitor = leaving.visitor {
                model.leave(room: room, visitor: visitor, identified: leaving.identified)
                changedRooms.insert(room)
            }
            // Leaving twice changes nothing.
            let before = leaving.room.map { h.registry.localCounts(room: $0) }
            h.registry.leave(leaving.sub)
            #expect(leaving.room.map { h.registry.localCounts(room: $0) } == before, "second leave \(context)")
        case .advance(let ms):
            h.advance(.milliseconds(ms))
            model.nowMs += ms
        case .tick:
            h.tick()
            changedRooms = model.tick()
        case .checkpoint:
            let interval = PropertyTests.updateIntervalMs
            h.advanceAndTick(.milliseconds(interval))
            model.nowMs += interval
            changedRooms = model.tick()
            h.advanceAndTick(.milliseconds(interval))
            model.nowMs += interval
            let lateExpiries = model.tick()
            changedRooms.formUnion(lateExpiries)
            // Two graces ending in the second tick may leave one change held: only check when none ended.
            if lateExpiries.isEmpty { checkSinksHoldTheTruth("checkpoint") }
        }
        checkCounts(changedRooms: changedRooms)
    }

    mutating func checkCounts(changedRooms: Set<String>) {
        let existing = Set(h.registry.localRoomNames())
        defer { existedBefore = existing }
        #expect(h.registry.roomCount == existing.count)
        for room in PropertyTests.rooms {
            let counts = h.registry.localCounts(room: room)
            #expect(counts.room == room)
            #expect(counts.online == model.online(room), "online of \(room) \(context)")
            #expect(counts.connections == model.connections(room), "connections of \(room) \(context)")
            #expect(h.registry.counts(room: room) == counts, "LocalBackplane adds nothing")
            #expect(counts.peak >= counts.online)
            // A room that was collected reads as version 0; its next change must still go above every
            // version it had before.
            if existing.contains(room) {
                if changedRooms.contains(room) {
                    #expect(counts.version > maxVersion[room]!, "every change of \(room) raises its version \(context)")
                } else if existedBefore.contains(room) {
                    #expect(counts.version == lastVersion[room]!, "no change, no new version for \(room) \(context)")
                } else {
                    // Re-created by a watcher, without a change. Its version should not fall below the ones
                    // already issued; that rule has its own tests in VersionTests (a fresh room currently
                    // starts at 0), so both are accepted here.
                    #expect(counts.version == 0 || counts.version >= maxVersion[room]!, "re-created \(room) \(context)")
                }
            } else {
                #expect(counts.version == 0)
            }
            lastVersion[room] = counts.version
            maxVersion[room] = max(maxVersion[room]!, counts.version)
        }
        let site = h.registry.siteCounts()
        #expect(site.online == model.siteOnline, "site online \(context)")
        #expect(site.connections == model.siteConnections, "site connections \(context)")
        #expect(site.rooms == model.occupiedRooms, "site rooms \(context)")
        #expect(h.registry.subscriberCount == open.count, "subscribers \(context)")
        #expect(h.registry.allSubscriptions().count == open.count)
        let stats = h.registry.stats()
        #expect(stats.peakOnline == model.peakOnline, "peak \(context)")
        #expect(stats.subscribers == open.count)

        let needed = Set(open.compactMap(\.room)).union(PropertyTests.rooms.filter { model.online($0) > 0 })
        #expect(h.registry.roomCount >= needed.count, "a room with subscribers or visitors exists \(context)")
        #expect(h.registry.roomCount <= PropertyTests.rooms.count)

        let expectedBusiest = PropertyTests.rooms
            .filter { model.online($0) > 0 || model.connections($0) > 0 }
            .map { (room: $0, online: model.online($0), connections: model.connections($0)) }
            .sorted { a, b in
                if a.online != b.online { return a.online > b.online }
                if a.connections != b.connections { return a.connections > b.connections }
                return a.room < b.room
            }
        let busiest = h.registry.busiestRooms(limit: 10)
        #expect(busiest.map(\.room) == expectedBusiest.map(\.room), "busiest \(context)")
        #expect(busiest.map(\.online) == expectedBusiest.map(\.online))
        #expect(busiest.map(\.connections) == expectedBusiest.map(\.connections))
    }

    /// Every open subscriber's newest event shows the true figures, with the current version.
    func checkSinksHoldTheTruth(_ when: String, checkEveryEvent: Bool = false) {
        let site = h.registry.siteCounts()
        for o in open {
            guard let last = o.sink.last else {
                Issue.record("subscriber without any event (\(when)) \(context)")
                continue
            }
            let parsed = last.parsed
            if let room = o.room {
                let counts = h.registry.localCounts(room: room)
                #expect(last.version == counts.version, "stale event for \(room) (\(when)): \(last) vs \(counts) \(context)")
                if o.legacy {
                    #expect(last.text == legacyEventText(online: model.online(room)), "stale legacy event (\(when)) \(context)")
                } else {
                    #expect(
                        last.text == roomEventText(id: counts.version, room: room, online: model.online(room), connections: model.connections(room)),
                        "stale room event (\(when)): \(parsed) \(context)")
                }
            } else {
                #expect(
                    last.text == siteEventText(id: site.version, online: model.siteOnline, connections: model.siteConnections, rooms: model.occupiedRooms),
                    "stale site event (\(when)): \(parsed) \(context)")
            }
            // Every delivered event belongs to the subscription's own stream.
            for event in checkEveryEvent ? o.sink.rawEvents : [] {
                if let room = o.room {
                    if o.legacy {
                        #expect(event.parsed.onlineUsers != nil && event.parsed.id == nil)
                    } else {
                        #expect(event.parsed.room == room && event.parsed.id == event.version)
                    }
                } else {
                    #expect(event.parsed.rooms != nil && event.parsed.id == event.version)
                }
            }
        }
    }

    mutating func finish() {
        // Let every grace run out and every held change go out.
        let graceAndMore = model.graceMs + 1_000
        h.advanceAndTick(.milliseconds(graceAndMore))
        model.nowMs += graceAndMore
        var changed = model.tick()
        h.advanceAndTick(.seconds(1))
        model.nowMs += 1_000
        changed.formUnion(model.tick())
        trace.append("settle")
        checkCounts(changedRooms: changed)
        checkSinksHoldTheTruth("final", checkEveryEvent: true)

        // Everyone leaves; after the grace nothing is left.
        for o in open { h.registry.leave(o.sub) }
        open.removeAll()
        h.advanceAndTick(.milliseconds(graceAndMore))
        h.advanceAndTick(.seconds(1))
        for room in PropertyTests.rooms {
            let counts = h.registry.localCounts(room: room)
            #expect(counts.online == 0 && counts.connections == 0, "\(room) not empty at the end: \(counts) \(context)")
        }
        let site = h.registry.siteCounts()
        #expect(site.online == 0 && site.connections == 0 && site.rooms == 0, "site not empty at the end: \(site) \(context)")
        #expect(h.registry.roomCount == 0, "rooms left at the end \(context)")
        #expect(h.registry.subscriberCount == 0)
        #expect(h.registry.busiestRooms(limit: 10).isEmpty)
        #expect(!h.registry.hasPendingWork)
    }
}
