import HeadcountCore
import Synchronization
import Testing

/// A scheduler that records what the registry asks of it.
final class RecordingScheduler: RegistryScheduler {
    private let state = Mutex<(deadlines: [Duration], resumes: Int)>(([], 0))
    func schedule(at deadline: Duration) { state.withLock { $0.deadlines.append(deadline) } }
    func resume() { state.withLock { $0.resumes += 1 } }
    var deadlines: [Duration] { state.withLock { $0.deadlines } }
    var resumes: Int { state.withLock { $0.resumes } }
    func reset() { state.withLock { $0 = ([], 0) } }
}

/// The registry knows its next deadline and tells its driver of earlier ones, so that a driver arms one
/// timer by deadline instead of ticking every 10 ms.
@Suite struct SchedulingTests {
    @Test func nextDeadlineIsNilWhenIdle() throws {
        let h = Harness()
        #expect(h.registry.nextDeadline() == nil)
        #expect(h.registry.tick() == nil)
        // Subscribers alone, and changes that went out at once, leave nothing pending.
        let (watcher, _) = try h.join("r", nil)
        let (site, _) = try h.joinSite()
        let (visitor, _) = try h.join("r", .ephemeral("e"))
        #expect(h.registry.nextDeadline() == nil)
        #expect(h.registry.tick() == nil)
        h.quiet()
        h.registry.leave(visitor)  // an ephemeral visitor has no grace; the change goes out at once
        #expect(h.registry.nextDeadline() == nil)
        h.registry.leave(watcher)
        h.registry.leave(site)
        h.settle()
        #expect(h.registry.nextDeadline() == nil)
        #expect(h.registry.tick() == nil)
        #expect(h.registry.roomCount == 0)
    }

    @Test func aLeaveWithGraceYieldsTheGraceDeadline() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (sub, _) = try h.join("r", .identified("a"))
        h.quiet()
        h.registry.leave(sub)  // the change goes out at once; the visitor stays online for the grace
        let left = h.registry.elapsed
        #expect(h.registry.nextDeadline() == left + .seconds(3))
        #expect(h.registry.tick() == left + .seconds(3))
        h.advance(.seconds(3) - .milliseconds(1))
        #expect(h.registry.tick() == left + .seconds(3), "not yet due: the same deadline")
        #expect(h.online("r") == 1)
        h.advance(.milliseconds(1))
        #expect(h.registry.nextDeadline() == left + .seconds(3))
        #expect(h.registry.tick() == nil, "the grace expired and its change went out at once: nothing left")
        #expect(h.online("r") == 0)
    }

    @Test func theHookIsCalledOnceForABurstOfJoinsAndNotPerLeave() throws {
        let h = Harness(leaveGrace: .seconds(3), updateInterval: .milliseconds(100))
        let scheduler = RecordingScheduler()
        h.registry.setScheduler(scheduler)
        #expect(scheduler.deadlines.isEmpty, "nothing pending: nothing to schedule")
        try h.join("r", nil)
        try h.joinSite()
        var subs: [Subscription] = []
        for i in 0..<1_000 { subs.append(try h.join("r", .identified("v\(i)")).0) }  // the first goes out at once
        let burst = h.registry.elapsed
        #expect(scheduler.deadlines == [burst + .milliseconds(100)], "one call for the held room and site")

        // The driver ticks when told; that tick returns the next deadline (none), so the driver knows it.
        h.advance(.milliseconds(100))
        #expect(h.registry.tick() == nil)
        h.advanceAndTick(.seconds(1))
        scheduler.reset()

        for sub in subs { h.registry.leave(sub) }  // 1,000 graces; the first leave goes out at once
        let left = h.registry.elapsed
        #expect(scheduler.deadlines == [left + .seconds(3), left + .milliseconds(100)], "the first grace, then the held flush")
        #expect(h.registry.tick() == left + .milliseconds(100))
        scheduler.reset()
        // A later deadline than the one the tick returned needs no call.
        h.advance(.milliseconds(10))
        try h.join("r", .identified("late"))
        #expect(scheduler.deadlines.isEmpty)
    }

    @Test func aDeadlineEarlierThanTheScheduledOneIsReported() throws {
        let h = Harness(leaveGrace: .seconds(3), updateInterval: .milliseconds(100))
        let scheduler = RecordingScheduler()
        let (sub, _) = try h.join("r", .identified("a"))
        try h.join("r", nil)
        h.quiet()
        h.registry.leave(sub)
        let left = h.registry.elapsed
        // Installing the scheduler tells it the pending deadline at once.
        h.registry.setScheduler(scheduler)
        #expect(scheduler.deadlines == [left + .seconds(3)])
        h.advance(.milliseconds(20))
        try h.join("r", .ephemeral("e"))  // held: the leave's event went out 20 ms ago
        #expect(scheduler.deadlines == [left + .seconds(3), left + .milliseconds(100)])
        h.registry.setScheduler(nil)
        h.advance(.milliseconds(20))
        try h.join("r", .ephemeral("f"))
        #expect(scheduler.deadlines.count == 2, "removed: not called any more")
    }

    @Test func aParkedRegistryResumesOnceOnTheNextJoinOrRemoteChange() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let scheduler = RecordingScheduler()
        h.registry.setScheduler(scheduler)
        #expect(h.registry.parkIfIdle())
        var subs: [Subscription] = []
        for i in 0..<100 { subs.append(try h.join("r", .identified("v\(i)")).0) }
        #expect(scheduler.resumes == 1)
        #expect(!h.registry.parkIfIdle(), "subscribers: not idle")
        for sub in subs { h.registry.leave(sub) }
        #expect(!h.registry.parkIfIdle(), "visitors in grace keep their room: not idle")
        h.settle()
        #expect(h.registry.parkIfIdle())
        h.registry.markSiteChanged()
        h.registry.markSiteChanged()
        #expect(scheduler.resumes == 2)
        #expect(h.registry.parkIfIdle())
        h.registry.markChanged(room: "elsewhere")
        #expect(scheduler.resumes == 3)
    }

    @Test func aCheaperMeasuredCostReportsTheEarlierFlush() throws {
        // 1 ms per delivery on a full core: 300 subscribers stretch the interval to 300 ms.
        let h = Harness(updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .milliseconds(1), fanoutCoreShare: 1)
        let scheduler = RecordingScheduler()
        h.registry.setScheduler(scheduler)
        for _ in 0..<299 { try h.join("big", nil) }
        try h.join("big", .ephemeral("first"))
        h.advanceAndTick(.seconds(2))
        try h.join("big", .ephemeral("a"))  // goes out at once at t0
        let t0 = h.registry.elapsed
        for _ in 0..<3 {  // busy (changes from elsewhere, which leave the site alone): held
            h.advance(.milliseconds(50))
            h.registry.markChanged(room: "big")
        }
        let held = try #require(h.registry.nextDeadline())
        #expect(held == t0 + .milliseconds(250), "quiet for 100 ms after the last change at t0 + 150 ms")
        scheduler.reset()
        // Measured: 1 µs a delivery. The room's interval falls to the plain 100 ms, already over.
        h.registry.recordFanout(deliveries: 2_000, duration: .milliseconds(2))
        let reported = try #require(scheduler.deadlines.last)
        #expect(reported == t0 + .milliseconds(100))
        #expect(reported < held)
    }

    // MARK: The deadline against a 1 ms ticker

    /// Ticks every millisecond from now until some sink receives an event (at most `limit`), and checks
    /// that the registry's deadline, read before, is not later than that tick; with `exact`, also that the
    /// tick at the deadline delivered (no earlier wake-up than needed). Returns whether anything was delivered.
    @discardableResult
    func checkDeadline(_ h: Harness, sinks: [TestSink], exact: Bool, limit: Duration = .seconds(5), _ context: String) -> Bool {
        let deadline = h.registry.nextDeadline()
        let before = sinks.reduce(0) { $0 + $1.rawCount }
        var now = h.registry.elapsed
        let end = now + limit
        while now < end {
            h.advance(.milliseconds(1))
            now = h.registry.elapsed
            h.tick()
            guard sinks.reduce(0, { $0 + $1.rawCount }) > before else { continue }
            guard let deadline else {
                Issue.record("\(context): a tick at \(now) flushed, but nextDeadline was nil")
                return true
            }
            #expect(deadline <= now, "\(context): flushed at \(now), the deadline was \(deadline)")
            if exact { #expect(now - deadline < .milliseconds(1), "\(context): flushed at \(now), the deadline was \(deadline)") }
            return true
        }
        if exact { #expect(deadline == nil, "\(context): nothing flushed by \(end), the deadline was \(String(describing: deadline))") }
        return false
    }

    @Test func aHeldRoomAndSiteAreDueWhenATickWouldFlushThem() throws {
        let h = Harness(updateInterval: .milliseconds(100))
        let (_, watcher) = try h.join("r", nil)
        let (_, site) = try h.joinSite()
        h.quiet()
        try h.join("r", .ephemeral("e1"))  // at once
        h.advance(.milliseconds(30))
        try h.join("r", .ephemeral("e2"))  // held until 100 ms after the first
        #expect(h.registry.nextDeadline() == h.registry.elapsed + .milliseconds(70))
        #expect(checkDeadline(h, sinks: [watcher, site], exact: true, "plain interval"))
        #expect(h.registry.nextDeadline() == nil)
    }

    @Test func aStretchedRoomIsDueAtItsIntervalOrTheEndOfItsBurst() throws {
        let h = Harness(updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .milliseconds(1), fanoutCoreShare: 1)
        var watchers: [TestSink] = []
        for _ in 0..<299 { watchers.append(try h.join("big", nil).1) }
        try h.join("big", .ephemeral("first"))  // 300 subscribers: a 300 ms interval
        h.advanceAndTick(.seconds(2))
        try h.join("big", .ephemeral("a"))  // at once
        // Busy every 50 ms for 250 ms (changes from elsewhere, which leave the site alone): the interval
        // (301 ms) ends before the burst does (350 ms).
        for _ in 0..<5 {
            h.advanceAndTick(.milliseconds(50))
            h.registry.markChanged(room: "big")
        }
        #expect(h.registry.nextDeadline() == h.registry.elapsed + .milliseconds(51))
        #expect(checkDeadline(h, sinks: [watchers[0]], exact: true, "stretched interval"))
        // A burst that ends early: due once quiet for 100 ms.
        h.advanceAndTick(.seconds(2))
        h.registry.markChanged(room: "big")  // at once
        h.advance(.milliseconds(20))
        h.registry.markChanged(room: "big")
        #expect(h.registry.nextDeadline() == h.registry.elapsed + .milliseconds(100))
        #expect(checkDeadline(h, sinks: [watchers[0]], exact: true, "burst end"))
    }

    @Test func roomsWaitingForTheBudgetAreDueWhenItRefills() throws {
        // 20 µs per delivery, 0.2 of a core: 10,000 deliveries a second. 20 rooms of 500 watchers: one
        // flush of one room takes half a second's budget.
        let h = Harness(updateInterval: .milliseconds(10), fanoutCostPerSubscriber: .microseconds(20), fanoutCoreShare: 0.2)
        var sinks: [TestSink] = []
        for r in 0..<20 { for _ in 0..<500 { sinks.append(try h.join("room-\(r)", nil).1) } }
        let site = try h.joinSite().1  // the site's flushes are seen (and wait for the budget too)
        h.advanceAndTick(.seconds(5))
        for r in 0..<20 { try h.join("room-\(r)", .ephemeral("a\(r)")) }  // the first few go out, the rest wait
        for r in 0..<20 { try h.join("room-\(r)", .ephemeral("b\(r)")) }
        var flushes = 0
        while checkDeadline(h, sinks: sinks + [site], exact: true, limit: .seconds(10), "budget, flush \(flushes)") { flushes += 1 }
        #expect(flushes >= 20)
        for r in 0..<20 { #expect(sinks[r * 500].last?.parsed.online == 2) }
    }

    @Test func randomStormsNeverFlushBeforeTheDeadline() throws {
        var rng = SplitMix64(seed: 0x5eed)
        let h = Harness(leaveGrace: .milliseconds(300), updateInterval: .milliseconds(100), fanoutCostPerSubscriber: .microseconds(50), fanoutCoreShare: 0.5)
        var sinks: [TestSink] = []
        for r in 0..<4 {
            for _ in 0..<(r == 0 ? 1_500 : 3) { sinks.append(try h.join("room-\(r)", nil).1) }  // room-0 stretches to 150 ms
        }
        sinks.append(try h.joinSite().1)
        var open: [Subscription] = []
        for round in 0..<150 {
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                if !open.isEmpty && Bool.random(using: &rng) {
                    h.registry.leave(open.remove(at: Int.random(in: 0..<open.count, using: &rng)))
                } else {
                    let room = "room-\(Int.random(in: 0..<4, using: &rng))"
                    let visitor: VisitorIdentity = Bool.random(using: &rng) ? .identified("v\(Int.random(in: 0..<20, using: &rng))") : .ephemeral("e\(round)")
                    open.append(try h.join(room, visitor).0)
                }
                h.advance(.milliseconds(Int64.random(in: 0...40, using: &rng)))
            }
            // Graces can be stale (the visitor came back): then the deadline is early, never late.
            checkDeadline(h, sinks: sinks, exact: false, limit: .milliseconds(Int64.random(in: 1...400, using: &rng)), "round \(round)")
        }
        for sub in open { h.registry.leave(sub) }
        h.settle()
        h.settle()
        #expect(h.registry.nextDeadline() == nil)
    }
}

@Suite struct HistoryGapTests {
    @Test func secondsAfterATrailingZeroReadAsZeros() {
        let store = HistoryStore(capacity: 60)
        store.record(second: 100, site: 3, rooms: [("a", 3)])
        store.record(second: 101, site: 0, rooms: [])  // the site emptied: sampling stops here
        let site = store.samples(room: nil, window: 10, now: 105)
        #expect(site.map(\.0) == Array(100...105))
        #expect(site.map(\.1) == [3, 0, 0, 0, 0, 0])
        let room = store.samples(room: "a", window: 10, now: 105)
        #expect(room.map(\.0) == Array(100...105))
        #expect(room.map(\.1) == [3, 0, 0, 0, 0, 0])
        // The full window once the history is older than it: one sample a second, as if sampled.
        let window = store.samples(room: nil, window: 30, now: 200)
        #expect(window.count == 30)
        #expect(window.map(\.0) == Array(171...200))
        #expect(window.allSatisfy { $0.1 == 0 })
    }

    @Test func aTrailingNonZeroSampleIsNotExtended() {
        let store = HistoryStore(capacity: 60)
        store.record(second: 100, site: 2, rooms: [("a", 2)])
        #expect(store.samples(room: nil, window: 10, now: 103).map(\.1) == [2])
        #expect(store.samples(room: "a", window: 10, now: 103).map(\.1) == [2])
    }

    @Test func theNextRecordFillsTheSkippedSecondsWithZeros() {
        let store = HistoryStore(capacity: 60)
        store.record(second: 100, site: 3, rooms: [("a", 3)])
        store.record(second: 101, site: 0, rooms: [])
        store.record(second: 110, site: 5, rooms: [("b", 5)])
        let site = store.samples(room: nil, window: 20, now: 110)
        #expect(site.map(\.0) == Array(100...110))
        #expect(site.map(\.1) == [3] + Array(repeating: 0, count: 9) + [5])
        #expect(store.samples(room: "a", window: 20, now: 110).map(\.1) == [3] + Array(repeating: 0, count: 10))
        #expect(store.samples(room: "b", window: 20, now: 110).map(\.1) == [5])
    }

    @Test func aGapLongerThanTheRingIsAllZeros() {
        let store = HistoryStore(capacity: 10)
        store.record(second: 100, site: 3, rooms: [("a", 3)])
        store.record(second: 101, site: 0, rooms: [])
        // While idle, a room whose ring the next record would drop reads as gone.
        #expect(store.samples(room: "a", window: 10, now: 150).isEmpty)
        #expect(store.samples(room: nil, window: 10, now: 150).map(\.0) == Array(141...150))
        store.record(second: 200, site: 4, rooms: [])
        let site = store.samples(room: nil, window: 10, now: 200)
        #expect(site.map(\.0) == Array(191...200))
        #expect(site.map(\.1) == Array(repeating: 0, count: 9) + [4])
        #expect(store.samples(room: "a", window: 10, now: 200).isEmpty)
        #expect(store.roomCount == 0)
    }
}
