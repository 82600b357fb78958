import HeapModule

/// A visitor's presence in one room.
struct VisitorPresence {
    /// Open counted streams of this visitor in this room.
    var streams: Int
    /// Set while the visitor has no stream but is inside the leave grace.
    var graceDeadline: ContinuousClock.Instant?
}

/// A pending grace expiry. Entries are never removed early: a stale one is skipped when popped.
struct GraceEntry: Comparable {
    var deadline: ContinuousClock.Instant
    var room: String
    var visitor: String
    static func < (a: GraceEntry, b: GraceEntry) -> Bool { a.deadline < b.deadline }
    static func == (a: GraceEntry, b: GraceEntry) -> Bool { a.deadline == b.deadline && a.room == b.room && a.visitor == b.visitor }
}

struct Room {
    let name: String
    var roomSubscribers: ContiguousArray<Subscription> = []
    var legacySubscribers: ContiguousArray<Subscription> = []
    var connections = 0
    var visitors: [String: VisitorPresence] = [:]
    var version: UInt64 = 0
    var peak = 0
    var dirty = false
    var lastBroadcast: ContinuousClock.Instant?

    init(name: String) { self.name = name }

    var subscriberTotal: Int { roomSubscribers.count + legacySubscribers.count }
    var isEmpty: Bool { roomSubscribers.isEmpty && legacySubscribers.isEmpty && visitors.isEmpty && connections == 0 }
    var counts: RoomCounts { RoomCounts(room: name, online: visitors.count, connections: connections, peak: peak, version: version) }

    mutating func add(_ sub: Subscription, format: EventFormat) {
        switch format {
        case .room:
            sub.index = roomSubscribers.count
            roomSubscribers.append(sub)
        case .legacy:
            sub.index = legacySubscribers.count
            legacySubscribers.append(sub)
        }
    }

    mutating func remove(_ sub: Subscription, format: EventFormat) {
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
    /// Visitor id → number of rooms where the visitor is counted.
    var siteVisitors: [String: Int] = [:]
    var siteConnections = 0
    var occupiedRooms = 0
    var siteVersion: UInt64 = 0
    var siteDirty = false
    var siteLastBroadcast: ContinuousClock.Instant?
    var sequence: UInt64
    var dirtyRooms: [String] = []
    var graces = Heap<GraceEntry>()
    var peakOnline = 0
    var peakAt: ContinuousClock.Instant?
    var nextSubscriptionID: UInt64 = 0
    var subscriberCount = 0
    var shuttingDown = false
    var publishLocalState = false
    var coalescedChanges = 0

    init(sequence: UInt64) {
        self.sequence = sequence
        self.siteVersion = sequence
    }

    var siteCounts: SiteCounts {
        SiteCounts(online: siteVisitors.count, connections: siteConnections, rooms: occupiedRooms, version: siteVersion)
    }

    mutating func nextVersion() -> UInt64 {
        sequence &+= 1
        return sequence
    }

    // MARK: Streams and visitors

    mutating func addStream(room name: String, visitor: VisitorIdentity, now: ContinuousClock.Instant) {
        rooms[name]!.connections += 1
        siteConnections += 1
        let id = visitor.id
        if var presence = rooms[name]!.visitors[id] {
            presence.streams += 1
            presence.graceDeadline = nil
            rooms[name]!.visitors[id] = presence
        } else {
            rooms[name]!.visitors[id] = VisitorPresence(streams: 1, graceDeadline: nil)
            if rooms[name]!.visitors.count == 1 { occupiedRooms += 1 }
            siteVisitors[id, default: 0] += 1
            if siteVisitors.count > peakOnline {
                peakOnline = siteVisitors.count
                peakAt = now
            }
        }
    }

    mutating func removeStream(room name: String, visitor: VisitorIdentity, graceUntil: ContinuousClock.Instant?) {
        rooms[name]!.connections -= 1
        siteConnections -= 1
        let id = visitor.id
        guard var presence = rooms[name]!.visitors[id] else {
            assertionFailure("stream left for a visitor that is not present")
            return
        }
        presence.streams -= 1
        if presence.streams > 0 {
            rooms[name]!.visitors[id] = presence
        } else if let deadline = graceUntil {
            presence.graceDeadline = deadline
            rooms[name]!.visitors[id] = presence
            graces.insert(GraceEntry(deadline: deadline, room: name, visitor: id))
        } else {
            removeVisitor(room: name, id: id)
        }
    }

    mutating func removeVisitor(room name: String, id: String) {
        rooms[name]!.visitors.removeValue(forKey: id)
        if rooms[name]!.visitors.isEmpty { occupiedRooms -= 1 }
        if let n = siteVisitors[id] {
            if n <= 1 { siteVisitors.removeValue(forKey: id) } else { siteVisitors[id] = n - 1 }
        }
    }

    mutating func collectIfEmpty(_ name: String) {
        if let room = rooms[name], room.isEmpty, !room.dirty { rooms.removeValue(forKey: name) }
    }

    // MARK: Change notification

    /// Records a change of `name` and either flushes it now (first change after a quiet period) or
    /// leaves it for the next due flush.
    mutating func changed(room name: String, now: ContinuousClock.Instant, configuration: PresenceConfiguration, work: inout Work, localChange: Bool = true) {
        let version = nextVersion()
        rooms[name]!.version = version
        let online = rooms[name]!.visitors.count
        if online > rooms[name]!.peak { rooms[name]!.peak = online }
        if localChange { siteChanged(now: now, configuration: configuration, work: &work) }
        if rooms[name]!.dirty {
            coalescedChanges += 1
            return
        }
        let interval = configuration.coalescingInterval(subscribers: rooms[name]!.subscriberTotal)
        if let last = rooms[name]!.lastBroadcast, now - last < interval {
            rooms[name]!.dirty = true
            dirtyRooms.append(name)
            return
        }
        flush(room: name, now: now, work: &work)
    }

    mutating func siteChanged(now: ContinuousClock.Instant, configuration: PresenceConfiguration, work: inout Work) {
        siteVersion = nextVersion()
        if siteDirty {
            coalescedChanges += 1
            return
        }
        let interval = configuration.coalescingInterval(subscribers: siteSubscribers.count)
        if let last = siteLastBroadcast, now - last < interval {
            siteDirty = true
            return
        }
        flushSite(now: now, work: &work)
    }

    mutating func flush(room name: String, now: ContinuousClock.Instant, work: inout Work) {
        guard let room = rooms[name] else { return }
        rooms[name]!.lastBroadcast = now
        rooms[name]!.dirty = false
        let local = publishLocalState ? LocalRoomState(room: name, connections: room.connections, visitors: Array(room.visitors.keys)) : nil
        work.rooms.append(
            Work.RoomFanout(counts: room.counts, roomSubscribers: room.roomSubscribers, legacySubscribers: room.legacySubscribers, localState: local)
        )
        collectIfEmpty(name)
    }

    mutating func flushSite(now: ContinuousClock.Instant, work: inout Work) {
        siteLastBroadcast = now
        siteDirty = false
        work.site = Work.SiteFanout(counts: siteCounts, subscribers: siteSubscribers)
    }

    mutating func expireGraces(now: ContinuousClock.Instant, configuration: PresenceConfiguration, work: inout Work) {
        while let top = graces.min, top.deadline <= now {
            _ = graces.popMin()
            guard let presence = rooms[top.room]?.visitors[top.visitor], presence.streams == 0, presence.graceDeadline == top.deadline else {
                continue  // the visitor came back, or this entry was superseded
            }
            removeVisitor(room: top.room, id: top.visitor)
            changed(room: top.room, now: now, configuration: configuration, work: &work)
        }
    }

    mutating func flushDue(now: ContinuousClock.Instant, configuration: PresenceConfiguration, work: inout Work) {
        if !dirtyRooms.isEmpty {
            var stillDirty: [String] = []
            for name in dirtyRooms {
                guard let room = rooms[name], room.dirty else { continue }
                let interval = configuration.coalescingInterval(subscribers: room.subscriberTotal)
                if let last = room.lastBroadcast, now - last < interval {
                    stillDirty.append(name)
                } else {
                    flush(room: name, now: now, work: &work)
                }
            }
            dirtyRooms = stillDirty
        }
        if siteDirty {
            let interval = configuration.coalescingInterval(subscribers: siteSubscribers.count)
            if let last = siteLastBroadcast, now - last < interval { return }
            flushSite(now: now, work: &work)
        }
    }
}
