import HeadcountCore
import NIOCore
import Testing

@Suite struct CoalescingTests {
    @Test func theFirstChangeAfterAQuietPeriodGoesOutImmediately() throws {
        let h = Harness(updateInterval: .milliseconds(100))
        let (_, watcher) = try h.join("r", nil)
        try h.join("r", .ephemeral("e1"))
        #expect(watcher.eventCount == 2)
        h.advance(.milliseconds(100))  // exactly one interval later, no tick
        try h.join("r", .ephemeral("e2"))
        #expect(watcher.eventCount == 3)
        #expect(watcher.last?.parsed.online == 2)
    }

    @Test func changesInsideTheIntervalAreHeldAndOneTickDeliversTheLatest() throws {
        let h = Harness(updateInterval: .milliseconds(100))
        let (_, watcher) = try h.join("r", nil)
        let (_, site) = try h.joinSite()
        let (e1, _) = try h.join("r", .ephemeral("e1"))  // goes out at once
        #expect(watcher.eventCount == 2)
        #expect(site.eventCount == 2)

        h.advanceAndTick(.milliseconds(10))
        try h.join("r", .ephemeral("e2"))
        h.advanceAndTick(.milliseconds(10))
        try h.join("r", .identified("a"))
        h.advanceAndTick(.milliseconds(10))
        h.registry.leave(e1)
        #expect(h.registry.hasPendingWork)
        #expect(watcher.eventCount == 2, "held inside the interval")
        #expect(site.eventCount == 2)

        h.advanceAndTick(.milliseconds(69))  // 99 ms after the broadcast
        #expect(watcher.eventCount == 2)
        h.advanceAndTick(.milliseconds(1))   // 100 ms
        #expect(watcher.eventCount == 3)
        #expect(watcher.rawCount == 3, "its own first event, the immediate change, one coalesced change")
        let last = try #require(watcher.last)
        #expect(last.text == roomEventText(id: h.registry.counts(room: "r").version, room: "r", online: 2, connections: 2))
        #expect(site.eventCount == 3)
        #expect(site.last?.text == siteEventText(id: h.registry.siteCounts().version, online: 2, connections: 2, rooms: 1))

        // Nothing more to send.
        #expect(!h.registry.hasPendingWork)
        let raw = watcher.rawCount
        h.advanceAndTick(.seconds(1))
        h.advanceAndTick(.seconds(1))
        #expect(watcher.rawCount == raw)
    }

    @Test func aTickBeforeTheIntervalSendsNothing() throws {
        let h = Harness(updateInterval: .milliseconds(250))
        let (_, watcher) = try h.join("r", nil)
        try h.join("r", .ephemeral("e1"))
        try h.join("r", .ephemeral("e2"))
        for _ in 0..<24 {
            h.advanceAndTick(.milliseconds(10))
            #expect(watcher.eventCount == 2)
        }
        h.advanceAndTick(.milliseconds(10))
        #expect(watcher.eventCount == 3)
        #expect(watcher.last?.parsed.online == 2)
    }

    @Test(arguments: [10, 100, 1_000])
    func aStormOfJoinsInsideOneIntervalCostsExistingSubscribersOnlyTwoEvents(joins: Int) throws {
        let h = Harness(updateInterval: .milliseconds(100))
        let (_, early) = try h.join("r", .identified("early"))
        let (_, watcher) = try h.join("r", nil)
        let (_, legacy) = try h.join("r", nil, format: .legacy)
        let (_, site) = try h.joinSite()
        h.quiet()
        for sink in [early, watcher, legacy, site] { sink.reset() }

        var joiners: [TestSink] = []
        for i in 0..<joins {
            joiners.append(try h.join("r", .identified("v\(i)")).1)
        }
        h.advanceAndTick(.milliseconds(100))

        for sink in [early, watcher, legacy, site] {
            #expect(sink.rawCount == 2, "one immediate event and one coalesced event, not \(joins)")
        }
        #expect(early.last?.parsed.online == joins + 1)
        #expect(legacy.last?.text == legacyEventText(online: joins + 1))
        #expect(site.last?.parsed.online == joins + 1)
        // Each joiner got its own counts at once and then the coalesced total.
        for (i, joiner) in joiners.enumerated() {
            #expect(joiner.events.first?.parsed.online == i + 2)
            #expect(joiner.last?.parsed.online == joins + 1)
            #expect(joiner.eventCount <= 2)
        }
    }

    @Test func aStormSpreadOverASecondIsBoundedByTheInterval() throws {
        let h = Harness(updateInterval: .milliseconds(100))
        let (_, watcher) = try h.join("r", nil)
        h.quiet()
        watcher.reset()
        var subs: [Subscription] = []
        for i in 0..<1_000 {  // one join per millisecond, ticking every 10 ms, for one second
            subs.append(try h.join("r", .ephemeral("e\(i)")).0)
            h.advance(.milliseconds(1))
            if i % 10 == 9 { h.tick() }
        }
        h.advanceAndTick(.milliseconds(100))
        #expect(watcher.rawCount <= 12, "got \(watcher.rawCount) events for 1000 joins")
        #expect(watcher.rawCount >= 10)
        #expect(watcher.last?.parsed.online == 1_000)
        for sub in subs { h.registry.leave(sub) }
        h.advanceAndTick(.milliseconds(100))
        #expect(watcher.last?.parsed.online == 0)
        #expect(watcher.last?.parsed.connections == 0)
    }

    @Test func joinsAndLeavesInsideOneIntervalEndWithTheTrueCounts() throws {
        let h = Harness(leaveGrace: .zero, updateInterval: .milliseconds(100))
        let (_, watcher) = try h.join("r", nil)
        let (first, _) = try h.join("r", .identified("x"))
        var subs: [Subscription] = []
        for i in 0..<50 { subs.append(try h.join("r", .identified("v\(i)")).0) }
        for sub in subs { h.registry.leave(sub) }
        h.registry.leave(first)
        #expect(watcher.last?.parsed.online == 1, "only the immediate event so far")
        h.advanceAndTick(.milliseconds(100))
        #expect(watcher.last?.parsed.online == 0)
        #expect(watcher.last?.parsed.connections == 0)
        #expect(watcher.last?.version == h.registry.counts(room: "r").version)
    }

    @Test func coalescingIntervalRule() {
        let base = PresenceConfiguration(updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .nanoseconds(4_000), fanoutCoreShare: 0.5)
        #expect(base.coalescingInterval(subscribers: 0) == .milliseconds(100))
        #expect(base.coalescingInterval(subscribers: 1) == .milliseconds(100))
        #expect(base.coalescingInterval(subscribers: 12_500) == .milliseconds(100))  // 50 ms of work ÷ 0.5
        #expect(base.coalescingInterval(subscribers: 25_000) == .milliseconds(200))
        #expect(base.coalescingInterval(subscribers: 100_000) == .milliseconds(800))
        #expect(base.coalescingInterval(subscribers: 1_000_000) == .seconds(8))

        let fullCore = PresenceConfiguration(updateInterval: .milliseconds(10), fanoutCostPerSubscriber: .microseconds(1), fanoutCoreShare: 1)
        #expect(fullCore.coalescingInterval(subscribers: 5_000) == .milliseconds(10))
        #expect(fullCore.coalescingInterval(subscribers: 20_000) == .milliseconds(20))

        // A share above one is one core; zero or negative is treated as one core too.
        for share in [2.0, 0.0, -1.0] {
            let c = PresenceConfiguration(updateInterval: .milliseconds(10), fanoutCostPerSubscriber: .microseconds(1), fanoutCoreShare: share)
            #expect(c.coalescingInterval(subscribers: 20_000) == .milliseconds(20), "share \(share)")
        }

        // A tenth of a core: ten times the work time.
        let tenth = PresenceConfiguration(updateInterval: .milliseconds(10), fanoutCostPerSubscriber: .microseconds(1), fanoutCoreShare: 0.1)
        #expect(tenth.coalescingInterval(subscribers: 1_000) == .milliseconds(10))
        #expect(tenth.coalescingInterval(subscribers: 5_000) == .milliseconds(50))

        // No cost: always the plain interval.
        let free = PresenceConfiguration(updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .zero)
        #expect(free.coalescingInterval(subscribers: 10_000_000) == .milliseconds(100))
    }

    @Test func largeRoomsStretchTheirInterval() throws {
        // 1 ms per subscriber on a full core: 300 subscribers → 300 ms between events.
        let h = Harness(updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .milliseconds(1), fanoutCoreShare: 1)
        var watchers: [TestSink] = []
        for _ in 0..<299 { watchers.append(try h.join("big", nil).1) }
        try h.join("big", .ephemeral("first"))  // 300 subscribers now; broadcast at t0
        let watcher = watchers[0]
        let after = watcher.eventCount
        // Changes keep coming every 50 ms (t0 + 50 … t0 + 250): the room is busy.
        for i in 0..<5 {
            h.advanceAndTick(.milliseconds(50))
            try h.join("big", .ephemeral("busy\(i)"))
            #expect(watcher.eventCount == after, "t0 + \(50 * (i + 1)) ms: a small room would have sent by now")
        }
        h.advanceAndTick(.milliseconds(50))       // t0 + 300: 305 subscribers, still short of 305 ms
        #expect(watcher.eventCount == after)
        h.advanceAndTick(.milliseconds(5))        // t0 + 305
        #expect(watcher.eventCount == after + 1)
        #expect(watcher.last?.parsed.online == 6)
        // An isolated change after 150 ms of quiet goes out at once, even inside the stretched interval.
        h.advance(.milliseconds(150))
        try h.join("big", .ephemeral("isolated"))
        #expect(watcher.eventCount == after + 2)
        #expect(watcher.last?.parsed.online == 7)

        // A small room next to it keeps the plain interval.
        let (_, small) = try h.join("small", nil)
        try h.join("small", .ephemeral("x"))
        h.advance(.milliseconds(10))
        try h.join("small", .ephemeral("y"))
        h.advanceAndTick(.milliseconds(90))
        #expect(small.last?.parsed.online == 2)
    }

    @Test func siteTotalsAreCoalescedToo() throws {
        let h = Harness(updateInterval: .milliseconds(100))
        let (_, site) = try h.joinSite()
        for i in 0..<20 { try h.join("room\(i)", .identified("v\(i)")) }
        #expect(site.eventCount == 2)
        #expect(site.last?.parsed.online == 1)
        h.advanceAndTick(.milliseconds(100))
        #expect(site.eventCount == 3)
        #expect(site.last?.text == siteEventText(id: h.registry.siteCounts().version, online: 20, connections: 20, rooms: 20))
    }

    @Test func heldChangesOfSeveralRoomsAreFlushedByOneTick() throws {
        let h = Harness(updateInterval: .milliseconds(100))
        var watchers: [String: TestSink] = [:]
        for name in ["a", "b", "c"] {
            watchers[name] = try h.join(name, nil).1
            try h.join(name, .ephemeral("\(name)-1"))
            try h.join(name, .ephemeral("\(name)-2"))
        }
        for name in ["a", "b", "c"] { #expect(watchers[name]?.last?.parsed.online == 1) }
        h.advanceAndTick(.milliseconds(100))
        for name in ["a", "b", "c"] {
            #expect(watchers[name]?.last?.parsed.online == 2)
            #expect(watchers[name]?.last?.parsed.room == name)
        }
        #expect(!h.registry.hasPendingWork)
    }
}

@Suite("Global fan-out budget")
struct FanoutBudgetTests {
    @Test("many busy rooms together never take more deliveries a second than the budget allows")
    func budgetAcrossRooms() throws {
        // 20 µs per delivery and 0.2 of a core: 10,000 deliveries a second, bursts of 10,000. Rooms alone
        // (10 ms interval) would deliver ten times that.
        let h = Harness(updateInterval: .milliseconds(10), fanoutCostPerSubscriber: .microseconds(20), fanoutCoreShare: 0.2)
        let budget = try #require(h.configuration.fanoutBudget)
        #expect(abs(budget.perSecond - 10_000) < 1)
        var sinks: [TestSink] = []
        for r in 0..<20 {
            for _ in 0..<50 { sinks.append(try h.join("room-\(r)", nil).1) }
        }
        let before = sinks.reduce(0) { $0 + $1.rawCount }
        // A storm: every room changes every 10 ms for one simulated second.
        var visitors: [Subscription] = []
        for step in 0..<100 {
            for r in 0..<20 { visitors.append(try h.join("room-\(r)", .ephemeral("v\(step)-\(r)")).0) }
            h.clock.advance(by: .milliseconds(10))
            h.registry.tick()
        }
        let delivered = sinks.reduce(0) { $0 + $1.rawCount } - before
        #expect(Double(delivered) <= budget.perSecond * 1 + budget.burst + 1_000, "delivered \(delivered)")
        #expect(delivered > 0)
        // Every room still ends on its true count once the storm is over.
        for _ in 0..<10 {
            h.clock.advance(by: .milliseconds(500))
            h.registry.tick()
        }
        for r in 0..<20 {
            #expect(h.registry.localCounts(room: "room-\(r)").online == 100)
            #expect(sinks[r * 50].lastText?.contains("\"online\":100") == true, "room-\(r) ended on \(sinks[r * 50].lastText ?? "nothing")")
        }
        for v in visitors { h.registry.leave(v) }
    }

    @Test("a zero cost disables the budget")
    func noBudget() {
        #expect(PresenceConfiguration(fanoutCostPerSubscriber: .zero).fanoutBudget == nil)
    }

    /// A sink that relays to streams that joined on their own, as a NIO event loop's group does.
    final class RelaySink: EventSink {
        let inner = TestSink()
        func deliver(_ buffer: ByteBuffer, version: UInt64) { inner.deliver(buffer, version: version) }
        func heartbeat(_ buffer: ByteBuffer) {}
        func close() {}
        var isRelay: Bool { true }
    }

    @Test("streams delivered through a relay size the interval one each, the relay itself not at all")
    func relayedStreamsCountInTheAudience() throws {
        // 4 µs per delivery at 0.5 of a core: 25,000 streams stretch the interval to 200 ms.
        let h = Harness(updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .nanoseconds(4_000), fanoutCoreShare: 0.5)
        let relay = RelaySink()
        let relaySub = try h.registry.join(.room("big", .room), visitor: nil, sink: relay)
        var streams: [Subscription] = []
        for i in 0..<25_000 {
            // As an NIO stream joins: counted, its initial event to itself, later ones through the relay.
            streams.append(try h.registry.join(.room("big", .room), visitor: .ephemeral("s\(i)"), initialTo: TestSink()))
        }
        h.advanceAndTick(.seconds(10))  // the storm's last change goes out, the budget refills
        h.advanceAndTick(.seconds(1))   // then a quiet second
        let before = relay.inner.eventCount
        try h.join("big", .ephemeral("one-more"))
        #expect(relay.inner.eventCount == before + 1, "the first change after a quiet period goes out at once")
        // A change every 50 ms keeps the room busy: it is held for the whole stretched interval.
        for i in 0..<3 {
            h.advanceAndTick(.milliseconds(50))
            try h.join("big", .ephemeral("busy\(i)"))
        }
        #expect(relay.inner.eventCount == before + 1, "25,000 relayed streams stretch the interval past 100 ms")
        h.advanceAndTick(.milliseconds(60))
        #expect(relay.inner.eventCount == before + 2, "and the held change goes out at 200 ms")

        // A burst that ends: its final state goes out once the room is quiet for 100 ms, not at 200 ms.
        let burst = relay.inner.eventCount
        try h.join("big", .ephemeral("late-1"))
        h.advanceAndTick(.milliseconds(10))
        try h.join("big", .ephemeral("late-2"))
        h.advanceAndTick(.milliseconds(60))
        #expect(relay.inner.eventCount == burst, "held: the room changed 60 ms ago")
        h.advanceAndTick(.milliseconds(45))
        #expect(relay.inner.eventCount == burst + 1, "quiet for 105 ms: the burst's final state goes out")
        #expect(relay.inner.last?.parsed.online == h.online("big"))

        // The relay alone (no streams behind it) is a room of no audience: plain update interval.
        for sub in streams { h.registry.leave(sub) }
        h.advanceAndTick(.seconds(10))
        h.advanceAndTick(.seconds(1))
        let quiet = relay.inner.eventCount
        try h.join("big", .ephemeral("x"))
        try h.join("big", .ephemeral("y"))
        h.advanceAndTick(.milliseconds(100))
        #expect(relay.inner.eventCount == quiet + 2)
        h.registry.leave(relaySub)
    }

    @Test("a measured cost per delivery replaces the estimate, and a zero estimate keeps coalescing by size off")
    func measuredCostSizesTheInterval() throws {
        let h = Harness(updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .nanoseconds(4_000), fanoutCoreShare: 0.25)
        #expect(h.registry.fanoutCostPerDelivery == .nanoseconds(4_000), "the estimate until something was measured")
        h.registry.recordFanout(deliveries: 500, duration: .microseconds(10_000))
        #expect(h.registry.fanoutCostPerDelivery == .nanoseconds(4_000), "fewer than 1,000 deliveries timed: still the estimate")
        h.registry.recordFanout(deliveries: 1_500, duration: .microseconds(30_000))
        #expect(h.registry.fanoutCostPerDelivery == .microseconds(20))
        // Newer measurements take over within ~50,000 deliveries.
        for _ in 0..<20 { h.registry.recordFanout(deliveries: 5_000, duration: .microseconds(50_000)) }
        let cost = h.registry.fanoutCostPerDelivery
        #expect(cost >= .microseconds(10) && cost < .nanoseconds(10_500), "\(cost)")

        // 10 µs at a quarter of a core: a room of 5,000 streams gets 200 ms between events.
        let relay = RelaySink()
        let relaySub = try h.registry.join(.room("r", .room), visitor: nil, sink: relay)
        var subs: [Subscription] = []
        for i in 0..<4_998 { subs.append(try h.registry.join(.room("r", .room), visitor: .ephemeral("s\(i)"), initialTo: TestSink())) }
        h.advanceAndTick(.seconds(10))
        h.advanceAndTick(.seconds(1))
        let before = relay.inner.eventCount
        try h.join("r", .ephemeral("a"))   // goes out at once: audience 5,000
        for i in 0..<3 {                   // busy: held
            h.advanceAndTick(.milliseconds(50))
            try h.join("r", .ephemeral("b\(i)"))
        }
        h.advanceAndTick(.milliseconds(40))
        #expect(relay.inner.eventCount == before + 1)
        h.advanceAndTick(.milliseconds(20))
        #expect(relay.inner.eventCount == before + 2)
        for sub in subs { h.registry.leave(sub) }
        h.registry.leave(relaySub)

        let off = Harness(fanoutCostPerSubscriber: .zero)
        off.registry.recordFanout(deliveries: 10_000, duration: .seconds(1))
        #expect(off.configuration.coalescingInterval(subscribers: 1_000_000, cost: .microseconds(100)) == .milliseconds(100))
    }
}
