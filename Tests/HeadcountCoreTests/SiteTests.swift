import HeadcountCore
import Testing

@Suite struct SiteTests {
    @Test func siteTotalsCountDistinctVisitorsAcrossRooms() throws {
        let h = Harness()
        try h.join("r1", .identified("a"))
        try h.join("r2", .identified("a"))
        try h.join("r2", .identified("a"))
        try h.join("r2", .identified("b"))
        try h.join("r3", .ephemeral("e"))
        try h.join("watched", nil)
        let site = h.registry.siteCounts()
        #expect(site.online == 3)        // a, b, e
        #expect(site.connections == 5)   // watchers are not connections
        #expect(site.rooms == 3)         // "watched" has nobody online
        #expect(h.registry.stats().subscribers == 6)
    }

    @Test func roomsInGraceStillCountAsOccupied() throws {
        let h = Harness(leaveGrace: .seconds(3))
        let (sub, _) = try h.join("r", .identified("a"))
        h.registry.leave(sub)
        #expect(h.registry.siteCounts() == SiteCounts(online: 1, connections: 0, rooms: 1, version: h.registry.siteCounts().version))
        h.advanceAndTick(.seconds(3))
        #expect(h.registry.siteCounts().online == 0)
        #expect(h.registry.siteCounts().rooms == 0)
    }

    @Test func peakOnlineRemembersTheHighestSiteOnline() throws {
        let h = Harness(leaveGrace: .zero, startWallTime: 1_000)
        #expect(h.registry.stats().peakOnline == 0)
        #expect(h.registry.stats().peakAt == nil)
        #expect(h.registry.stats().startedAt == 1_000)

        h.advance(.seconds(5))
        let (a, _) = try h.join("r1", .identified("a"))
        let (b, _) = try h.join("r2", .identified("b"))
        let (a2, _) = try h.join("r2", .identified("a"))  // same visitor: site online stays 2
        #expect(h.registry.stats().peakOnline == 2)
        #expect(h.registry.stats().peakAt == 1_005)

        h.advance(.seconds(5))
        for sub in [a, b, a2] { h.registry.leave(sub) }
        let (c, _) = try h.join("r1", .ephemeral("c"))
        let stats = h.registry.stats()
        #expect(stats.counts.online == 1)
        #expect(stats.peakOnline == 2)
        #expect(stats.peakAt == 1_005)
        #expect(stats.uptime == 10)
        #expect(stats.subscribers == 1)
        h.registry.leave(c)

        h.advance(.seconds(2))
        for i in 0..<3 { try h.join("r9", .ephemeral("x\(i)")) }
        #expect(h.registry.stats().peakOnline == 3)
        #expect(h.registry.stats().peakAt == 1_012)
    }

    @Test func roomPeakIsTheHighestOnlineOfTheRoom() throws {
        let h = Harness(leaveGrace: .zero)
        let (a, _) = try h.join("r", .identified("a"))
        let (b, _) = try h.join("r", .identified("b"))
        try h.join("r", .identified("b"))
        h.registry.leave(a)
        h.registry.leave(b)
        let counts = h.registry.counts(room: "r")
        #expect(counts.online == 1)
        #expect(counts.connections == 1)
        #expect(counts.peak == 2)
    }
}
