import HeapModule
import NIOCore
import Synchronization

/// The presence model: rooms, streams, visitors, leave grace and coalesced change notification.
///
/// Every operation is synchronous under one `Mutex`, so a stream can join and leave from a `defer`,
/// a close callback or a NIO event loop. The registry owns no task and no timer: a driver calls
/// `tick()` (grace expiry, coalesced flushes) when it is due, and `heartbeat()` periodically. `tick()`
/// returns when it next needs to run, and a `RegistryScheduler` set with `setScheduler` is told of an
/// earlier deadline as soon as an operation creates one, so that a driver arms one timer by deadline and
/// none while nothing is pending. Events are encoded once per change and the same bytes are handed to every
/// subscriber, outside the lock.
public final class PresenceRegistry: Sendable {
    public let configuration: PresenceConfiguration
    let time: any TimeSource
    public let backplane: any Backplane
    let state: Mutex<State>
    let start: ContinuousClock.Instant
    let heartbeatBuffer: ByteBuffer

    let observer: (any RegistryObserver)?
    /// The backplane is the in-memory default, whose merge returns the local figures unchanged: the hot
    /// paths then skip the existential call and the copies of the figures it costs.
    let mergesNothing: Bool
    /// The time source is the system clock: read `ContinuousClock` directly, not through the existential.
    let systemTime: Bool

    public init(
        configuration: PresenceConfiguration = .init(),
        time: any TimeSource = SystemTimeSource(),
        backplane: any Backplane = LocalBackplane(),
        observer: (any RegistryObserver)? = nil
    ) {
        self.observer = observer
        self.configuration = configuration
        self.time = time
        self.backplane = backplane
        self.start = time.now
        var initial = State(sequence: configuration.initialSequence)
        initial.publishLocalState = backplane.needsLocalState
        self.state = Mutex(initial)
        self.heartbeatBuffer = SSEEncoder.heartbeat()
        self.mergesNothing = backplane is LocalBackplane
        self.systemTime = time is SystemTimeSource
    }

    /// The time now on the registry's clock (one clock read per operation).
    @inline(__always)
    func clockNow() -> Moment { Moment(systemTime ? ContinuousClock.now : time.now, since: start) }

    /// The figures subscribers of a room see (see `mergesNothing`).
    @inline(__always)
    func merged(_ local: RoomCounts) -> RoomCounts {
        mergesNothing ? local : backplane.merge(room: local.room, local: local)
    }

    // MARK: Joining and leaving

    /// Adds a subscriber. `visitor` nil makes a watcher that is not counted. The new subscriber's sink
    /// receives the current figures at once (before this returns); the change reaches the other
    /// subscribers now or, inside the coalescing interval, at the next flush.
    public func join(_ target: SubscriptionTarget, visitor: VisitorIdentity?, sink: any EventSink) throws(JoinRefusal) -> Subscription {
        try join(target, visitor: visitor, deliverTo: sink, initialTo: sink)
    }

    /// Adds a counted subscriber whose events reach it some other way (a shared group sink registered as
    /// a watcher). Only the initial figures go to `initialTo`; later changes are not delivered to it.
    public func join(_ target: SubscriptionTarget, visitor: VisitorIdentity?, initialTo: any EventSink) throws(JoinRefusal) -> Subscription {
        try join(target, visitor: visitor, deliverTo: nil, initialTo: initialTo)
    }

    func join(_ target: SubscriptionTarget, visitor: VisitorIdentity?, deliverTo sink: (any EventSink)?, initialTo: any EventSink) throws(JoinRefusal) -> Subscription {
        let now = clockNow()
        let (sub, initial, work) = try state.withLock { state throws(JoinRefusal) -> (Subscription, Work.Initial, Work) in
            if state.shuttingDown { throw .shuttingDown }
            state.nextSubscriptionID &+= 1
            let isSite = if case .site = target { true } else { false }
            let sub = Subscription(id: state.nextSubscriptionID, target: target, visitor: isSite ? nil : visitor, sink: sink)
            var work = Work()
            state.unpark(work: &work)
            switch target {
            case .site:
                state.siteAudience += sub.audience
                if sink != nil {
                    sub.index = state.siteSubscribers.count
                    state.siteSubscribers.append(sub)
                }
                state.subscriberCount += 1
                return (sub, .site(state.siteCounts), work)
            case .room(let name, let format):
                let room: Room
                if let recent = state.lastJoinedRoom, recent.name == name {
                    room = recent
                } else if let existing = state.rooms[name] {
                    room = existing
                } else {
                    guard state.rooms.count < configuration.maxRooms else { throw .tooManyRooms }
                    room = Room(name: name)
                    room.version = state.sequence  // a fresh room's first id is never below ids already issued
                    state.rooms[name] = room
                }
                state.lastJoinedRoom = room
                state.subscriberCount += 1
                room.add(sub, format: format)
                sub.roomState = room
                if let visitor {
                    sub.visitorSlot = state.addStream(room: room, visitor: visitor.id, now: now)
                    state.changed(room: room, now: now, configuration: configuration, work: &work)
                }
                return (sub, .room(room.counts, format), work)
            }
        }
        deliverInitial(initial, to: initialTo)
        perform(work)
        return sub
    }

    /// Removes a subscriber. Idempotent. An identified visitor's last stream starts their leave grace.
    public func leave(_ subscription: Subscription) {
        let now = clockNow()
        let work: Work = state.withLock { state in
            guard subscription.active else { return Work() }
            subscription.active = false
            state.subscriberCount -= 1
            var work = Work()
            switch subscription.target {
            case .site:
                state.siteAudience -= subscription.audience
                if subscription.sink != nil { state.siteSubscribers.swapRemove(subscription) }
            case .room(_, let format):
                guard let room = subscription.roomState else { break }
                subscription.roomState = nil
                room.remove(subscription, format: format)
                if subscription.visitorSlot >= 0 {
                    let grace = subscription.hasGrace && configuration.leaveGrace > .zero
                    if state.removeStream(room: room, slot: subscription.visitorSlot, graceUntil: grace ? now + configuration.leaveGrace : nil) {
                        state.due(at: now + configuration.leaveGrace, work: &work)
                    }
                    state.changed(room: room, now: now, configuration: configuration, work: &work)
                } else {
                    state.collectIfEmpty(room)
                }
            }
            return work
        }
        perform(work)
    }

    /// Tells the registry that a room's figures changed elsewhere (a cluster backplane's remote update):
    /// its subscribers get the merged figures, coalesced as usual.
    public func markChanged(room: String) {
        let now = clockNow()
        let work: Work = state.withLock { state in
            var work = Work()
            state.unpark(work: &work)
            guard let existing = state.rooms[room] else { return work }
            state.changed(room: existing, now: now, configuration: configuration, work: &work, localChange: false)
            return work
        }
        perform(work)
    }

    /// Tells the registry that the site totals changed elsewhere.
    public func markSiteChanged() {
        let now = clockNow()
        let work: Work = state.withLock { state in
            var work = Work()
            state.unpark(work: &work)
            state.siteChanged(now: now, configuration: configuration, work: &work)
            return work
        }
        perform(work)
    }

    // MARK: Driving

    /// Expires leave graces and sends coalesced updates that are due, and returns when it next needs to run:
    /// a time since the registry's start on its clock (compare with `elapsed`), or nil when nothing is
    /// pending. A driver arms one timer for that deadline, and an earlier one when its scheduler asks.
    ///
    /// The deadline is exact (see `State.nextFlushDeadline`). As a safety net against rounding it is never
    /// less than `minimumRecheck` after now, so a driver cannot spin on a deadline that a tick does not clear.
    @discardableResult
    public func tick() -> Duration? {
        let now = clockNow()
        let (work, next): (Work, Moment?) = state.withLock { state in
            var work = Work()
            state.expireGraces(now: now, configuration: configuration, work: &work)
            state.flushDue(now: now, configuration: configuration, work: &work)
            var next = state.nextDeadline(configuration: configuration)
            if let due = next, due < now + Self.minimumRecheck { next = now + Self.minimumRecheck }
            // The driver arms what this returns: deadlines created by this tick need no call of their own.
            state.scheduledDeadline = next
            work.wake = nil
            return (work, next)
        }
        perform(work)
        return next?.offset
    }

    /// The shortest time from a tick to the next deadline it returns (see `tick()`).
    public static let minimumRecheck: Duration = .milliseconds(1)

    /// When `tick()` next has something to do (time since the registry's start), nil when nothing is
    /// pending: the earliest grace expiry, or the first moment a held room or site update can go out. It
    /// may be at or before `elapsed` when something is due now.
    public func nextDeadline() -> Duration? {
        state.withLock { $0.nextDeadline(configuration: configuration) }?.offset
    }

    /// The time now on the registry's clock, since its start: the scale of `tick()`'s deadlines.
    public var elapsed: Duration { clockNow().offset }

    /// Sets (or, nil, removes) the driver told of deadlines earlier than the one it has. It is told the
    /// current next deadline at once, if there is one.
    public func setScheduler(_ scheduler: (any RegistryScheduler)?) {
        let next: Moment? = state.withLock { state in
            state.scheduler = scheduler
            state.driverParked = false
            state.scheduledDeadline = scheduler == nil ? nil : state.nextDeadline(configuration: configuration)
            return state.scheduledDeadline
        }
        if let next { scheduler?.schedule(at: next.offset) }
    }

    /// For a driver that stops its periodic work (heartbeats, history samples) while nothing is online:
    /// when the registry has no subscriber and no room (so no visitor in grace), marks it parked and returns
    /// true. The next join, `markChanged` or `markSiteChanged` then calls the scheduler's `resume()`, once.
    /// Pending deadlines are unaffected (they are scheduled as usual).
    public func parkIfIdle() -> Bool {
        state.withLock { state in
            guard state.subscriberCount == 0, state.rooms.isEmpty, !state.shuttingDown else { return false }
            state.driverParked = true
            return true
        }
    }

    /// Tells the registry what one fan-out really cost (an event loop writing one event to `deliveries`
    /// streams in `duration`). Coalescing by size and the fan-out budget then use the measured cost per
    /// delivery instead of `fanoutCostPerSubscriber`, so the "share of a core" rule holds on any machine.
    public func recordFanout(deliveries: Int, duration: Duration) {
        guard deliveries > 0, duration > .zero else { return }
        let nanoseconds = duration.nanosecondsClamped
        let work: Work = state.withLock { state in
            var work = Work()
            let before = state.fanoutCost(configuration)
            state.recordFanout(deliveries: deliveries, nanoseconds: nanoseconds)
            // A cheaper delivery shortens stretched intervals and refills the budget faster: a held flush may
            // now be due before the scheduled deadline. (The measured average drifts a little with every fan-out:
            // a deadline less than `minimumRecheck` earlier is not worth a call.)
            if state.scheduler != nil, state.fanoutCost(configuration) < before, let next = state.nextFlushDeadline(configuration: configuration),
               state.scheduledDeadline.map({ next + Self.minimumRecheck <= $0 }) ?? true {
                state.due(at: next, work: &work)
            }
            return work
        }
        if work.wake != nil { notifyScheduler(work) }
    }

    /// The cost per delivery that coalescing uses now (measured, or the configured estimate).
    public var fanoutCostPerDelivery: Duration { state.withLock { $0.fanoutCost(configuration) } }

    /// Whether a `tick()` now would have anything to do later: dirty rooms or visitors in grace.
    public var hasPendingWork: Bool {
        state.withLock { !$0.dirtyRooms.isEmpty || $0.siteDirty || !$0.graces.isEmpty }
    }

    /// Sends a heartbeat comment to every subscriber (sinks skip it when an event is pending).
    public func heartbeat() {
        let all = allSubscriptions()
        for sub in all { sub.sink?.heartbeat(heartbeatBuffer) }
    }

    /// Refuses further joins and closes every subscriber's sink; their owners then leave.
    /// Returns the subscriptions that were open.
    @discardableResult
    public func shutdown() -> [Subscription] {
        state.withLock { $0.shuttingDown = true }
        let all = allSubscriptions()
        for sub in all { sub.sink?.close() }
        return all
    }

    /// Every open subscription, in no particular order.
    public func allSubscriptions() -> [Subscription] {
        state.withLock { state in
            var all: [Subscription] = []
            all.reserveCapacity(state.subscriberCount)
            all.append(contentsOf: state.siteSubscribers)
            for room in state.rooms.values {
                all.append(contentsOf: room.roomSubscribers)
                all.append(contentsOf: room.legacySubscribers)
            }
            return all
        }
    }

    // MARK: Snapshots

    /// The figures of a room as subscribers see them; an empty or unknown room is zeros.
    public func counts(room: String) -> RoomCounts {
        let local = state.withLock { $0.rooms[room]?.counts } ?? RoomCounts(room: room, version: 0)
        return backplane.merge(room: room, local: local)
    }

    /// Local figures only (no backplane), for tests and the cluster's own publishing.
    public func localCounts(room: String) -> RoomCounts {
        state.withLock { $0.rooms[room]?.counts } ?? RoomCounts(room: room)
    }

    /// The local state a cluster node publishes for `room`.
    public func localState(room: String) -> LocalRoomState {
        state.withLock { state in
            guard let r = state.rooms[room] else { return LocalRoomState(room: room, connections: 0, visitors: []) }
            return LocalRoomState(room: room, connections: r.connections, visitors: state.visitorIDs(in: r))
        }
    }

    /// Names of all local rooms.
    public func localRoomNames() -> [String] {
        state.withLock { Array($0.rooms.keys) }
    }

    /// The busiest rooms, most online first (then most connections, then name).
    public func busiestRooms(limit: Int) -> [RoomCounts] {
        let local: [RoomCounts] = state.withLock { state in
            state.rooms.values.compactMap { room in room.members.isEmpty && room.connections == 0 ? nil : room.counts }
        }
        let merged = backplane.knownRooms(local: local).filter { $0.online > 0 || $0.connections > 0 }
        let sorted = merged.sorted { a, b in
            if a.online != b.online { return a.online > b.online }
            if a.connections != b.connections { return a.connections > b.connections }
            return a.room < b.room
        }
        return Array(sorted.prefix(max(0, limit)))
    }

    /// Site totals as subscribers see them.
    public func siteCounts() -> SiteCounts {
        backplane.mergeSite(local: state.withLock { $0.siteCounts })
    }

    /// Totals plus peak and uptime.
    public func stats() -> SiteStats {
        let now = time.now
        let (counts, peak, peakAt, subscribers) = state.withLock { s in (s.siteCounts, s.peakOnline, s.peakAt, s.subscriberCount) }
        let uptime = (now - start).seconds
        return SiteStats(
            counts: backplane.mergeSite(local: counts),
            peakOnline: peak,
            peakAt: peakAt.map { configuration.startWallTime + $0.seconds },
            startedAt: configuration.startWallTime,
            uptime: uptime,
            subscribers: subscribers
        )
    }

    /// Whether `shutdown()` has begun.
    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// Whether a join to `room` would be accepted now (the room exists or there is room for one more).
    public func canJoin(room: String) -> Bool {
        state.withLock { !$0.shuttingDown && ($0.rooms[room] != nil || $0.rooms.count < configuration.maxRooms) }
    }

    /// Number of rooms in existence (with a subscriber or a visitor in grace).
    public var roomCount: Int { state.withLock { $0.rooms.count } }

    /// Changes absorbed into an already scheduled flush (each one an event not sent), since start.
    public var coalescedChanges: Int { state.withLock { $0.coalescedChanges } }

    /// Number of subscribers of every kind.
    public var subscriberCount: Int { state.withLock { $0.subscriberCount } }

    // MARK: Delivery

    /// Sends a new subscriber its first event: the current figures.
    private func deliverInitial(_ initial: Work.Initial, to sink: any EventSink) {
        switch initial {
        case .site(let local):
            let counts = backplane.mergeSite(local: local)
            sink.deliver(SSEEncoder.siteEvent(counts), version: counts.version)
        case .room(let local, let format):
            let counts = merged(local)
            sink.deliver(SSEEncoder.roomEvent(counts, format: format), version: counts.version)
        }
    }

    /// Encodes each pending event once and hands the same bytes to every subscriber, outside the lock.
    func perform(_ work: Work) {
        if work.wake != nil || work.resume { notifyScheduler(work) }
        // Nothing to fan out (the usual join or leave in a busy, coalesced room): no clock read either.
        guard !work.rooms.isEmpty || work.site != nil else { return }
        guard let observer else {
            fanOut(work)
            return
        }
        let started = ContinuousClock.now
        let delivered = fanOut(work)
        if delivered > 0 { observer.fanout(subscribers: delivered, duration: ContinuousClock.now - started) }
    }

    /// Tells the scheduler what the operation found (rare: a new earliest deadline, or the end of a park).
    private func notifyScheduler(_ work: Work) {
        guard let scheduler = state.withLock({ $0.scheduler }) else { return }
        if work.resume { scheduler.resume() }
        if let wake = work.wake { scheduler.schedule(at: wake.offset) }
    }

    /// Delivers the work's room and site events; returns the number of subscribers handed one.
    @discardableResult
    private func fanOut(_ work: Work) -> Int {
        var delivered = 0
        for fanout in work.rooms {
            delivered += fanout.roomSubscribers.count + fanout.legacySubscribers.count
            if let local = fanout.localState { backplane.publish(room: local.room, local: local) }
            let counts = merged(fanout.counts)
            if !fanout.roomSubscribers.isEmpty {
                let buffer = SSEEncoder.roomEvent(counts, format: .room)
                for sub in fanout.roomSubscribers { sub.sink?.deliver(buffer, version: counts.version) }
            }
            if !fanout.legacySubscribers.isEmpty {
                let buffer = SSEEncoder.roomEvent(counts, format: .legacy)
                for sub in fanout.legacySubscribers { sub.sink?.deliver(buffer, version: counts.version) }
            }
        }
        if let site = work.site {
            delivered += site.subscribers.count
            let counts = backplane.mergeSite(local: site.counts)
            let buffer = SSEEncoder.siteEvent(counts)
            for sub in site.subscribers { sub.sink?.deliver(buffer, version: counts.version) }
        }
        return delivered
    }
}
