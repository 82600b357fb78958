import HeadcountCluster
import HeadcountCore
import Testing

@Suite struct MergeTests {
    @Test func visitorsSpreadOverNodesAreCountedOnce() {
        var c = FakeCluster(nodes: ["a", "b", "c"])
        c.open("a", room: "r", visitor: "v1")
        c.open("a", room: "r", visitor: "v2")
        c.open("b", room: "r", visitor: "v3")
        c.open("c", room: "r", visitor: "v4")
        for node in ["a", "b", "c"] {
            let counts = c.counts(node, room: "r")
            #expect(counts.online == 4)
            #expect(counts.connections == 4)
            #expect(!counts.partial)
        }
    }

    @Test func twoTabsOfOneVisitorOnTwoNodesCountOnce() {
        var c = FakeCluster(nodes: ["a", "b"])
        c.open("a", room: "r", visitor: "same")
        c.open("b", room: "r", visitor: "same")
        #expect(c.counts("a", room: "r").online == 1)
        #expect(c.counts("b", room: "r").online == 1)
        #expect(c.counts("a", room: "r").connections == 2)
        c.close("a", room: "r", visitor: "same")
        #expect(c.counts("a", room: "r").online == 1)
        #expect(c.counts("a", room: "r").connections == 1)
        c.close("b", room: "r", visitor: "same")
        #expect(c.counts("a", room: "r") == RoomCounts(room: "r"))
    }

    @Test func siteTotalsCountEachVisitorOnceAcrossRoomsAndNodes() {
        var c = FakeCluster(nodes: ["a", "b"])
        c.open("a", room: "r1", visitor: "v")
        c.open("b", room: "r2", visitor: "v")
        c.open("b", room: "r2", visitor: "w")
        for node in ["a", "b"] {
            let site = c.site(node)
            #expect(site.online == 2)
            #expect(site.connections == 3)
            #expect(site.rooms == 2)
        }
    }

    @Test func remoteOnlyRoomsAreListed() {
        var c = FakeCluster(nodes: ["a", "b"])
        c.open("a", room: "here", visitor: "v")
        c.open("b", room: "there", visitor: "w")
        let rooms = c.states["a"]!.knownRooms([RoomCounts(room: "here", online: 1, connections: 1)])
        #expect(Set(rooms.map(\.room)) == ["here", "there"])
        #expect(rooms.first { $0.room == "there" }?.online == 1)
    }

    @Test func unchangedLocalStateIsNotPublishedAgain() {
        var state = ClusterState(nodeID: "a", exactLimit: 10, provisionalLease: .seconds(10))
        let r1 = state.recordLocal(room: "r", connections: 1, hashes: [1])
        #expect(r1)
        _ = state.takePending()
        let r2 = state.recordLocal(room: "r", connections: 1, hashes: [1])
        #expect(!r2)
        let r3 = state.takePending()
        #expect(r3.isEmpty)
        let r4 = state.recordLocal(room: "r", connections: 2, hashes: [1])
        #expect(r4)
        let r5 = state.recordLocal(room: "r", connections: 0, hashes: [])
        #expect(r5)
        guard case .remove(let room, _) = state.takePending().first else {
            Issue.record("an emptied room is removed")
            return
        }
        #expect(room == "r")
        let r6 = state.recordLocal(room: "never", connections: 0, hashes: [])
        #expect(!r6)
    }

    @Test func olderRowsNeverOverwriteNewerOnes() {
        var state = ClusterState(nodeID: "a", exactLimit: 10, provisionalLease: .seconds(10))
        state.degraded = false
        let now = ContinuousClock.now
        let v2 = Contribution(version: 2, connections: 2, visitors: 2, payload: .exact([1, 2]))
        let v1 = Contribution(version: 1, connections: 1, visitors: 1, payload: .exact([1]))
        let r7 = state.apply(node: "b", room: "r", version: 2, contribution: v2, now: now)
        #expect(r7)
        let r8 = state.apply(node: "b", room: "r", version: 1, contribution: v1, now: now)
        #expect(!r8)
        #expect(state.mergeRoom(RoomCounts(room: "r")).online == 2)
        // A removal leaves a tombstone: a late, older row cannot bring the visitors back.
        let r9 = state.apply(node: "b", room: "r", version: 3, contribution: nil, now: now)
        #expect(r9)
        let r10 = state.apply(node: "b", room: "r", version: 2, contribution: v2, now: now)
        #expect(!r10)
        #expect(state.mergeRoom(RoomCounts(room: "r")).online == 0)
    }

    @Test func lostNotificationsAreRepairedByResync() {
        var c = FakeCluster(nodes: ["a", "b"])
        c.open("a", room: "r", visitor: "v1")
        c.loseNotifications = true
        c.open("a", room: "r", visitor: "v2")
        c.open("a", room: "gone", visitor: "x")
        c.close("a", room: "gone", visitor: "x")
        c.open("a", room: "new", visitor: "y")
        #expect(c.counts("b", room: "r").online == 1)
        #expect(c.counts("b", room: "new").online == 0)
        c.loseNotifications = false
        c.resync("b")
        #expect(c.counts("b", room: "r").online == 2)
        #expect(c.counts("b", room: "new").online == 1)
        // A removal that was lost: the row is gone from the table, resync drops it.
        c.loseNotifications = true
        c.close("a", room: "new", visitor: "y")
        #expect(c.counts("b", room: "new").online == 1)
        c.resync("b")
        #expect(c.counts("b", room: "new").online == 0)
    }

    @Test func resyncKeepsWhatArrivedWhileItRan() {
        var state = ClusterState(nodeID: "a", exactLimit: 10, provisionalLease: .seconds(10))
        let now = ContinuousClock.now
        let mark = state.applySequence  // the listing query starts
        state.apply(
            node: "b",
            room: "r",
            version: 1,
            contribution: Contribution(version: 1, connections: 1, visitors: 1, payload: .exact([7])),
            now: now
        )
        let (fetch, changed) = state.reconcile(rows: [], mark: mark)  // the listing did not see it yet
        #expect(fetch.isEmpty)
        #expect(changed.isEmpty)
        #expect(state.mergeRoom(RoomCounts(room: "r")).online == 1)
    }

    @Test func aNodeWhoseLeaseRunsOutDisappears() {
        var c = FakeCluster(nodes: ["a", "b", "c"], lease: .seconds(10))
        c.open("a", room: "r", visitor: "v1")
        c.open("b", room: "r", visitor: "v2")
        c.open("c", room: "r", visitor: "v3")
        #expect(c.counts("a", room: "r").online == 3)
        c.kill("c")
        // Lease poll: c's lease has 4 s left.
        let mark = c.states["a"]!.applySequence
        _ = c.states["a"]!.updateLeases([("b", 10), ("c", 4)], mark: mark, now: c.now)
        let r11 = c.states["a"]!.expire(now: c.now + .seconds(3))
        #expect(r11.isEmpty)
        #expect(c.counts("a", room: "r").online == 3)
        let r12 = c.states["a"]!.expire(now: c.now + .seconds(4))
        #expect(r12 == ["r"])
        #expect(c.counts("a", room: "r").online == 2)
        #expect(c.counts("a", room: "r").connections == 2)
        #expect(c.states["a"]!.liveNodes == ["b"])
    }

    @Test func aNodeMissingFromTheLeaseListIsDroppedUnlessItJustArrived() {
        var state = ClusterState(nodeID: "a", exactLimit: 10, provisionalLease: .seconds(10))
        let now = ContinuousClock.now
        let c = Contribution(version: 1, connections: 1, visitors: 1, payload: .exact([9]))
        state.apply(node: "old", room: "r", version: 1, contribution: c, now: now)
        let mark = state.applySequence
        state.apply(
            node: "new",
            room: "r",
            version: 1,
            contribution: Contribution(version: 1, connections: 1, visitors: 1, payload: .exact([8])),
            now: now
        )
        let changed = state.updateLeases([], mark: mark, now: now)
        #expect(changed == ["r"])
        #expect(state.liveNodes == ["new"])
        // Expired leases count as missing.
        let mark2 = state.applySequence
        let r13 = state.updateLeases([("new", -0.5)], mark: mark2, now: now)
        #expect(r13 == ["r"])
        #expect(state.liveNodes.isEmpty)
    }

    @Test func aCleanGoodbyeIsFinal() {
        var c = FakeCluster(nodes: ["a", "b"])
        c.open("b", room: "r", visitor: "v")
        #expect(c.counts("a", room: "r").online == 1)
        let late = c.table["b"]!["r"]!
        let r14 = c.states["a"]!.receive(.bye(node: "b"), now: c.now)
        #expect(r14 == ["r"])
        #expect(c.counts("a", room: "r").online == 0)
        let r15 = c.states["a"]!.apply(node: "b", room: "r", version: late.version + 1, contribution: late, now: c.now)
        #expect(!r15)
        #expect(c.counts("a", room: "r").online == 0)
    }

    @Test func helloRewritesTheWholeNode() {
        var c = FakeCluster(nodes: ["a", "b"])
        c.open("b", room: "r1", visitor: "v")
        c.open("b", room: "r2", visitor: "w")
        #expect(c.counts("a", room: "r2").online == 1)
        // b reconnects after losing r2 while away: its rows are rewritten, then it says hello.
        c.table["b"]!["r2"] = nil
        c.streams["b"]!["r2"] = nil
        c.deliver(ClusterMessage.pack([.hello(node: "b")]))
        #expect(c.counts("a", room: "r2").online == 0)
        #expect(c.counts("a", room: "r1").online == 1)
    }

    @Test func degradedFiguresAreMarkedPartial() {
        var c = FakeCluster(nodes: ["a", "b"])
        c.open("b", room: "r", visitor: "v")
        c.states["a"]!.degraded = true
        let counts = c.counts("a", room: "r")
        #expect(counts.partial)
        #expect(counts.online == 1)  // what was known stays until its lease runs out
        #expect(c.site("a").partial)
    }

    /// Large rooms: every node shares a sketch; all nodes show the same estimate, within 2 %.
    @Test func largeRoomsMergeSketchesWithinTheBound() {
        var c = FakeCluster(nodes: ["a", "b", "c"], exactLimit: 1000)
        var truth = Set<String>()
        for (i, node) in ["a", "b", "c"].enumerated() {
            var visitors: [String: Int] = [:]
            for k in 0..<6000 { visitors["n\(i)-\(k)"] = 1 }
            for k in 0..<1500 { visitors["shared-\(k)"] = 1 }  // the same visitors on every node
            c.streams[node]!["big"] = visitors
            truth.formUnion(visitors.keys)
            c.changed(node, room: "big")
        }
        let figures = ["a", "b", "c"].map { c.counts($0, room: "big").online }
        #expect(Set(figures).count == 1, "\(figures)")
        let error = abs(Double(figures[0]) - Double(truth.count)) / Double(truth.count)
        #expect(error <= 0.02, "estimate \(figures[0]) for \(truth.count)")
        #expect(["a", "b", "c"].allSatisfy { c.counts($0, room: "big").connections == 22_500 })
        let site = c.site("a").online
        #expect(abs(Double(site) - Double(truth.count)) / Double(truth.count) <= 0.02)
    }

    /// A large room on one node and a small one elsewhere: the sketch path, clamped by the exact counts.
    @Test func mixedExactAndSketchStayWithinTheExactBounds() {
        var c = FakeCluster(nodes: ["a", "b"], exactLimit: 100)
        var big: [String: Int] = [:]
        for k in 0..<3000 { big["v\(k)"] = 1 }
        c.streams["a"]!["r"] = big
        c.changed("a", room: "r")
        c.open("b", room: "r", visitor: "v1")  // already counted on a
        for node in ["a", "b"] {
            let online = c.counts(node, room: "r").online
            #expect(online >= 3000 && online <= 3001)
        }
    }

    /// Random joins and leaves over three nodes, with lost notifications repaired by resync: every node
    /// always ends with the exact global figures of every room and of the site.
    @Test(arguments: [1, 2, 3, 4, 5])
    func randomTrafficConvergesToTheTruth(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        let nodes = ["a", "b", "c"]
        let rooms = ["r0", "r1", "r2", "r3"]
        var c = FakeCluster(nodes: nodes, exactLimit: 20)  // small limit: both paths get exercised
        var open: [(String, String, String)] = []
        for step in 0..<400 {
            c.loseNotifications = rng.next() % 10 == 0
            if open.isEmpty || rng.next() % 3 != 0 {
                let node = nodes[Int(rng.next() % 3)]
                let room = rooms[Int(rng.next() % 4)]
                let visitor = "v\(rng.next() % 30)"
                c.open(node, room: room, visitor: visitor)
                open.append((node, room, visitor))
            } else {
                let (node, room, visitor) = open.remove(at: Int(rng.next() % UInt64(open.count)))
                c.close(node, room: room, visitor: visitor)
            }
            if step % 25 == 24 {
                c.loseNotifications = false
                c.resyncAll()
                for node in nodes {
                    for room in rooms {
                        let counts = c.counts(node, room: room)
                        let truth = c.truth(room: room)
                        #expect(counts.connections == truth.connections)
                        if truth.online <= 20 {
                            #expect(counts.online == truth.online, "node \(node) room \(room) step \(step)")
                        } else {
                            #expect(abs(counts.online - truth.online) <= max(1, truth.online / 50))
                        }
                    }
                    let site = c.site(node)
                    let truth = c.truthSite()
                    #expect(site.connections == truth.connections)
                    #expect(site.rooms == truth.rooms)
                    #expect(abs(site.online - truth.online) <= max(1, truth.online / 50))
                }
            }
        }
    }
}
