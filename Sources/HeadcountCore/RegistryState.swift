import HeapModule

/// A visitor's presence in one room.
struct VisitorPresence {
    /// Open counted streams of this visitor in this room.
    var streams: Int
    /// Set while the visitor has no stream but is inside the leave grace.
    var graceDeadline: Moment?

    mutating func addStream() {
        streams += 1
        graceDeadline = nil
    }
}

/// A pending grace expiry. Entries are never removed early: a stale one is skipped when popped.
struct GraceEntry: Comparable {
    var deadline: Moment
    var room: String
    var visitor: String
    static func < (a: GraceEntry, b: GraceEntry) -> Bool { a.deadline < b.deadline }
    static func == (a: GraceEntry, b: GraceEntry) -> Bool { a.deadline == b.deadline && a.room == b.room && a.visitor == b.visitor }
}

/// One room's subscribers and presence. A reference type, so that a subscription can hold its room and
/// leave it without looking the room up by name; touched only under the registry's lock.
///
/// Its fields are `@exclusivity(unchecked)`: every access to a class's stored property otherwise costs a
/// runtime exclusivity check (`swift_beginAccess`, a thread-local access set), together about a sixth of
/// a join+leave pair in a profile. The registry's lock already serializes all access, and no method here
/// passes one of these fields `inout` while touching it again.
final class Room {
    let name: String
    @exclusivity(unchecked) var roomSubscribers: ContiguousArray<Subscription> = []
    @exclusivity(unchecked) var legacySubscribers: ContiguousArray<Subscription> = []
    /// Streams that receive this room's events, however they are delivered (one by one, or through a
    /// per-event-loop relay): what one event costs, and so what sizes coalescing and the fan-out budget.
    @exclusivity(unchecked) var audience = 0
    @exclusivity(unchecked) var connections = 0
    @exclusivity(unchecked) var visitors: [String: VisitorPresence] = [:]
    @exclusivity(unchecked) var version: UInt64 = 0
    @exclusivity(unchecked) var peak = 0
    @exclusivity(unchecked) var dirty = false
    @exclusivity(unchecked) var lastBroadcast: Moment?
    /// When the figures last changed: a stretched interval lets a burst's final state out once the room
    /// has been quiet for the plain update interval (see `flushDue`).
    @exclusivity(unchecked) var lastChange: Moment?

    init(name: String) { self.name = name }

    var isEmpty: Bool { audience == 0 && roomSubscribers.isEmpty && legacySubscribers.isEmpty && visitors.isEmpty && connections == 0 }
    var counts: RoomCounts { RoomCounts(room: name, online: visitors.count, connections: connections, peak: peak, version: version) }

    /// One more stream of `id`; returns whether the visitor is new here and whether the room was empty.
    func addStream(visitor id: String) -> (isNew: Bool, first: Bool) {
        connections += 1
        let before = visitors.count
        visitors[id, default: VisitorPresence(streams: 0, graceDeadline: nil)].addStream()
        let isNew = visitors.count > before
        return (isNew, isNew && before == 0)
    }

    enum StreamRemoval {
        case stillPresent
        case inGrace(Moment)
        case removed(roomEmpty: Bool)
        case missing
    }

    func removeStream(visitor id: String, graceUntil: Moment?) -> StreamRemoval {
        connections -= 1
        guard let i = visitors.index(forKey: id) else {
            assertionFailure("stream left for a visitor that is not present")
            return .missing
        }
        visitors.values[i].streams -= 1
        if visitors.values[i].streams > 0 { return .stillPresent }
        if let deadline = graceUntil {
            visitors.values[i].graceDeadline = deadline
            return .inGrace(deadline)
        }
        visitors.remove(at: i)
        return .removed(roomEmpty: visitors.isEmpty)
    }

    /// Removes `id` if it is still waiting out exactly this grace; returns whether the room became empty,
    /// or nil when the entry is stale.
    func expire(visitor id: String, deadline: Moment) -> Bool? {
        guard let i = visitors.index(forKey: id), visitors.values[i].streams == 0, visitors.values[i].graceDeadline == deadline else { return nil }
        visitors.remove(at: i)
        return visitors.isEmpty
    }

    enum ChangeOutcome {
        case alreadyDirty
        case deferred
        case flushNow
    }

    /// Records a change. It goes out at once when the room was quiet: its last event is older than the
    /// room's (stretched) interval, or older than `--update-interval` with no other change in the last
    /// `--update-interval` (an isolated change in a large room). A busy room holds it for its interval
    /// (see `PresenceConfiguration.coalescingInterval`); the global budget bounds what either costs.
    func noteChange(version: UInt64, now: Moment, configuration: PresenceConfiguration, cost: Duration) -> ChangeOutcome {
        self.version = version
        let previousChange = lastChange
        lastChange = now
        if visitors.count > peak { peak = visitors.count }
        if dirty { return .alreadyDirty }
        if let last = lastBroadcast {
            let since = now - last
            let busy = previousChange.map { now - $0 < configuration.updateInterval } ?? false
            if since < configuration.updateInterval || (busy && since < configuration.coalescingInterval(subscribers: audience, cost: cost)) {
                dirty = true
                return .deferred
            }
        }
        return .flushNow
    }

    /// Whether a room held by its stretched interval has gone quiet: no change for the plain update interval
    /// (and at least that long since its last event). Its held state then goes out without waiting for the
    /// rest of the interval, budget permitting: a join storm's final count arrives ~100 ms after the last
    /// join, while the global budget still bounds what such flushes cost.
    func burstEnded(now: Moment, since last: Moment, configuration: PresenceConfiguration) -> Bool {
        guard let changed = lastChange else { return true }
        return now - last >= configuration.updateInterval && now - changed >= configuration.updateInterval
    }

    /// Adds a subscriber that has a sink; a sink-less one (delivered through a relay) only joins the audience.
    func add(_ sub: Subscription, format: EventFormat) {
        audience += sub.audience
        guard sub.sink != nil else { return }
        switch format {
        case .room:
            sub.index = roomSubscribers.count
            roomSubscribers.append(sub)
        case .legacy:
            sub.index = legacySubscribers.count
            legacySubscribers.append(sub)
        }
    }

    func remove(_ sub: Subscription, format: EventFormat) {
        audience -= sub.audience
        guard sub.sink != nil else { return }
        switch format {
        case .room: roomSubscribers.swapRemove(sub)
        case .legacy: legacySubscribers.swapRemove(sub)
        }
    }
}

extension ContiguousArray where Element == Subscription {
    /// O(1) removal: the last subscriber takes the removed one's place.
    mutating func swapRemove(_ sub: Subscription) {
        let i = sub.index
        precondition(i >= 0 && i < count && self[i] === sub, "subscription index out of sync")
        let last = removeLast()
        if i < count {
            self[i] = last
            last.index = i
        }
        sub.index = -1
    }
}

/// Work computed under the lock and carried out after it is released.
struct Work {
    enum Initial {
        case room(RoomCounts)
        case site(SiteCounts)
    }
    struct RoomFanout {
        var counts: RoomCounts
        var roomSubscribers: ContiguousArray<Subscription>
        var legacySubscribers: ContiguousArray<Subscription>
        var localState: LocalRoomState?
    }
    struct SiteFanout {
        var counts: SiteCounts
        var subscribers: ContiguousArray<Subscription>
    }
    var initial: (any EventSink, Initial, SubscriptionTarget)?
    var rooms: [RoomFanout] = []
    var site: SiteFanout?
}

struct State {
    var rooms: [String: Room] = [:]
    var siteSubscribers: ContiguousArray<Subscription> = []
    /// Streams that receive site events (see `Room.audience`).
    var siteAudience = 0
    /// Visitor id → number of rooms where the visitor is counted.
    var siteVisitors: [String: Int] = [:]
    var siteConnections = 0
    var occupiedRooms = 0
    var siteVersion: UInt64 = 0
    var siteDirty = false
    var siteLastBroadcast: Moment?
    var sequence: UInt64
    var dirtyRooms: [String] = []
    var graces = Heap<GraceEntry>()
    var peakOnline = 0
    var peakAt: Moment?
    var nextSubscriptionID: UInt64 = 0
    var subscriberCount = 0
    var shuttingDown = false
    var publishLocalState = false
    var coalescedChanges = 0
    /// Measured cost of one delivery: decayed sums over the last ~50,000 deliveries (`recordFanout`).
    var measuredNanoseconds: Double = 0
    var measuredDeliveries: Double = 0
    /// Global fan-out budget, in deliveries (a token bucket): see `PresenceConfiguration.fanoutBudget`.
    var budgetTokens = Double.infinity
    var budgetRefilledAt: Moment?

    init(sequence: UInt64) {
        self.sequence = sequence
        self.siteVersion = sequence
    }

    var siteCounts: SiteCounts {
        SiteCounts(online: siteVisitors.count, connections: siteConnections, rooms: occupiedRooms, version: siteVersion)
    }

    /// Adds one fan-out's measured cost; the newest ~50,000 deliveries weigh in.
    mutating func recordFanout(deliveries: Int, nanoseconds: Int64) {
        let window = 50_000.0
        let total = measuredDeliveries + Double(deliveries)
        if total > window {
            let keep = max(0, window - Double(deliveries)) / max(measuredDeliveries, 1)
            measuredNanoseconds *= keep
            measuredDeliveries *= keep
        }
        measuredNanoseconds += Double(nanoseconds)
        measuredDeliveries += Double(deliveries)
    }

    /// What one delivery costs: measured once 1,000 deliveries have been timed (clamped to 0.5 µs…1 ms),
    /// the configured estimate before that.
    func fanoutCost(_ configuration: PresenceConfiguration) -> Duration {
        guard measuredDeliveries >= 1_000 else { return configuration.fanoutCostPerSubscriber }
        let perDelivery = measuredNanoseconds / measuredDeliveries
        return .nanoseconds(Int64(min(max(perDelivery, 500), 1_000_000)))
    }

    mutating func nextVersion() -> UInt64 {
        sequence &+= 1
        return sequence
    }

    // MARK: Streams and visitors
    //
    // Operations take the `Room` itself: a join looks its room up once, a leave not at all (the
    // subscription holds its room). A visitor id is hashed once per dictionary it touches.

    mutating func addStream(room: Room, visitor: VisitorIdentity, now: Moment) {
        let id = visitor.id
        let (isNewVisitor, firstVisitor) = room.addStream(visitor: id)
        siteConnections += 1
        guard isNewVisitor else { return }
        if firstVisitor { occupiedRooms += 1 }
        let before = siteVisitors.count
        siteVisitors[id, default: 0] += 1
        if siteVisitors.count > before, siteVisitors.count > peakOnline {
            peakOnline = siteVisitors.count
            peakAt = now
        }
    }

    mutating func removeStream(room: Room, visitor: VisitorIdentity, graceUntil: Moment?) {
        let id = visitor.id
        siteConnections -= 1
        switch room.removeStream(visitor: id, graceUntil: graceUntil) {
        case .stillPresent, .missing:
            break
        case .inGrace(let deadline):
            graces.insert(GraceEntry(deadline: deadline, room: room.name, visitor: id))
        case .removed(let roomEmpty):
            visitorLeft(id: id, roomEmpty: roomEmpty)
        }
    }

    /// Removes a visitor in grace whose deadline passed; returns the room, or nil when the entry was stale.
    mutating func expireVisitor(room name: String, id: String, deadline: Moment) -> Room? {
        guard let room = rooms[name], let roomEmpty = room.expire(visitor: id, deadline: deadline) else { return nil }
        visitorLeft(id: id, roomEmpty: roomEmpty)
        return room
    }

    private mutating func visitorLeft(id: String, roomEmpty: Bool) {
        if roomEmpty { occupiedRooms -= 1 }
        if let i = siteVisitors.index(forKey: id) {
            if siteVisitors.values[i] <= 1 { siteVisitors.remove(at: i) } else { siteVisitors.values[i] -= 1 }
        }
    }

    mutating func collectIfEmpty(_ room: Room) {
        if room.isEmpty, !room.dirty, rooms[room.name] === room { rooms.removeValue(forKey: room.name) }
    }

    // MARK: Change notification

    /// Records a change of `name` and either flushes it now (first change after a quiet period) or
    /// leaves it for the next due flush.
    mutating func changed(room: Room, now: Moment, configuration: PresenceConfiguration, work: inout Work, localChange: Bool = true) {
        let version = nextVersion()
        if localChange { siteChanged(now: now, configuration: configuration, work: &work) }
        switch room.noteChange(version: version, now: now, configuration: configuration, cost: fanoutCost(configuration)) {
        case .alreadyDirty:
            coalescedChanges += 1
        case .deferred:
            dirtyRooms.append(room.name)
        case .flushNow:
            if spend(room.audience, now: now, configuration: configuration) {
                flush(room: room, now: now, work: &work)
            } else {
                room.dirty = true
                dirtyRooms.append(room.name)
            }
        }
    }

    /// Takes `deliveries` from the global fan-out budget if any is left (the bucket may go negative by
    /// one flush, so a room larger than the bucket still goes out; later flushes wait for the refill).
    mutating func spend(_ deliveries: Int, now: Moment, configuration: PresenceConfiguration) -> Bool {
        guard let budget = configuration.fanoutBudget(cost: fanoutCost(configuration)) else { return true }
        if let last = budgetRefilledAt {
            budgetTokens = min(budget.burst, budgetTokens + budget.perSecond * (now - last).seconds)
        } else {
            budgetTokens = budget.burst
        }
        budgetRefilledAt = now
        guard budgetTokens > 0 || deliveries == 0 else { return false }
        budgetTokens -= Double(deliveries)
        return true
    }

    mutating func siteChanged(now: Moment, configuration: PresenceConfiguration, work: inout Work) {
        siteVersion = nextVersion()
        if siteDirty {
            coalescedChanges += 1
            return
        }
        let interval = configuration.coalescingInterval(subscribers: siteAudience, cost: fanoutCost(configuration))
        if let last = siteLastBroadcast, now - last < interval {
            siteDirty = true
            return
        }
        guard spend(siteAudience, now: now, configuration: configuration) else {
            siteDirty = true
            return
        }
        flushSite(now: now, work: &work)
    }

    mutating func flush(room: Room, now: Moment, work: inout Work) {
        room.lastBroadcast = now
        room.dirty = false
        let local = publishLocalState ? LocalRoomState(room: room.name, connections: room.connections, visitors: Array(room.visitors.keys)) : nil
        work.rooms.append(
            Work.RoomFanout(counts: room.counts, roomSubscribers: room.roomSubscribers, legacySubscribers: room.legacySubscribers, localState: local)
        )
        collectIfEmpty(room)
    }

    mutating func flushSite(now: Moment, work: inout Work) {
        siteLastBroadcast = now
        siteDirty = false
        work.site = Work.SiteFanout(counts: siteCounts, subscribers: siteSubscribers)
    }

    mutating func expireGraces(now: Moment, configuration: PresenceConfiguration, work: inout Work) {
        while let top = graces.min, top.deadline <= now {
            _ = graces.popMin()
            // A stale entry (the visitor came back, or a later grace superseded it) changes nothing.
            guard let room = expireVisitor(room: top.room, id: top.visitor, deadline: top.deadline) else { continue }
            changed(room: room, now: now, configuration: configuration, work: &work)
        }
    }

    mutating func flushDue(now: Moment, configuration: PresenceConfiguration, work: inout Work) {
        if !dirtyRooms.isEmpty {
            var stillDirty: [String] = []
            for name in dirtyRooms {
                guard let room = rooms[name], room.dirty else { continue }
                let interval = configuration.coalescingInterval(subscribers: room.audience, cost: fanoutCost(configuration))
                if let last = room.lastBroadcast, now - last < interval, !room.burstEnded(now: now, since: last, configuration: configuration) {
                    stillDirty.append(name)
                } else if spend(room.audience, now: now, configuration: configuration) {
                    flush(room: room, now: now, work: &work)
                } else {
                    stillDirty.append(name)  // waits for the budget, keeping its place in line
                }
            }
            dirtyRooms = stillDirty
        }
        if siteDirty {
            let interval = configuration.coalescingInterval(subscribers: siteAudience, cost: fanoutCost(configuration))
            if let last = siteLastBroadcast, now - last < interval { return }
            guard spend(siteAudience, now: now, configuration: configuration) else { return }
            flushSite(now: now, work: &work)
        }
    }
}
