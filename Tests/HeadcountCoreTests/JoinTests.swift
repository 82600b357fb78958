import HeadcountCore
import Testing

@Suite struct JoinTests {
    @Test func joinDeliversTheCallersOwnCountsBeforeReturning() throws {
        let h = Harness()
        let (sub, sink) = try h.join("lobby", .identified("alice"))
        #expect(sub.room == "lobby")
        #expect(sub.visitor == .identified("alice"))
        #expect(sink.texts == [roomEventText(id: 1, room: "lobby", online: 1, connections: 1)])
        let counts = h.registry.counts(room: "lobby")
        #expect(counts.online == 1)
        #expect(counts.connections == 1)
        #expect(counts.peak == 1)
        #expect(counts.version == 1)
        #expect(h.registry.subscriberCount == 1)
        #expect(h.registry.roomCount == 1)
    }

    @Test func firstEventOfAJoinerInsideTheCoalescingIntervalAlreadyCountsTheJoiner() throws {
        let h = Harness()
        let (_, a) = try h.join("r", .identified("a"))
        // Same instant: the room is inside its coalescing interval, the change to others is held,
        // but the joiner's own first event already counts the joiner.
        let (_, b) = try h.join("r", .identified("b"))
        let first = try #require(b.events.first)
        #expect(first.parsed.online == 2)
        #expect(first.parsed.connections == 2)
        #expect(a.eventCount == 1)
        h.advanceAndTick(.milliseconds(100))
        #expect(a.last?.parsed.online == 2)
        #expect(a.last?.parsed.connections == 2)
        #expect(a.last?.version == first.version)
    }

    @Test func aSecondIdentifiedVisitorRaisesOnlineForBoth() throws {
        let h = Harness()
        let (_, a) = try h.join("r", .identified("a"))
        h.quiet()
        let (_, b) = try h.join("r", .identified("b"))
        // Room versions 1 and 3: every change also advances the site version (2 and 4).
        #expect(a.texts == [
            roomEventText(id: 1, room: "r", online: 1, connections: 1),
            roomEventText(id: 3, room: "r", online: 2, connections: 2),
        ])
        #expect(b.texts == [roomEventText(id: 3, room: "r", online: 2, connections: 2)])
        #expect(h.online("r") == 2)
        #expect(h.connections("r") == 2)
    }

    @Test func watchersAreNotCountedButReceiveEvents() throws {
        let h = Harness()
        let (watchSub, watcher) = try h.join("r", nil)
        #expect(watchSub.visitor == nil)
        let initial = try #require(watcher.events.first)
        #expect(initial.parsed.room == "r")
        #expect(initial.parsed.online == 0)
        #expect(initial.parsed.connections == 0)
        #expect(h.online("r") == 0)
        #expect(h.connections("r") == 0)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.subscriberCount == 1)

        try h.join("r", .ephemeral("e1"))
        #expect(watcher.eventCount == 2)
        #expect(watcher.last?.parsed.online == 1)
        #expect(watcher.last?.parsed.connections == 1)

        // A second watcher changes nothing for anyone else.
        let before = h.registry.counts(room: "r")
        let rawBefore = watcher.rawCount
        let (_, second) = try h.join("r", nil)
        #expect(second.texts == [roomEventText(id: before.version, room: "r", online: 1, connections: 1)])
        #expect(h.registry.counts(room: "r") == before)
        #expect(watcher.rawCount == rawBefore)
        #expect(h.registry.subscriberCount == 3)
    }

    @Test func legacyFormatIsExactlyOnlineUsers() throws {
        let h = Harness()
        let (_, legacy) = try h.join("lobby", .identified("a"), format: .legacy)
        #expect(legacy.texts == ["data: {\"onlineUsers\":1}\n\n"])
        h.quiet()
        try h.join("lobby", .identified("b"), format: .legacy)
        h.quiet()
        try h.join("lobby", .identified("b"), format: .room)  // second stream of b: online unchanged
        #expect(legacy.texts == [legacyEventText(online: 1), legacyEventText(online: 2), legacyEventText(online: 2)])
        for text in legacy.texts {
            #expect(!text.contains("id:"))
        }
    }

    @Test func roomAndLegacySubscribersOfOneRoomGetTheSameChangeInTheirOwnFormat() throws {
        let h = Harness()
        let (_, room) = try h.join("r", nil, format: .room)
        let (_, legacy) = try h.join("r", nil, format: .legacy)
        #expect(legacy.texts == [legacyEventText(online: 0)])
        h.quiet()
        try h.join("r", .ephemeral("x"))
        let roomLast = try #require(room.last)
        let legacyLast = try #require(legacy.last)
        #expect(roomLast.text == roomEventText(id: roomLast.version, room: "r", online: 1, connections: 1))
        #expect(legacyLast.text == legacyEventText(online: 1))
        #expect(roomLast.version == legacyLast.version)
    }

    @Test func roomEventFormatIsExact() throws {
        let h = Harness(initialSequence: 41)
        let (_, sink) = try h.join("a-b_c.d~e:f", .identified("v"))
        #expect(sink.texts == ["id: 42\ndata: {\"room\":\"a-b_c.d~e:f\",\"online\":1,\"connections\":1}\n\n"])
    }

    @Test func siteSubscribersReceiveSiteTotals() throws {
        let h = Harness()
        let (siteSub, site) = try h.joinSite()
        #expect(siteSub.room == nil)
        #expect(site.texts == [siteEventText(id: 0, online: 0, connections: 0, rooms: 0)])

        try h.join("r1", .identified("a"))  // room v1, site v2
        #expect(site.last?.text == siteEventText(id: 2, online: 1, connections: 1, rooms: 1))
        h.quiet()
        try h.join("r2", .identified("a"))  // room v3, site v4: same visitor, second room
        #expect(site.last?.text == siteEventText(id: 4, online: 1, connections: 2, rooms: 2))
        h.quiet()
        try h.join("r2", .identified("b"))  // room v5, site v6
        #expect(site.last?.text == siteEventText(id: 6, online: 2, connections: 3, rooms: 2))
        #expect(site.eventCount == 4)
    }

    @Test func aSiteSubscriptionIsNeverCountedEvenWithAVisitor() throws {
        let h = Harness()
        let sink = TestSink()
        let sub = try h.registry.join(.site, visitor: .identified("x"), sink: sink)
        #expect(sub.visitor == nil)
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.siteCounts().connections == 0)
        #expect(h.registry.roomCount == 0)
        #expect(h.registry.subscriberCount == 1)
        h.registry.leave(sub)
        #expect(h.registry.subscriberCount == 0)
    }

    @Test func subscriptionIdsAreDistinct() throws {
        let h = Harness()
        var ids = Set<UInt64>()
        for i in 0..<50 {
            let (sub, _) = try h.join("r\(i % 3)", i.isMultiple(of: 2) ? .ephemeral("e\(i)") : nil)
            ids.insert(sub.id)
        }
        ids.insert(try h.joinSite().0.id)
        #expect(ids.count == 51)
    }
}
