public import HeadcountCore

/// The merge rules: from this node's figures and the other nodes' contributions to global figures.
extension ClusterState {
    private mutating func remoteRoom(_ room: String) -> RemoteRoom? {
        if let cached = roomCache[room] { return cached }
        var r = RemoteRoom()
        var any = false
        for n in nodes.values {
            guard let c = n.rooms[room]?.contribution else { continue }
            any = true
            add(c, to: &r)
        }
        guard any else { return nil }
        roomCache[room] = r
        return r
    }

    private func add(_ c: Contribution, to r: inout RemoteRoom) {
        r.connections += c.connections
        r.sumVisitors += c.visitors
        r.maxVisitors = max(r.maxVisitors, c.visitors)
        switch c.payload {
        case .exact(let hashes): r.exact.formUnion(hashes)
        case .sketch(let sketch): r.sketches.append(sketch)
        }
    }

    /// The union sketch of a remote aggregate (built once, cached by the caller).
    private func unionSketch(_ r: RemoteRoom) -> HyperLogLog {
        if let union = r.union { return union }
        var sketch = HyperLogLog(precision: precision)
        for s in r.sketches where s.precision == precision { sketch.formUnion(s) }
        for h in r.exact { sketch.insert(h) }
        return sketch
    }

    /// A count from a sketch, kept within what the exact per-node counts allow.
    private func clamp(_ estimate: Int, lower: Int, upper: Int) -> Int {
        min(max(estimate, lower), max(lower, upper))
    }

    /// The figures subscribers of `local.room` should see.
    ///
    /// Connections add up. Visitors: when every node shares an exact set, the local count plus the remote
    /// visitors not also here (exact); when any node is above the exact limit, the estimate of the union
    /// of all sketches, kept between the largest single node's count and the sum of them.
    public mutating func mergeRoom(_ local: RoomCounts) -> RoomCounts {
        var merged = local
        merged.partial = degraded
        guard var remote = remoteRoom(local.room) else { return merged }
        merged.connections += remote.connections
        let entry = self.local[local.room]
        let key = entry?.version ?? 0
        let exact = remote.sketches.isEmpty && (entry?.hashes.count ?? 0) <= exactLimit
        let value: Int
        if let cached = remote.visitorsFor, cached.local == key {
            value = cached.value
        } else if exact {
            // Remote visitors not also counted here.
            let localHashes = entry?.hashes ?? []
            var extra = 0
            for h in remote.exact where !localHashes.contains(h) { extra += 1 }
            value = extra
        } else {
            if remote.union == nil { remote.union = unionSketch(remote) }
            var sketch = remote.union!
            if entry != nil { sketch.formUnion(localSketch(local.room)) }
            value = Int(sketch.estimate().rounded())
        }
        if remote.visitorsFor?.local != key {
            remote.visitorsFor = (key, value)
            roomCache[local.room] = remote
        }
        if exact {
            merged.online = local.online + value
        } else {
            merged.online = clamp(value, lower: max(local.online, remote.maxVisitors), upper: local.online + remote.sumVisitors)
        }
        merged.peak = max(merged.peak, merged.online)
        return merged
    }

    private mutating func remoteSite() -> RemoteSite? {
        if let cached = siteCache { return cached }
        var site = RemoteSite()
        var any = false
        for n in nodes.values {
            for (room, entry) in n.rooms {
                guard let c = entry.contribution else { continue }
                any = true
                add(c, to: &site.room)
                if c.visitors > 0 { site.occupiedRooms.insert(room) }
            }
        }
        guard any else { return nil }
        siteCache = site
        return site
    }

    /// Site totals subscribers should see, by the same rules as rooms.
    public mutating func mergeSite(_ local: SiteCounts) -> SiteCounts {
        var merged = local
        merged.partial = degraded
        guard var remote = remoteSite() else { return merged }
        merged.connections += remote.room.connections
        var extraRooms = 0
        for room in remote.occupiedRooms where self.local[room]?.hashes.isEmpty ?? true { extraRooms += 1 }
        merged.rooms = local.rooms + extraRooms
        let exact = remote.room.sketches.isEmpty && largeLocalRooms == 0
        let value: Int
        if let cached = remote.room.visitorsFor, cached.local == localSiteGeneration {
            value = cached.value
        } else if exact {
            var extra = 0
            for h in remote.room.exact where localSite[h] == nil { extra += 1 }
            value = extra
        } else {
            if remote.room.union == nil { remote.room.union = unionSketch(remote.room) }
            var sketch = remote.room.union!
            if localSiteSketch == nil { localSiteSketch = HyperLogLog(hashes: localSite.keys, precision: precision) }
            sketch.formUnion(localSiteSketch!)
            value = Int(sketch.estimate().rounded())
        }
        if remote.room.visitorsFor?.local != localSiteGeneration {
            remote.room.visitorsFor = (localSiteGeneration, value)
            siteCache = remote
        }
        if exact {
            merged.online = local.online + value
        } else {
            merged.online = clamp(value, lower: max(local.online, remote.room.maxVisitors), upper: local.online + remote.room.sumVisitors)
        }
        return merged
    }

    /// Local rooms merged, plus rooms that only other nodes have.
    public mutating func knownRooms(_ local: [RoomCounts]) -> [RoomCounts] {
        var result = local.map { mergeRoom($0) }
        let localNames = Set(local.map(\.room))
        var remoteOnly: Set<String> = []
        for n in nodes.values {
            for (room, entry) in n.rooms where entry.contribution != nil && !localNames.contains(room) { remoteOnly.insert(room) }
        }
        for room in remoteOnly.sorted() { result.append(mergeRoom(RoomCounts(room: room))) }
        return result
    }

    /// Every room some other node contributes to.
    public var remoteRoomNames: Set<String> {
        var names: Set<String> = []
        for n in nodes.values {
            for (room, entry) in n.rooms where entry.contribution != nil { names.insert(room) }
        }
        return names
    }
}
