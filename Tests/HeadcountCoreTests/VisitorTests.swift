import HeadcountCore
import Testing

@Suite struct VisitorTests {
    @Test func severalStreamsOfOneVisitorCountOnceButEachStreamIsAConnection() throws {
        let h = Harness()
        let (_, watcher) = try h.join("r", nil)
        var subs: [Subscription] = []
        for _ in 0..<3 {
            h.quiet()
            subs.append(try h.join("r", .identified("alice")).0)
        }
        #expect(h.online("r") == 1)
        #expect(h.connections("r") == 3)
        #expect(h.registry.siteCounts().online == 1)
        #expect(h.registry.siteCounts().connections == 3)
        #expect(watcher.events.map(\.parsed.online) == [0, 1, 1, 1])
        #expect(watcher.events.map(\.parsed.connections) == [0, 1, 2, 3])

        h.quiet()
        h.registry.leave(subs[0])
        #expect(h.online("r") == 1)
        #expect(h.connections("r") == 2)
        #expect(watcher.last?.parsed.online == 1)
        #expect(watcher.last?.parsed.connections == 2)
    }

    @Test func ephemeralVisitorsLeaveAtOnce() throws {
        let h = Harness()
        let (_, watcher) = try h.join("r", nil)
        let (_, site) = try h.joinSite()
        let (sub, _) = try h.join("r", .ephemeral("tab-1"))
        #expect(h.online("r") == 1)
        h.quiet()
        h.registry.leave(sub)
        #expect(h.online("r") == 0)
        #expect(h.connections("r") == 0)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.siteCounts().rooms == 0)
        // First change after a quiet period: delivered without waiting for a tick.
        #expect(watcher.last?.parsed.online == 0)
        #expect(watcher.last?.parsed.connections == 0)
        #expect(site.last?.parsed.online == 0)
        #expect(!h.registry.hasPendingWork)
    }

    @Test func identifiedVisitorsStayOnlineForTheLeaveGrace() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (_, watcher) = try h.join("r", nil)
        let (sub, _) = try h.join("r", .identified("alice"))
        h.quiet()
        h.registry.leave(sub)
        #expect(h.online("r") == 1, "inside the grace the visitor still counts")
        #expect(h.connections("r") == 0)
        #expect(watcher.last?.parsed.online == 1)
        #expect(watcher.last?.parsed.connections == 0)
        #expect(h.registry.hasPendingWork)

        h.advanceAndTick(.milliseconds(2_999))
        #expect(h.online("r") == 1)
        #expect(watcher.last?.parsed.online == 1)

        h.advanceAndTick(.milliseconds(1))
        #expect(h.online("r") == 0)
        #expect(watcher.last?.parsed.online == 0)
        #expect(watcher.last?.parsed.connections == 0)
    }

    @Test func rejoinInsideTheGraceKeepsOnlineSteady() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (_, watcher) = try h.join("r", nil)
        let (_, legacy) = try h.join("r", nil, format: .legacy)
        var (sub, _) = try h.join("r", .identified("alice"))
        h.quiet()
        // A page reload: the stream closes and a new one opens a moment later, several times.
        for _ in 0..<5 {
            h.registry.leave(sub)
            for _ in 0..<10 { h.advanceAndTick(.milliseconds(50)) }
            sub = try h.join("r", .identified("alice")).0
            for _ in 0..<10 { h.advanceAndTick(.milliseconds(50)) }
        }
        #expect(h.online("r") == 1)
        let onlines = watcher.events.dropFirst().map(\.parsed.online)  // the first is from before alice came
        #expect(!onlines.isEmpty)
        #expect(onlines.allSatisfy { $0 == 1 }, "online flickered: \(onlines)")
        #expect(legacy.texts.dropFirst().allSatisfy { $0 == legacyEventText(online: 1) })
        #expect(watcher.rawEvents.dropFirst().allSatisfy { $0.parsed.online == 1 })
    }

    @Test func aSupersededGraceDoesNotEvictAVisitorWhoCameBackAndLeftAgain() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (_, watcher) = try h.join("r", nil)
        let (first, _) = try h.join("r", .identified("alice"))
        h.registry.leave(first)                       // grace until t+3
        h.advanceAndTick(.seconds(2))
        let (second, _) = try h.join("r", .identified("alice"))
        h.advanceAndTick(.milliseconds(500))
        h.registry.leave(second)                      // new grace until t+5.5
        h.advanceAndTick(.milliseconds(600))          // t+3.1: the first deadline has passed
        #expect(h.online("r") == 1)
        h.advanceAndTick(.milliseconds(2_300))        // t+5.4
        #expect(h.online("r") == 1)
        #expect(watcher.last?.parsed.online == 1)
        h.advanceAndTick(.milliseconds(100))          // t+5.5
        #expect(h.online("r") == 0)
        #expect(watcher.last?.parsed.online == 0)
    }

    @Test func graceExpiryDropsOnlineAndFansOutToEveryKindOfSubscriber() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (_, room) = try h.join("r", nil)
        let (_, legacy) = try h.join("r", nil, format: .legacy)
        let (_, site) = try h.joinSite()
        let (a, _) = try h.join("r", .identified("a"))
        let (b, _) = try h.join("r", .identified("b"))
        h.quiet()
        #expect(room.last?.parsed.online == 2)
        h.registry.leave(a)
        h.registry.leave(b)
        h.quiet()
        #expect(h.online("r") == 2)
        #expect(site.last?.parsed.online == 2)
        #expect(site.last?.parsed.connections == 0)
        #expect(site.last?.parsed.rooms == 1)
        h.advanceAndTick(.seconds(2))
        // Both graces expire in the same tick; the second expiry is coalesced behind the first.
        #expect(h.online("r") == 0)
        h.advanceAndTick(.milliseconds(100))
        #expect(room.last?.parsed.online == 0)
        #expect(room.last?.parsed.connections == 0)
        #expect(room.last?.version == h.registry.counts(room: "r").version)
        #expect(legacy.last?.text == legacyEventText(online: 0))
        #expect(site.last?.parsed.online == 0)
        #expect(site.last?.parsed.rooms == 0)
        #expect(site.last?.version == h.registry.siteCounts().version)
        #expect(!h.registry.hasPendingWork)
    }

    @Test func aZeroLeaveGraceMakesIdentifiedVisitorsLeaveAtOnce() throws {
        let h = Harness(leaveGrace: .zero)
        let (sub, _) = try h.join("r", .identified("a"))
        h.registry.leave(sub)
        #expect(h.online("r") == 0)
        #expect(h.registry.siteCounts().online == 0)
        h.settle()
        #expect(h.registry.roomCount == 0)
    }

    @Test func graceIsKeptPerRoom() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (inR1, _) = try h.join("r1", .identified("a"))
        try h.join("r2", .identified("a"))
        h.registry.leave(inR1)
        #expect(h.online("r1") == 1)
        #expect(h.online("r2") == 1)
        #expect(h.registry.siteCounts().online == 1)
        h.advanceAndTick(.seconds(3))
        #expect(h.online("r1") == 0)
        #expect(h.online("r2") == 1)
        #expect(h.registry.siteCounts().online == 1, "still online in r2")
        #expect(h.registry.siteCounts().rooms == 1)
        #expect(h.registry.siteCounts().connections == 1)
    }

    @Test func anEphemeralStreamDoesNotGetAGraceEvenIfAnotherStreamIsIdentified() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (eph, _) = try h.join("r", .ephemeral("e-1"))
        try h.join("r", .identified("a"))
        #expect(h.online("r") == 2)
        h.registry.leave(eph)
        #expect(h.online("r") == 1)
    }

    @Test func aVisitorInGraceKeepsTheRoomAliveUntilExpiry() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (sub, _) = try h.join("r", .identified("a"))
        h.registry.leave(sub)
        h.advanceAndTick(.seconds(1))
        #expect(h.registry.roomCount == 1)
        #expect(h.registry.localRoomNames() == ["r"])
        #expect(h.registry.localState(room: "r").visitors == ["a"])
        #expect(h.registry.localState(room: "r").connections == 0)
        h.advanceAndTick(.seconds(2))
        #expect(h.registry.roomCount == 0)
        #expect(h.registry.localRoomNames().isEmpty)
        #expect(h.registry.localState(room: "r").visitors.isEmpty)
    }
}
