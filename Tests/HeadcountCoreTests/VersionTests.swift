import HeadcountCore
import Testing

@Suite struct VersionTests {
    @Test func roomVersionsStrictlyIncreaseWithEveryChange() throws {
        let h = Harness(leaveGrace: .seconds(1))
        let (_, watcher) = try h.join("r", nil)
        var last = h.registry.counts(room: "r").version
        var subs: [Subscription] = []
        func checkIncreased(_ what: String) {
            let now = h.registry.counts(room: "r").version
            #expect(now > last, "\(what): \(now) after \(last)")
            last = now
        }
        for i in 0..<5 {
            subs.append(try h.join("r", .identified("v\(i % 2)")).0)  // also a second stream of a visitor
            checkIncreased("join \(i)")
            subs.append(try h.join("r", .ephemeral("e\(i)")).0)
            checkIncreased("ephemeral join \(i)")
            h.advanceAndTick(.milliseconds(30))
        }
        for sub in subs {
            h.registry.leave(sub)
            checkIncreased("leave")
        }
        h.advanceAndTick(.seconds(1))
        checkIncreased("grace expiry")
        h.registry.markChanged(room: "r")
        checkIncreased("markChanged")
        h.settle()

        // Every event the watcher was handed, including ones a real sink would drop, carries a
        // strictly increasing id: the registry never sends the same id twice to a subscriber that
        // did not join with it.
        let ids = watcher.rawEvents.map(\.version)
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 }, "\(ids)")
        #expect(watcher.last?.version == h.registry.counts(room: "r").version)
        #expect(watcher.rawEvents.allSatisfy { $0.parsed.id == $0.version })
    }

    @Test func idsKeepIncreasingAcrossRoomDeletionAndRecreation() throws {
        let h = Harness(leaveGrace: .zero)
        let (sub, first) = try h.join("r", .ephemeral("e1"))
        h.quiet()
        h.registry.leave(sub)
        h.quiet()
        #expect(h.registry.roomCount == 0)
        let lastBeforeDeletion = h.registry.counts(room: "r").version
        #expect(lastBeforeDeletion == 0, "an unknown room reads as zeros")
        let deletedAt = try #require(first.last?.version)

        // Other rooms' changes in between advance the shared sequence.
        try h.join("other", .ephemeral("o"))
        let (_, second) = try h.join("r", .ephemeral("e2"))
        let recreated = try #require(second.events.first)
        #expect(recreated.version > deletedAt)
        #expect(recreated.parsed.id == recreated.version)
        #expect(h.registry.counts(room: "r").version > deletedAt)
    }

    @Test func initialSequenceSeedsEveryId() throws {
        let seed: UInt64 = 1_700_000_000_000_000
        let h = Harness(initialSequence: seed)
        let (_, site) = try h.joinSite()
        #expect(site.texts == [siteEventText(id: seed, online: 0, connections: 0, rooms: 0)])
        let (_, sink) = try h.join("r", .identified("a"))
        #expect(sink.texts == [roomEventText(id: seed + 1, room: "r", online: 1, connections: 1)])
        #expect(site.last?.text == siteEventText(id: seed + 2, online: 1, connections: 1, rooms: 1))
        #expect(h.registry.siteCounts().version == seed + 2)
    }

    @Test func largeSeedsAreWrittenInFull() throws {
        let seed = UInt64.max - 100
        let h = Harness(initialSequence: seed)
        let (_, a) = try h.join("r", .ephemeral("a"))
        h.quiet()
        try h.join("r", .ephemeral("b"))
        #expect(a.events.map(\.version) == [seed + 1, seed + 3])
        #expect(a.last?.parsed.id == seed + 3)
    }

    /// A subscriber's first event carries the room's version as its SSE id. A room that was deleted and
    /// re-created by a watcher (no change happened) must not start over at id 0: the browser would have
    /// seen a lower id than one it already had for that room, and `initialSequence` (seeded from the
    /// wall clock to keep ids increasing across restarts) would not apply.
    @Test func aWatcherOfAFreshRoomDoesNotGetAnIdBelowTheOnesAlreadyIssued() throws {
        let h = Harness(leaveGrace: .zero)
        let (visitor, _) = try h.join("r", .ephemeral("e1"))
        h.quiet()
        h.registry.leave(visitor)
        h.quiet()
        #expect(h.registry.roomCount == 0)
        let (_, watcher) = try h.join("r", nil)
        let first = try #require(watcher.events.first)
        #expect(first.version >= 3, "re-created room restarted its ids at \(first.version); ids up to 3 were already issued for it")
    }

    @Test func aWatcherOfAFreshRoomGetsAnIdSeededByInitialSequence() throws {
        let seed: UInt64 = 5_000
        let h = Harness(initialSequence: seed)
        let (_, watcher) = try h.join("r", nil)
        let first = try #require(watcher.events.first)
        #expect(first.version >= seed, "a fresh room's first event has id \(first.version), below initialSequence \(seed)")
        let (_, legacy) = try h.join("fresh-legacy", nil, format: .legacy)
        #expect(legacy.last.map { $0.version >= seed } == true)
    }

    @Test func markChangedBumpsTheVersionAndFansOutWithoutTouchingTheSite() throws {
        let h = Harness()
        let (_, watcher) = try h.join("r", nil)
        let (_, site) = try h.joinSite()
        try h.join("r", .ephemeral("x"))
        h.quiet()
        let before = h.registry.counts(room: "r").version
        let siteBefore = h.registry.siteCounts().version
        h.registry.markChanged(room: "r")
        #expect(h.registry.counts(room: "r").version > before)
        #expect(h.registry.siteCounts().version == siteBefore)
        #expect(watcher.last?.version == h.registry.counts(room: "r").version)
        #expect(site.last?.version == siteBefore)

        // Unknown rooms are ignored and not created.
        h.registry.markChanged(room: "nowhere")
        #expect(h.registry.roomCount == 1)

        h.registry.markSiteChanged()
        #expect(h.registry.siteCounts().version > siteBefore)
        #expect(site.last?.version == h.registry.siteCounts().version)
    }
}
