import HeapModule

/// A visitor's presence in one room.
struct RoomPresence {
    let room: Room
    /// Open counted streams of this visitor in this room.
    var streams: Int
    /// Set while the visitor has no stream but is inside the leave grace.
    var graceDeadline: Moment?
    /// Position of the visitor in `room.members` (swap-remove).
    var memberIndex: Int
}

/// A visitor counted on this node: an entry of `State.visitorSlots`.
///
/// A join finds the slot by id (`State.visitorIndex`, the one hash of the visitor id per join); after
/// that the slot is reached by its number, which the visitor's subscriptions, its room memberships
/// (`Room.members`) and its grace entries hold. A leave therefore hashes no visitor id, except to drop a
/// visitor who left their last room from the index. Slots are reused, so nothing per visitor is allocated.
struct VisitorSlot {
    var id: String
    /// Bumped whenever the slot is freed, so that a grace entry can tell that the slot now holds someone else.
    var generation: UInt32 = 0
    /// The rooms where the visitor is counted: almost always one, kept inline; any others in `more`.
    /// Invariant: `first` is nil only when `more` is empty too.
    var first: RoomPresence?
    var more: [RoomPresence] = []

    /// Where the presence in `room` is: -1 for `first`, an index of `more`, or nil.
    func find(_ room: Room) -> Int? {
        guard let first else { return nil }
        if first.room === room { return -1 }
        return more.firstIndex { $0.room === room }
    }

    subscript(at position: Int) -> RoomPresence {
        position < 0 ? first! : more[position]
    }

    /// Changes the presence at `position` in place (a get and a set would copy it, retaining its room).
    mutating func update<R>(at position: Int, _ body: (inout RoomPresence) -> R) -> R {
        position < 0 ? body(&first!) : body(&more[position])
    }

    mutating func add(_ presence: RoomPresence) {
        if first == nil { first = presence } else { more.append(presence) }
    }

    mutating func remove(at position: Int) {
        if position >= 0 {
            more.remove(at: position)
        } else {
            first = more.popLast()
        }
    }
}

/// A pending grace expiry. Entries are never removed early: a stale one is skipped when popped.
struct GraceEntry: Comparable {
    var deadline: Moment
    var room: Room
    var slot: Int
    var generation: UInt32
    static func < (a: GraceEntry, b: GraceEntry) -> Bool { a.deadline < b.deadline }
    static func == (a: GraceEntry, b: GraceEntry) -> Bool {
        a.deadline == b.deadline && a.room === b.room && a.slot == b.slot && a.generation == b.generation
    }
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
    /// Slots (`State.visitorSlots`) of the visitors counted here, including those in leave grace.
    @exclusivity(unchecked) var members: ContiguousArray<Int> = []
    @exclusivity(unchecked) var version: UInt64 = 0
    @exclusivity(unchecked) var peak = 0
    @exclusivity(unchecked) var dirty = false
    @exclusivity(unchecked) var lastBroadcast: Moment?
    /// When the figures last changed: a stretched interval lets a burst's final state out once the room
    /// has been quiet for the plain update interval (see `flushDue`).
    @exclusivity(unchecked) var lastChange: Moment?

    init(name: String) { self.name = name }

    var isEmpty: Bool { audience == 0 && roomSubscribers.isEmpty && legacySubscribers.isEmpty && members.isEmpty && connections == 0 }
    var counts: RoomCounts { RoomCounts(room: name, online: members.count, connections: connections, peak: peak, version: version) }

    enum ChangeOutcome {
        case alreadyDirty
        case deferred
        case flushNow
    }

    /// Records a change. It goes out at once when the room was quiet: its last event is older than the
    /// room's (stretched) interval, or older than `--update-interval` with no other change in the last
    /// `--update-interval` (an isolated change in a large room). A busy room holds it for its interval
    /// (see `PresenceConfiguration.coalescingInterval`); the global budget bounds what either costs.
    ///
    /// `cost` is evaluated only when a busy room needs its stretched interval (a change to a room that is
    /// already dirty, the usual case in a storm, needs no cost).
    func noteChange(version: UInt64, now: Moment, configuration: PresenceConfiguration, cost: @autoclosure () -> Duration) -> ChangeOutcome {
        self.version = version
        let previousChange = lastChange
        lastChange = now
        if members.count > peak { peak = members.count }
        if dirty { return .alreadyDirty }
        if let last = lastBroadcast {
            let since = now - last
            let busy = previousChange.map { now - $0 < configuration.updateInterval } ?? false
            if since < configuration.updateInterval || (busy && since < configuration.coalescingInterval(subscribers: audience, cost: cost())) {
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
    /// A new subscriber's first event, delivered by `join` itself (kept out of `Work`, which is
    /// returned from every operation and so is copied on every join and leave).
    enum Initial {
        case room(RoomCounts, EventFormat)
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
    var rooms: [RoomFanout] = []
    var site: SiteFanout?
    /// A deadline earlier than the one the driver was given: tell the scheduler (`State.due(at:work:)`).
    var wake: Moment?
    /// The parked driver is to resume its periodic work (`State.unpark`).
    var resume = false
}

struct State {
    var rooms: [String: Room] = [:]
    /// The room of the latest join, while it exists: joins come in bursts to one room (a page goes live, a
    /// link is shared), and a burst then finds its room with one string comparison instead of a hash.
    var lastJoinedRoom: Room?
    var siteSubscribers: ContiguousArray<Subscription> = []
    /// Streams that receive site events (see `Room.audience`).
    var siteAudience = 0
    /// Visitor id → slot in `visitorSlots`, for every visitor counted in some room (its count is the
    /// site's `online`).
    var visitorIndex: [String: Int] = [:]
    var visitorSlots: ContiguousArray<VisitorSlot> = []
    /// Slots free for reuse.
    var freeSlots: [Int] = []
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
    /// The driver (`PresenceRegistry.setScheduler`); nil: nobody is told of deadlines (tests call `tick()`).
    var scheduler: (any RegistryScheduler)?
    /// The earliest deadline the driver will wake for: what `tick()` last returned, or an earlier one the
    /// scheduler was told of since. A new deadline at or after it needs no call.
    var scheduledDeadline: Moment?
    /// The driver stopped its periodic work because the registry was empty (`parkIfIdle`).
    var driverParked = false

    init(sequence: UInt64) {
        self.sequence = sequence
        self.siteVersion = sequence
        // Room for the first visitors, so that the first joins do not pay for growing these tables.
        visitorSlots.reserveCapacity(64)
        freeSlots.reserveCapacity(64)
    }

    var siteCounts: SiteCounts {
        SiteCounts(online: visitorIndex.count, connections: siteConnections, rooms: occupiedRooms, version: siteVersion)
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
    // subscription holds its room). A join hashes the visitor id once (`visitorIndex`); a leave hashes it
    // only when the visitor left their last room (see `VisitorSlot`).

    /// One more stream of visitor `id` in `room`; returns the visitor's slot, which the subscription keeps.
    mutating func addStream(room: Room, visitor id: String, now: Moment) -> Int {
        room.connections += 1
        siteConnections += 1
        // Look the id up and, when it is new, enter it with one hash: the slot it will get is known
        // beforehand (the last free one, or a new one at the end).
        let candidate = freeSlots.last ?? visitorSlots.count
        var isNewVisitor = false
        func claim(_ slot: inout Int) -> Int {
            if slot < 0 {
                slot = candidate
                isNewVisitor = true
            }
            return slot
        }
        let slot = claim(&visitorIndex[id, default: -1])
        if isNewVisitor {
            if slot == visitorSlots.count {
                visitorSlots.append(VisitorSlot(id: id))
            } else {
                freeSlots.removeLast()
                visitorSlots[slot].id = id
            }
            if visitorIndex.count > peakOnline {
                peakOnline = visitorIndex.count
                peakAt = now
            }
        }
        if let position = visitorSlots[slot].find(room) {
            visitorSlots[slot].update(at: position) { presence in
                presence.streams += 1
                presence.graceDeadline = nil
            }
        } else {
            visitorSlots[slot].add(RoomPresence(room: room, streams: 1, graceDeadline: nil, memberIndex: room.members.count))
            room.members.append(slot)
            if room.members.count == 1 { occupiedRooms += 1 }
        }
        return slot
    }

    /// One stream fewer of the visitor in `slot`; their last one starts the grace when `graceUntil` is set.
    /// Returns whether it did (a grace entry was added).
    @discardableResult
    mutating func removeStream(room: Room, slot: Int, graceUntil: Moment?) -> Bool {
        room.connections -= 1
        siteConnections -= 1
        guard slot >= 0, slot < visitorSlots.count, let position = visitorSlots[slot].find(room) else {
            assertionFailure("stream left for a visitor that is not present")
            return false
        }
        let stillPresent = visitorSlots[slot].update(at: position) { presence in
            presence.streams -= 1
            if presence.streams == 0, let graceUntil { presence.graceDeadline = graceUntil }
            return presence.streams > 0
        }
        if stillPresent { return false }
        if let deadline = graceUntil {
            graces.insert(GraceEntry(deadline: deadline, room: room, slot: slot, generation: visitorSlots[slot].generation))
            return true
        }
        removePresence(slot: slot, position: position, room: room)
        return false
    }

    /// Removes a visitor in grace whose deadline passed; returns the room, or nil when the entry was stale
    /// (the visitor came back, a later grace superseded it, or the slot went to someone else).
    mutating func expire(_ entry: GraceEntry) -> Room? {
        guard visitorSlots[entry.slot].generation == entry.generation, let position = visitorSlots[entry.slot].find(entry.room) else { return nil }
        let presence = visitorSlots[entry.slot][at: position]
        guard presence.streams == 0, presence.graceDeadline == entry.deadline else { return nil }
        removePresence(slot: entry.slot, position: position, room: entry.room)
        return entry.room
    }

    /// The visitor in `slot` is no longer counted in `room`; a visitor in no room any more leaves the site.
    private mutating func removePresence(slot: Int, position: Int, room: Room) {
        let memberIndex = visitorSlots[slot][at: position].memberIndex
        visitorSlots[slot].remove(at: position)
        // Swap-remove from the room's members; the member moved into the gap learns its new position.
        let last = room.members.removeLast()
        if memberIndex < room.members.count {
            room.members[memberIndex] = last
            if let moved = visitorSlots[last].find(room) { visitorSlots[last].update(at: moved) { $0.memberIndex = memberIndex } }
        }
        if room.members.isEmpty { occupiedRooms -= 1 }
        if visitorSlots[slot].first == nil {
            visitorIndex.removeValue(forKey: visitorSlots[slot].id)
            visitorSlots[slot].id = ""
            visitorSlots[slot].generation &+= 1
            freeSlots.append(slot)
        }
    }

    /// Ids of the visitors counted in `room`.
    func visitorIDs(in room: Room) -> [String] {
        room.members.map { visitorSlots[$0].id }
    }

    mutating func collectIfEmpty(_ room: Room) {
        if room.isEmpty, !room.dirty, rooms[room.name] === room {
            rooms.removeValue(forKey: room.name)
            if lastJoinedRoom === room { lastJoinedRoom = nil }
        }
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
            roomHeld(room, configuration: configuration, work: &work)
        case .flushNow:
            if spend(room.audience, now: now, configuration: configuration) {
                flush(room: room, now: now, work: &work)
            } else {
                room.dirty = true
                dirtyRooms.append(room.name)
                roomHeld(room, configuration: configuration, work: &work)
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
            siteHeld(configuration: configuration, work: &work)
            return
        }
        guard spend(siteAudience, now: now, configuration: configuration) else {
            siteDirty = true
            siteHeld(configuration: configuration, work: &work)
            return
        }
        flushSite(now: now, work: &work)
    }

    mutating func flush(room: Room, now: Moment, work: inout Work) {
        room.lastBroadcast = now
        room.dirty = false
        let local = publishLocalState ? LocalRoomState(room: room.name, connections: room.connections, visitors: visitorIDs(in: room)) : nil
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
            guard let room = expire(top) else { continue }
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
