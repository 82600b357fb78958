import HeadcountCore
import Testing

/// Subscribers whose later events reach them some other way (`join(_:visitor:initialTo:)`), and
/// identities that share an id.
@Suite struct DeliveryTests {
    @Test func aSubscriberWithoutASinkGetsOnlyItsInitialFigures() throws {
        let h = Harness(leaveGrace: .zero)
        let (_, watcher) = try h.join("r", nil)
        let initial = TestSink()
        let sub = try h.registry.join(.room("r", .room), visitor: .identified("a"), initialTo: initial)
        #expect(sub.sink == nil)
        #expect(initial.texts == [roomEventText(id: 1, room: "r", online: 1, connections: 1)])
        #expect(h.online("r") == 1)
        #expect(h.connections("r") == 1)
        #expect(h.registry.subscriberCount == 2)
        #expect(watcher.last?.parsed.online == 1, "counted like any other stream")

        h.quiet()
        try h.join("r", .identified("b"))
        h.registry.heartbeat()
        _ = h.registry.shutdown()
        #expect(initial.eventCount == 1, "no fan-out to the initial-only sink")
        #expect(initial.heartbeats == 0)
        #expect(initial.closeCalls == 0)

        h.registry.leave(sub)
        h.registry.leave(sub)
        #expect(h.online("r") == 1)
        #expect(h.connections("r") == 1)
        #expect(h.registry.subscriberCount == 2)
    }

    @Test func sinklessWatchersAndSiteSubscribersLeaveCleanly() throws {
        let h = Harness(leaveGrace: .zero)
        let roomInitial = TestSink()
        let watcher = try h.registry.join(.room("r", .legacy), visitor: nil, initialTo: roomInitial)
        #expect(roomInitial.texts == [legacyEventText(online: 0)])
        let siteInitial = TestSink()
        let site = try h.registry.join(.site, visitor: nil, initialTo: siteInitial)
        #expect(siteInitial.texts == [siteEventText(id: 0, online: 0, connections: 0, rooms: 0)])
        #expect(h.registry.subscriberCount == 2)

        // Someone comes and goes; whatever happens to the room meanwhile, the watcher can still leave.
        let (visitor, _) = try h.join("r", .ephemeral("e"))
        h.quiet()
        h.registry.leave(visitor)
        h.settle()
        h.registry.leave(watcher)
        h.registry.leave(site)
        h.settle()
        #expect(h.registry.subscriberCount == 0)
        #expect(h.registry.roomCount == 0)
        #expect(siteInitial.eventCount == 1)
        #expect(roomInitial.eventCount == 1)
    }

    @Test func sinklessJoinsAreRefusedLikeOthers() throws {
        let h = Harness(maxRooms: 1)
        try h.join("a", nil)
        #expect(throws: JoinRefusal.tooManyRooms) {
            try h.registry.join(.room("b", .room), visitor: .identified("x"), initialTo: TestSink())
        }
        h.registry.shutdown()
        #expect(throws: JoinRefusal.shuttingDown) {
            try h.registry.join(.room("a", .room), visitor: .identified("x"), initialTo: TestSink())
        }
    }

    @Test func anEphemeralAndAnIdentifiedStreamWithTheSameIdAreOneVisitor() throws {
        // The server opens a first visit as `.ephemeral(id)` and sets a cookie with that id; the next
        // stream of that browser arrives as `.identified(id)`.
        let h = Harness(leaveGrace: .seconds(3))
        let (first, _) = try h.join("r", .ephemeral("fresh"))
        let (second, _) = try h.join("r", .identified("fresh"))
        #expect(h.online("r") == 1)
        #expect(h.connections("r") == 2)
        #expect(h.registry.siteCounts().online == 1)
        h.registry.leave(first)
        #expect(h.online("r") == 1)
        h.registry.leave(second)
        #expect(h.online("r") == 1, "the identified stream closed last: grace")
        h.settle()
        #expect(h.online("r") == 0)
        #expect(h.registry.roomCount == 0)
    }
}
