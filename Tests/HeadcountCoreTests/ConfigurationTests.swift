import HeadcountCore
import Testing

@Suite struct ConfigurationTests {
    @Test func defaults() {
        let c = PresenceConfiguration()
        #expect(c.leaveGrace == .seconds(3))
        #expect(c.updateInterval == .milliseconds(100))
        #expect(PresenceConfiguration.defaultLeaveGrace == .seconds(3))
        #expect(PresenceConfiguration.defaultUpdateInterval == .milliseconds(100))
        #expect(c.fanoutCostPerSubscriber == .nanoseconds(4_000))
        #expect(c.fanoutCoreShare == 0.25)
        #expect(c.maxRooms == 100_000)
        #expect(c.startWallTime == 0)
        #expect(c.initialSequence == 0)
    }

    @Test func theRegistryKeepsItsConfiguration() {
        let h = Harness(leaveGrace: .seconds(7), updateInterval: .milliseconds(40), maxRooms: 9, startWallTime: 12, initialSequence: 5)
        #expect(h.registry.configuration.leaveGrace == .seconds(7))
        #expect(h.registry.configuration.updateInterval == .milliseconds(40))
        #expect(h.registry.configuration.maxRooms == 9)
        #expect(h.registry.stats().startedAt == 12)
        #expect(h.registry.stats().uptime == 0)
    }

    @Test func manualTimeSourceMovesOnlyWhenTold() {
        let clock = ManualTimeSource()
        let start = clock.now
        #expect(clock.now == start)
        clock.advance(by: .milliseconds(250))
        #expect(clock.now - start == .milliseconds(250))
        clock.advance(by: .seconds(2))
        #expect(clock.now - start == .milliseconds(2_250))
    }

    @Test func systemTimeSourceIsMonotonic() {
        let time = SystemTimeSource()
        let a = time.now
        let b = time.now
        #expect(b >= a)
    }

    @Test func localBackplaneIsTheIdentity() {
        let backplane = LocalBackplane()
        #expect(!backplane.needsLocalState)
        let room = RoomCounts(room: "r", online: 1, connections: 2, peak: 3, version: 4)
        #expect(backplane.merge(room: "r", local: room) == room)
        let site = SiteCounts(online: 1, connections: 2, rooms: 1, version: 9)
        #expect(backplane.mergeSite(local: site) == site)
        #expect(backplane.knownRooms(local: [room]) == [room])
    }

    @Test func visitorIdentityAndTargets() {
        #expect(VisitorIdentity.identified("a").id == "a")
        #expect(VisitorIdentity.ephemeral("b").id == "b")
        #expect(VisitorIdentity.identified("a") != VisitorIdentity.ephemeral("a"))
    }
}
