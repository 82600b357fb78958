import HeadcountCore

/// A registry on a manual clock, with helpers that join with a fresh `TestSink`.
struct Harness {
    let clock: ManualTimeSource
    let registry: PresenceRegistry
    var configuration: PresenceConfiguration { registry.configuration }

    init(
        leaveGrace: Duration = .seconds(3),
        updateInterval: Duration = .milliseconds(100),
        fanoutCostPerSubscriber: Duration = .nanoseconds(4_000),
        fanoutCoreShare: Double = 0.5,
        maxRooms: Int = 100_000,
        startWallTime: Double = 0,
        initialSequence: UInt64 = 0
    ) {
        let configuration = PresenceConfiguration(
            leaveGrace: leaveGrace,
            updateInterval: updateInterval,
            fanoutCostPerSubscriber: fanoutCostPerSubscriber,
            fanoutCoreShare: fanoutCoreShare,
            maxRooms: maxRooms,
            startWallTime: startWallTime,
            initialSequence: initialSequence
        )
        self.clock = ManualTimeSource()
        self.registry = PresenceRegistry(configuration: configuration, time: clock)
    }

    /// Joins `room` in `format` as `visitor` (nil: watcher) with a new sink.
    @discardableResult
    func join(_ room: String, _ visitor: VisitorIdentity?, format: EventFormat = .room) throws(JoinRefusal) -> (Subscription, TestSink) {
        let sink = TestSink()
        let sub = try registry.join(.room(room, format), visitor: visitor, sink: sink)
        return (sub, sink)
    }

    /// Subscribes to the site totals with a new sink.
    @discardableResult
    func joinSite() throws(JoinRefusal) -> (Subscription, TestSink) {
        let sink = TestSink()
        let sub = try registry.join(.site, visitor: nil, sink: sink)
        return (sub, sink)
    }

    func advance(_ duration: Duration) { clock.advance(by: duration) }

    func tick() { registry.tick() }

    func advanceAndTick(_ duration: Duration) {
        clock.advance(by: duration)
        registry.tick()
    }

    /// Lets enough time pass that the next change counts as "after a quiet period".
    func quiet() { advanceAndTick(.seconds(1)) }

    /// Expires every grace and flushes everything pending.
    func settle() {
        advanceAndTick(configuration.leaveGrace + .seconds(1))
        advanceAndTick(.seconds(1))
    }

    func online(_ room: String) -> Int { registry.counts(room: room).online }
    func connections(_ room: String) -> Int { registry.counts(room: room).connections }
}
