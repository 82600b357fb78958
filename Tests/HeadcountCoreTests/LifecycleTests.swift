import HeadcountCore
import Testing

@Suite struct LifecycleTests {
    @Test func busiestRoomsAreOrderedByOnlineThenConnectionsThenName() throws {
        let h = Harness()
        for v in ["a", "b", "c"] { try h.join("three", .identified(v)) }
        for v in ["a", "b"] { try h.join("two-x", .identified(v)) }
        for v in ["a", "b"] { try h.join("two-more-conns", .identified(v)) }
        try h.join("two-more-conns", .identified("a"))
        for v in ["a", "b"] { try h.join("two-a", .identified(v)) }
        try h.join("one", .ephemeral("e"))
        try h.join("watchers-only", nil)

        let all = h.registry.busiestRooms(limit: 100)
        #expect(all.map(\.room) == ["three", "two-more-conns", "two-a", "two-x", "one"])
        #expect(all.map(\.online) == [3, 2, 2, 2, 1])
        #expect(all.map(\.connections) == [3, 3, 2, 2, 1])
        #expect(h.registry.busiestRooms(limit: 2).map(\.room) == ["three", "two-more-conns"])
        #expect(h.registry.busiestRooms(limit: 0).isEmpty)
        #expect(h.registry.busiestRooms(limit: -5).isEmpty)
    }

    @Test func busiestRoomsIncludeRoomsWhoseVisitorsAreInGrace() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (sub, _) = try h.join("r", .identified("a"))
        h.registry.leave(sub)
        #expect(h.registry.busiestRooms(limit: 10).map(\.room) == ["r"])
        h.advanceAndTick(.seconds(3))
        #expect(h.registry.busiestRooms(limit: 10).isEmpty)
    }

    @Test func countsOfAnUnknownRoomAreZeros() {
        let h = Harness()
        #expect(h.registry.counts(room: "nobody-here") == RoomCounts(room: "nobody-here"))
        #expect(h.registry.localCounts(room: "nobody-here") == RoomCounts(room: "nobody-here"))
        #expect(h.registry.roomCount == 0, "looking does not create a room")
        #expect(h.registry.siteCounts() == SiteCounts())
    }

    @Test func roomsAreGarbageCollectedWhenEmpty() throws {
        let h = Harness(leaveGrace: .seconds(3))

        // A watcher-only room goes as soon as its watcher leaves.
        let (watcher, _) = try h.join("w", nil)
        #expect(h.registry.roomCount == 1)
        h.registry.leave(watcher)
        #expect(h.registry.roomCount == 0)

        // An ephemeral visitor's room goes once the change has been sent (here: at once).
        let (eph, _) = try h.join("e", .ephemeral("x"))
        h.quiet()
        h.registry.leave(eph)
        #expect(h.registry.roomCount == 0)

        // A change still held for the coalescing interval keeps the room until it is flushed.
        let (eph2, _) = try h.join("e", .ephemeral("y"))
        h.registry.leave(eph2)
        #expect(h.online("e") == 0)
        h.advanceAndTick(.milliseconds(100))
        #expect(h.registry.roomCount == 0)

        // An identified visitor's room goes when the grace expires.
        let (idd, _) = try h.join("i", .identified("z"))
        h.registry.leave(idd)
        #expect(h.registry.roomCount == 1)
        h.settle()
        #expect(h.registry.roomCount == 0)
        #expect(h.registry.subscriberCount == 0)
        #expect(!h.registry.hasPendingWork)
    }

    @Test func manyRoomsComeAndGo() throws {
        let h = Harness(leaveGrace: .seconds(1))
        var subs: [Subscription] = []
        for i in 0..<200 {
            subs.append(try h.join("room-\(i)", i.isMultiple(of: 2) ? .identified("v\(i % 7)") : .ephemeral("e\(i)")).0)
            subs.append(try h.join("room-\(i)", nil, format: .legacy).0)
        }
        #expect(h.registry.roomCount == 200)
        #expect(h.registry.subscriberCount == 400)
        for sub in subs.reversed() { h.registry.leave(sub) }
        h.settle()
        #expect(h.registry.roomCount == 0)
        #expect(h.registry.subscriberCount == 0)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.siteCounts().connections == 0)
        #expect(h.registry.siteCounts().rooms == 0)
    }

    @Test func maxRoomsRefusesNewRoomsButNotExistingOnes() throws {
        let h = Harness(leaveGrace: .zero, maxRooms: 2)
        let (w, _) = try h.join("a", nil)  // a watcher makes a room too
        try h.join("b", .ephemeral("x"))
        let refused = TestSink()
        #expect(throws: JoinRefusal.tooManyRooms) {
            try h.registry.join(.room("c", .room), visitor: .identified("y"), sink: refused)
        }
        #expect(throws: JoinRefusal.tooManyRooms) {
            try h.registry.join(.room("c", .legacy), visitor: nil, sink: refused)
        }
        #expect(refused.rawCount == 0)
        #expect(h.registry.roomCount == 2)
        #expect(h.registry.subscriberCount == 2)
        #expect(h.online("c") == 0)
        #expect(h.registry.siteCounts().online == 1)

        // Existing rooms and the site stay open.
        let (y, _) = try h.join("a", .identified("y"))
        try h.join("b", nil)
        try h.joinSite()
        #expect(h.registry.subscriberCount == 5)

        // Once a room is collected there is space again.
        h.registry.leave(w)
        h.registry.leave(y)
        h.settle()
        #expect(h.registry.roomCount == 1)
        let (_, c) = try h.join("c", nil)
        #expect(c.eventCount == 1)
        #expect(throws: JoinRefusal.tooManyRooms) { try h.join("d", nil) }
    }

    @Test func maxRoomsCountsRoomsHeldByAGrace() throws {
        let h = Harness(leaveGrace: .seconds(3), maxRooms: 1)
        let (sub, _) = try h.join("a", .identified("x"))
        h.registry.leave(sub)
        #expect(throws: JoinRefusal.tooManyRooms) { try h.join("b", nil) }
        h.advanceAndTick(.seconds(3))
        #expect(h.registry.roomCount == 0)
        try h.join("b", nil)
    }

    @Test func shutdownClosesEverySinkAndRefusesJoins() throws {
        let h = Harness()
        var sinks: [TestSink] = []
        sinks.append(try h.join("r", .identified("a")).1)
        sinks.append(try h.join("r", .ephemeral("e")).1)
        sinks.append(try h.join("r", nil).1)
        sinks.append(try h.join("r", nil, format: .legacy).1)
        sinks.append(try h.join("q", .identified("b"), format: .legacy).1)
        sinks.append(try h.joinSite().1)

        let open = h.registry.shutdown()
        #expect(open.count == 6)
        #expect(Set(open.map(\.id)).count == 6)
        for sink in sinks {
            #expect(sink.closeCalls == 1)
            #expect(sink.isClosed)
        }
        #expect(throws: JoinRefusal.shuttingDown) { try h.join("r", .identified("late")) }
        #expect(throws: JoinRefusal.shuttingDown) { try h.join("new-room", nil) }
        #expect(throws: JoinRefusal.shuttingDown) { try h.joinSite() }
        #expect(h.registry.subscriberCount == 6)

        // The owners leave once their sinks are closed.
        for sub in open { h.registry.leave(sub) }
        h.settle()
        #expect(h.registry.subscriberCount == 0)
        #expect(h.registry.roomCount == 0)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.allSubscriptions().isEmpty)
        #expect(h.registry.shutdown().isEmpty)
    }

    @Test func leaveIsIdempotent() throws {
        let h = Harness(leaveGrace: .zero)
        let (_, watcher) = try h.join("r", nil)
        let (a, _) = try h.join("r", .identified("a"))
        let (b, _) = try h.join("r", .identified("b"))
        let (site, _) = try h.joinSite()
        h.quiet()
        h.registry.leave(a)
        h.advanceAndTick(.milliseconds(100))
        let afterFirst = h.registry.counts(room: "r")
        let raw = watcher.rawCount
        for _ in 0..<3 {
            h.registry.leave(a)
            h.registry.leave(site)
            h.registry.leave(site)
        }
        #expect(h.registry.counts(room: "r") == afterFirst)
        #expect(afterFirst.online == 1)
        #expect(afterFirst.connections == 1)
        #expect(h.registry.subscriberCount == 2)
        h.advanceAndTick(.milliseconds(100))
        #expect(watcher.rawCount == raw, "a repeated leave is not a change")

        h.registry.leave(b)
        h.registry.leave(b)
        #expect(h.online("r") == 0)
        #expect(h.connections("r") == 0)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.subscriberCount == 1)
    }

    @Test func heartbeatReachesEverySink() throws {
        let h = Harness()
        var sinks: [TestSink] = []
        sinks.append(try h.join("r", .identified("a")).1)
        sinks.append(try h.join("r", nil).1)
        sinks.append(try h.join("r", nil, format: .legacy).1)
        sinks.append(try h.join("q", .ephemeral("e"), format: .legacy).1)
        sinks.append(try h.joinSite().1)
        let (gone, goneSink) = try h.join("q", nil)
        h.registry.leave(gone)

        h.registry.heartbeat()
        h.registry.heartbeat()
        for sink in sinks { #expect(sink.heartbeats == 2) }
        #expect(goneSink.heartbeats == 0)
        #expect(h.registry.allSubscriptions().count == 5)
    }

    @Test func leavingInAnyOrderKeepsTheSubscriberListsConsistent() throws {
        // Swap-removal moves the last subscriber into the gap; every later leave must still find its own.
        let h = Harness(leaveGrace: .zero)
        var subs: [(Subscription, TestSink)] = []
        for i in 0..<60 {
            let format: EventFormat = i % 3 == 0 ? .legacy : .room
            let visitor: VisitorIdentity? = i % 4 == 0 ? nil : .ephemeral("e\(i)")
            subs.append(try h.join("r", visitor, format: format))
        }
        var order = Array(subs.indices)
        var generator = SplitMix64(seed: 7)
        order.shuffle(using: &generator)
        var open = Set(subs.indices)
        for i in order {
            h.registry.leave(subs[i].0)
            open.remove(i)
            let beats = subs[i].1.heartbeats
            h.registry.heartbeat()
            #expect(subs[i].1.heartbeats == beats, "a subscriber that left gets no heartbeat")
            for j in open { #expect(subs[j].1.heartbeats == subs[i].1.heartbeats + 1) }
            let counted = open.filter { $0 % 4 != 0 }.count
            #expect(h.connections("r") == counted)
            #expect(h.registry.allSubscriptions().count == open.count)
        }
        h.settle()
        #expect(h.registry.roomCount == 0)
    }

    @Test func localStateListsTheRoomsVisitors() throws {
        let h = Harness(leaveGrace: .seconds(3))
        try h.join("r", .identified("a"))
        try h.join("r", .identified("a"))
        let (b, _) = try h.join("r", .identified("b"))
        try h.join("r", nil)
        h.registry.leave(b)
        let state = h.registry.localState(room: "r")
        #expect(state.room == "r")
        #expect(state.connections == 2)
        #expect(Set(state.visitors) == ["a", "b"])
        #expect(h.registry.localRoomNames() == ["r"])
        let empty = h.registry.localState(room: "none")
        #expect(empty.connections == 0)
        #expect(empty.visitors.isEmpty)
    }
}

/// A small deterministic generator for shuffles in tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
