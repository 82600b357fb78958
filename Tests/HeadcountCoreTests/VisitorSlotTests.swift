import HeadcountCore
import Testing

/// The registry keeps each visitor in one reusable slot, reached by id once per join and by number
/// afterwards (subscriptions, room memberships, grace entries). These cases exercise what that
/// bookkeeping must get right: sharing across rooms, slot reuse, and stale grace entries.
@Suite struct VisitorSlotTests {
    @Test func oneVisitorInTwoRoomsCountsOnceSiteWide() throws {
        let h = Harness(leaveGrace: .zero)
        let (a, _) = try h.join("a", .identified("alice"))
        let (b, _) = try h.join("b", .identified("alice"))
        let (c, _) = try h.join("b", .identified("bob"))
        #expect(h.online("a") == 1)
        #expect(h.online("b") == 2)
        #expect(h.registry.siteCounts().online == 2)
        #expect(h.registry.siteCounts().rooms == 2)
        #expect(h.registry.siteCounts().connections == 3)
        #expect(Set(h.registry.localState(room: "b").visitors) == ["alice", "bob"])

        h.registry.leave(a)
        #expect(h.online("a") == 0)
        #expect(h.registry.siteCounts().online == 2, "alice is still in b")
        #expect(h.registry.siteCounts().rooms == 1)
        h.registry.leave(b)
        #expect(h.registry.siteCounts().online == 1)
        #expect(h.registry.localState(room: "b").visitors == ["bob"])
        h.registry.leave(c)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.siteCounts().connections == 0)
        h.settle()  // empty rooms go once their last change has been flushed
        #expect(h.registry.roomCount == 0)
    }

    @Test func leavingTheFirstOfSeveralRoomsKeepsTheOthers() throws {
        let h = Harness(leaveGrace: .zero)
        let subs = try ["r1", "r2", "r3"].map { try h.join($0, .identified("alice")).0 }
        h.registry.leave(subs[0])
        #expect(h.online("r1") == 0)
        #expect(h.online("r2") == 1)
        #expect(h.online("r3") == 1)
        // A second stream in r3 and a leave from r2: the presence moved out of line stays reachable.
        let extra = try h.join("r3", .identified("alice")).0
        h.registry.leave(subs[1])
        #expect(h.online("r2") == 0)
        #expect(h.connections("r3") == 2)
        h.registry.leave(subs[2])
        #expect(h.online("r3") == 1)
        h.registry.leave(extra)
        #expect(h.online("r3") == 0)
        #expect(h.registry.siteCounts().online == 0)
    }

    @Test func membersLeavingOutOfOrderKeepTheRoomListExact() throws {
        let h = Harness(leaveGrace: .zero)
        let ids = (0..<20).map { "v\($0)" }
        var subs = try ids.map { try h.join("r", .identified($0)).0 }
        // Leave every third, then the rest from the front: exercises the swap-remove bookkeeping.
        var remaining = Set(ids)
        for i in stride(from: 0, to: subs.count, by: 3) {
            h.registry.leave(subs[i])
            remaining.remove(ids[i])
            #expect(Set(h.registry.localState(room: "r").visitors) == remaining)
        }
        subs = subs.enumerated().filter { $0.offset % 3 != 0 }.map(\.element)
        for sub in subs {
            h.registry.leave(sub)
            if case .identified(let id)? = sub.visitor { remaining.remove(id) }
            #expect(Set(h.registry.localState(room: "r").visitors) == remaining)
            #expect(h.online("r") == remaining.count)
        }
        #expect(h.registry.siteCounts().online == 0)
    }

    @Test func leaveInGraceThenRejoinThenExpiry() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (first, _) = try h.join("r", .identified("alice"))
        h.registry.leave(first)
        #expect(h.online("r") == 1)
        h.advanceAndTick(.seconds(1))
        let (second, _) = try h.join("r", .identified("alice"))
        // The first grace's deadline passes while alice is back: nothing changes.
        h.advanceAndTick(.seconds(5))
        #expect(h.online("r") == 1)
        #expect(h.registry.siteCounts().online == 1)
        h.registry.leave(second)
        h.advanceAndTick(.milliseconds(2_999))
        #expect(h.online("r") == 1)
        h.advanceAndTick(.milliseconds(1))
        #expect(h.online("r") == 0)
        #expect(h.registry.siteCounts().online == 0)
        h.settle()
        #expect(!h.registry.hasPendingWork)
    }

    @Test func aStaleGraceEntryDoesNotEvictTheNextVisitorOfTheSameSlot() throws {
        // alice leaves in grace, comes back and leaves for good through an ephemeral-free path (grace
        // expiry); bob then takes her slot. alice's older grace entry must not touch bob.
        let h = Harness(leaveGrace: .seconds(3))
        let (a1, _) = try h.join("r", .identified("alice"))
        h.registry.leave(a1)  // grace entry #1, deadline t+3
        let (a2, _) = try h.join("r", .identified("alice"))
        h.registry.leave(a2)  // grace entry #2, same deadline on the manual clock
        h.advanceAndTick(.seconds(3))  // alice expires; her slot is free
        #expect(h.registry.siteCounts().online == 0)
        let (b, _) = try h.join("r", .identified("bob"))
        h.registry.leave(b)  // bob in grace until t+6
        h.advanceAndTick(.seconds(1))
        #expect(h.online("r") == 1, "bob is inside his grace")
        h.advanceAndTick(.seconds(2))
        #expect(h.online("r") == 0)
    }

    @Test func graceInOneRoomWhileStillPresentInAnother() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (a, _) = try h.join("a", .identified("alice"))
        let (b, _) = try h.join("b", .identified("alice"))
        h.registry.leave(a)
        h.advanceAndTick(.seconds(4))
        #expect(h.online("a") == 0)
        #expect(h.online("b") == 1)
        #expect(h.registry.siteCounts().online == 1)
        h.registry.leave(b)
        h.advanceAndTick(.seconds(4))
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.roomCount == 0)
    }

    @Test func slotsAreReusedAcrossManyVisitors() throws {
        let h = Harness(leaveGrace: .zero)
        let (watch, sink) = try h.join("r", nil)
        for i in 0..<1_000 {
            let (sub, _) = try h.join("r", .identified("v\(i % 7)"))
            h.registry.leave(sub)
        }
        h.settle()
        #expect(h.online("r") == 0)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.siteCounts().rooms == 0)
        #expect(sink.last?.parsed.online == 0)
        #expect(h.registry.stats().peakOnline == 1)
        h.registry.leave(watch)
        #expect(h.registry.roomCount == 0)
    }

    @Test func thousandsOfVisitorsComingAndGoingKeepEveryCountExact() throws {
        // Thousands of distinct visitors come and go (their slots reused over and over) while a few
        // stay: those who stayed, and one who returns, are still counted right.
        let h = Harness(leaveGrace: .zero)
        let stayers = try (0..<5).map { try h.join("r", .identified("stay\($0)")).0 }
        let (otherRoom, _) = try h.join("s", .identified("stay0"))
        for i in 0..<3_000 {
            let (sub, _) = try h.join(i % 2 == 0 ? "r" : "s", .ephemeral("tab\(i)"))
            #expect(h.registry.siteCounts().online == 6)
            h.registry.leave(sub)
        }
        #expect(h.registry.siteCounts().online == 5)
        #expect(h.online("r") == 5)
        #expect(h.online("s") == 1)
        #expect(Set(h.registry.localState(room: "r").visitors) == Set((0..<5).map { "stay\($0)" }))
        let (back, _) = try h.join("r", .ephemeral("tab7"))  // a visitor who left long ago
        #expect(h.registry.siteCounts().online == 6)
        h.registry.leave(back)
        for sub in stayers { h.registry.leave(sub) }
        #expect(h.registry.siteCounts().online == 1, "stay0 is still in s")
        h.registry.leave(otherRoom)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.stats().peakOnline == 6)
    }

    @Test func aStaleGraceEntryOfAFreedSlotIsIgnored() throws {
        // alice leaves in grace (an entry due at t+3), comes back on an ephemeral stream with the same id
        // and leaves for good: her entry stays in the heap while her slot is freed and reused by the
        // visitors who follow; the bobs then leave in grace with the same deadline.
        let h = Harness(leaveGrace: .seconds(3))
        let (a1, _) = try h.join("r", .identified("alice"))
        h.registry.leave(a1)
        let (a2, _) = try h.join("r", .ephemeral("alice"))
        h.registry.leave(a2)
        #expect(h.online("r") == 0)
        for i in 0..<2_100 {
            let (sub, _) = try h.join("r", .ephemeral("tab\(i)"))
            h.registry.leave(sub)
        }
        var bobs: [Subscription] = []
        for i in 0..<40 { bobs.append(try h.join("r", .identified("bob\(i)")).0) }
        for sub in bobs { h.registry.leave(sub) }
        #expect(h.online("r") == 40)
        h.advanceAndTick(.milliseconds(2_999))
        #expect(h.online("r") == 40, "every bob is inside his grace")
        h.advanceAndTick(.milliseconds(1))
        #expect(h.online("r") == 0)
        h.settle()
        #expect(!h.registry.hasPendingWork)
    }

    @Test func aRoomCollectedAndCreatedAgainIsTheNewOne() throws {
        // The registry remembers the room of the latest join; once that room is gone, a join with its
        // name must create and find the new room.
        let h = Harness(leaveGrace: .zero)
        let (watcher, _) = try h.join("r", nil)
        h.registry.leave(watcher)
        h.settle()
        #expect(h.registry.roomCount == 0)
        let (alice, sink) = try h.join("r", .identified("alice"))
        #expect(h.registry.roomCount == 1)
        #expect(h.online("r") == 1)
        #expect(sink.last?.parsed.online == 1)
        let (bob, _) = try h.join("other", .identified("bob"))
        let (carol, _) = try h.join("r", .identified("carol"))
        #expect(h.online("r") == 2)
        #expect(h.online("other") == 1)
        #expect(h.registry.siteCounts().online == 3)
        for sub in [alice, bob, carol] { h.registry.leave(sub) }
        h.settle()
        #expect(h.registry.roomCount == 0)
        let (again, _) = try h.join("r", .identified("dave"))
        #expect(h.online("r") == 1)
        h.registry.leave(again)
    }
}
