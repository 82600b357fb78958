import Synchronization

/// Online-visitor history: one sample a second in a fixed-size ring per room and one for the site.
///
/// Seconds nobody sampled count as zero. The driver stops sampling while the site is empty (its last
/// sample was 0): the next `record` fills the skipped seconds with zeros, and until then a read reports a
/// zero for every second after a ring's last sample when that sample was 0. So the history still has one
/// sample a second for the whole window, though an idle server takes none.
///
/// Memory is bounded twice: each ring holds `capacity` samples (an hour by default), and at most
/// `maxRooms` rooms keep a ring (the rooms sampled most recently win; an idle room's ring is dropped when
/// the cap is reached).
public final class HistoryStore: Sendable {
    public let capacity: Int
    public let maxRooms: Int

    struct Ring {
        var start: Int64  // unix second of samples[head]
        var values: [Int32]
        var head = 0
        var count = 0
        var lastTouched: Int64

        init(capacity: Int, second: Int64) {
            values = Array(repeating: 0, count: capacity)
            start = second
            lastTouched = second
        }

        mutating func record(second: Int64, value: Int, capacity: Int) {
            lastTouched = second
            let v = Int32(clamping: value)
            if count == 0 {
                start = second
                head = 0
                values[0] = v
                count = 1
                return
            }
            let last = start + Int64(count - 1)
            guard second > last else {
                // Same second (or the clock went back): keep the newest value for the latest slot.
                values[(head + count - 1) % capacity] = v
                return
            }
            if second - last > Int64(capacity) {
                // The whole ring is skipped seconds: zeros, then this sample.
                for i in values.indices { values[i] = 0 }
                head = 0
                count = capacity
                start = second - Int64(capacity) + 1
                values[capacity - 1] = v
                return
            }
            // Seconds nobody sampled count as zero.
            var s = last + 1
            while s <= second {
                push(s == second ? v : 0, capacity: capacity)
                s += 1
            }
        }

        private mutating func push(_ value: Int32, capacity: Int) {
            if count < capacity {
                values[(head + count) % capacity] = value
                count += 1
            } else {
                values[head] = value
                head = (head + 1) % capacity
                start += 1
            }
        }

        /// The samples from `since` on and, when the last one was 0, a zero for each later second up to
        /// `now` (sampling stopped while the site was empty; `record` would fill those seconds the same way).
        func samples(since: Int64, now: Int64, capacity: Int) -> [(Int64, Int)] {
            var out: [(Int64, Int)] = []
            guard count > 0 else { return out }
            out.reserveCapacity(count)
            for i in 0..<count {
                let t = start + Int64(i)
                if t >= since { out.append((t, Int(values[(head + i) % capacity]))) }
            }
            let last = start + Int64(count - 1)
            if values[(head + count - 1) % capacity] == 0, last < now {
                var t = max(last + 1, since)
                while t <= now {
                    out.append((t, 0))
                    t += 1
                }
            }
            return out
        }
    }

    private let state = Mutex<(site: Ring?, rooms: [String: Ring])>((nil, [:]))

    public init(capacity: Int = 3600, maxRooms: Int = 1000) {
        self.capacity = max(1, capacity)
        self.maxRooms = max(0, maxRooms)
    }

    /// Records the site total and each room's online count at `second` (unix time).
    public func record(second: Int64, site: Int, rooms: [(String, Int)]) {
        state.withLock { s in
            if s.site == nil { s.site = Ring(capacity: capacity, second: second) }
            s.site!.record(second: second, value: site, capacity: capacity)
            for (name, online) in rooms {
                if s.rooms[name] == nil {
                    guard online > 0 else { continue }
                    if s.rooms.count >= maxRooms {
                        guard let stalest = s.rooms.min(by: { $0.value.lastTouched < $1.value.lastTouched }), stalest.value.lastTouched < second else { continue }
                        s.rooms.removeValue(forKey: stalest.key)
                    }
                    s.rooms[name] = Ring(capacity: capacity, second: second)
                }
                s.rooms[name]!.record(second: second, value: online, capacity: capacity)
            }
            // Rooms that were not sampled this second are empty now: record zeros so charts fall to 0,
            // and forget rings that have been zero for a whole window.
            for name in Array(s.rooms.keys) where s.rooms[name]!.lastTouched < second {
                if second - s.rooms[name]!.lastTouched > Int64(capacity) {
                    s.rooms.removeValue(forKey: name)
                } else {
                    var ring = s.rooms[name]!
                    let touched = ring.lastTouched
                    ring.record(second: second, value: 0, capacity: capacity)
                    ring.lastTouched = touched
                    s.rooms[name] = ring
                }
            }
        }
    }

    /// Samples of the last `window` seconds up to `now`, for a room or (nil) the site. Seconds after the
    /// last sample read as zeros when that sample was 0 (see the type's documentation).
    public func samples(room: String?, window: Int, now: Int64) -> [(Int64, Int)] {
        let since = now - Int64(max(0, window)) + 1
        return state.withLock { s in
            if let room {
                // A ring zero for a whole window is dropped by the next `record`: read it as gone already.
                guard let ring = s.rooms[room], now - ring.lastTouched <= Int64(capacity) else { return [] }
                return ring.samples(since: since, now: now, capacity: capacity)
            }
            return s.site?.samples(since: since, now: now, capacity: capacity) ?? []
        }
    }

    public var roomCount: Int { state.withLock { $0.rooms.count } }
}
