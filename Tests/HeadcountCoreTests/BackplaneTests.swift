import HeadcountCore
import Synchronization
import Testing

/// A backplane that records what the registry publishes and adds fixed "remote" figures.
final class RecordingBackplane: Backplane {
    private struct State {
        var published: [LocalRoomState] = []
        var remoteOnline: [String: Int] = [:]
        var remoteConnections: [String: Int] = [:]
        var remoteSiteOnline = 0
        var partial = false
        var remoteOnlyRooms: [RoomCounts] = []
    }
    private let state = Mutex(State())
    let needsLocalState: Bool

    init(needsLocalState: Bool = true) { self.needsLocalState = needsLocalState }

    func publish(room: String, local: LocalRoomState) {
        state.withLock { $0.published.append(local) }
    }

    func merge(room: String, local: RoomCounts) -> RoomCounts {
        state.withLock { s in
            var merged = local
            merged.online += s.remoteOnline[room, default: 0]
            merged.connections += s.remoteConnections[room, default: 0]
            merged.partial = s.partial
            return merged
        }
    }

    func mergeSite(local: SiteCounts) -> SiteCounts {
        state.withLock { s in
            var merged = local
            merged.online += s.remoteSiteOnline
            merged.partial = s.partial
            return merged
        }
    }

    func knownRooms(local: [RoomCounts]) -> [RoomCounts] {
        state.withLock { s in
            local.map { room in
                var merged = room
                merged.online += s.remoteOnline[room.room, default: 0]
                merged.connections += s.remoteConnections[room.room, default: 0]
                return merged
            } + s.remoteOnlyRooms
        }
    }

    var published: [LocalRoomState] { state.withLock { $0.published } }
    func setRemote(room: String, online: Int, connections: Int) {
        state.withLock {
            $0.remoteOnline[room] = online
            $0.remoteConnections[room] = connections
        }
    }
    func setRemoteSite(online: Int) { state.withLock { $0.remoteSiteOnline = online } }
    func setPartial(_ partial: Bool) { state.withLock { $0.partial = partial } }
    func setRemoteOnlyRooms(_ rooms: [RoomCounts]) { state.withLock { $0.remoteOnlyRooms = rooms } }
}

@Suite struct BackplaneTests {
    func make(_ backplane: RecordingBackplane, leaveGrace: Duration = .seconds(3)) -> (PresenceRegistry, ManualTimeSource) {
        let clock = ManualTimeSource()
        let registry = PresenceRegistry(
            configuration: PresenceConfiguration(leaveGrace: leaveGrace, updateInterval: .milliseconds(100)),
            time: clock,
            backplane: backplane
        )
        return (registry, clock)
    }

    @Test func localStateIsPublishedAfterEachFlush() throws {
        let backplane = RecordingBackplane()
        let (registry, clock) = make(backplane, leaveGrace: .zero)
        let e1 = try registry.join(.room("r", .room), visitor: .ephemeral("e1"), sink: TestSink())
        #expect(backplane.published.count == 1)
        #expect(backplane.published.last?.room == "r")
        #expect(backplane.published.last?.connections == 1)
        #expect(backplane.published.last?.visitors == ["e1"])

        let e2 = try registry.join(.room("r", .room), visitor: .ephemeral("e2"), sink: TestSink())
        #expect(backplane.published.count == 1, "held by coalescing like the events")
        clock.advance(by: .milliseconds(100))
        registry.tick()
        #expect(backplane.published.count == 2)
        #expect(backplane.published.last?.connections == 2)
        #expect(Set(backplane.published.last?.visitors ?? []) == ["e1", "e2"])

        clock.advance(by: .seconds(1))
        registry.leave(e1)  // goes out at once
        registry.leave(e2)  // held: the room is now empty but must not vanish before it tells the cluster
        #expect(backplane.published.last?.connections == 1)
        clock.advance(by: .milliseconds(100))
        registry.tick()
        let last = try #require(backplane.published.last)
        #expect(last.connections == 0)
        #expect(last.visitors.isEmpty)
        #expect(registry.roomCount == 0)
    }

    @Test func aHeldLastChangeIsPublishedEvenWhenTheLastWatcherLeavesFirst() throws {
        let backplane = RecordingBackplane()
        let (registry, clock) = make(backplane, leaveGrace: .zero)
        let watcher = try registry.join(.room("r", .room), visitor: nil, sink: TestSink())
        let visitor = try registry.join(.room("r", .room), visitor: .ephemeral("e"), sink: TestSink())
        #expect(backplane.published.last?.connections == 1)
        registry.leave(visitor)  // inside the interval: held
        registry.leave(watcher)  // the room is empty now, but its last change has not gone out
        #expect(backplane.published.last?.connections == 1)
        clock.advance(by: .milliseconds(100))
        registry.tick()
        #expect(backplane.published.last?.connections == 0, "the cluster must learn that the room emptied")
        #expect(backplane.published.last?.visitors == [])
        #expect(registry.roomCount == 0)
    }

    @Test func visitorsInGraceArePublishedAsPresent() throws {
        let backplane = RecordingBackplane()
        let (registry, clock) = make(backplane, leaveGrace: .seconds(3))
        let sub = try registry.join(.room("r", .room), visitor: .identified("a"), sink: TestSink())
        clock.advance(by: .seconds(1))
        registry.leave(sub)
        #expect(backplane.published.last?.visitors == ["a"])
        #expect(backplane.published.last?.connections == 0)
        clock.advance(by: .seconds(3))
        registry.tick()
        #expect(backplane.published.last?.visitors == [])
    }

    @Test func nothingIsPublishedWhenTheBackplaneDoesNotAsk() throws {
        let backplane = RecordingBackplane(needsLocalState: false)
        let (registry, clock) = make(backplane)
        let sub = try registry.join(.room("r", .room), visitor: .ephemeral("e1"), sink: TestSink())
        clock.advance(by: .seconds(1))
        registry.leave(sub)
        registry.tick()
        #expect(backplane.published.isEmpty)
    }

    @Test func subscribersSeeMergedFigures() throws {
        let backplane = RecordingBackplane()
        backplane.setRemote(room: "r", online: 10, connections: 20)
        backplane.setRemoteSite(online: 100)
        let (registry, _) = make(backplane)
        let site = TestSink()
        _ = try registry.join(.site, visitor: nil, sink: site)
        #expect(site.last?.parsed.online == 100)

        let sink = TestSink()
        _ = try registry.join(.room("r", .room), visitor: .identified("a"), sink: sink)
        #expect(sink.texts == [roomEventText(id: 1, room: "r", online: 11, connections: 21)])
        let legacy = TestSink()
        _ = try registry.join(.room("r", .legacy), visitor: nil, sink: legacy)
        #expect(legacy.texts == [legacyEventText(online: 11)])
        #expect(site.last?.parsed.online == 101)

        #expect(registry.counts(room: "r").online == 11)
        #expect(registry.localCounts(room: "r").online == 1)
        #expect(registry.siteCounts().online == 101)
        #expect(registry.stats().counts.online == 101)
        // Even an unknown room is answered through the backplane.
        backplane.setRemote(room: "elsewhere", online: 4, connections: 4)
        #expect(registry.counts(room: "elsewhere").online == 4)
        #expect(registry.localCounts(room: "elsewhere").online == 0)
    }

    @Test func partialFiguresAreMarkedInEvents() throws {
        let backplane = RecordingBackplane()
        backplane.setPartial(true)
        let (registry, _) = make(backplane)
        let sink = TestSink()
        _ = try registry.join(.room("r", .room), visitor: .identified("a"), sink: sink)
        #expect(sink.texts == ["id: 1\ndata: {\"room\":\"r\",\"online\":1,\"connections\":1,\"partial\":true}\n\n"])
        let site = TestSink()
        _ = try registry.join(.site, visitor: nil, sink: site)
        #expect(site.lastText?.contains(",\"partial\":true}") == true)
    }

    @Test func markChangedFansOutTheNewMergedFigureCoalesced() throws {
        let backplane = RecordingBackplane()
        let (registry, clock) = make(backplane)
        let sink = TestSink()
        _ = try registry.join(.room("r", .room), visitor: .identified("a"), sink: sink)
        clock.advance(by: .seconds(1))
        registry.tick()

        backplane.setRemote(room: "r", online: 5, connections: 5)
        registry.markChanged(room: "r")
        #expect(sink.last?.parsed.online == 6, "first change after a quiet period goes out at once")
        backplane.setRemote(room: "r", online: 7, connections: 7)
        registry.markChanged(room: "r")
        backplane.setRemote(room: "r", online: 9, connections: 9)
        registry.markChanged(room: "r")
        #expect(sink.last?.parsed.online == 6)
        clock.advance(by: .milliseconds(100))
        registry.tick()
        #expect(sink.last?.parsed.online == 10)
        #expect(sink.last?.version == registry.counts(room: "r").version)
    }

    @Test func busiestRoomsIncludeRemoteRooms() throws {
        let backplane = RecordingBackplane()
        backplane.setRemote(room: "local", online: 1, connections: 1)
        backplane.setRemoteOnlyRooms([
            RoomCounts(room: "far", online: 5, connections: 6),
            RoomCounts(room: "gone", online: 0, connections: 0),
        ])
        let (registry, _) = make(backplane)
        _ = try registry.join(.room("local", .room), visitor: .identified("a"), sink: TestSink())
        let busiest = registry.busiestRooms(limit: 10)
        #expect(busiest.map(\.room) == ["far", "local"])
        #expect(busiest.map(\.online) == [5, 2])
        #expect(registry.busiestRooms(limit: 1).map(\.room) == ["far"])
    }
}
