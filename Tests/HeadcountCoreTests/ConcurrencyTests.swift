import HeadcountCore
import Synchronization
import Testing

@Suite struct ConcurrencyTests {
    @Test func concurrentJoinLeavePairsLeaveNothingBehind() async throws {
        let h = Harness(leaveGrace: .seconds(3), updateInterval: .milliseconds(100))
        let rooms = ["a", "b", "c"]
        var watchers: [String: TestSink] = [:]
        var watcherSubs: [Subscription] = []
        for room in rooms {
            let (sub, sink) = try h.join(room, nil)
            watchers[room] = sink
            watcherSubs.append(sub)
        }
        let (siteSub, site) = try h.joinSite()

        let done = DoneCounter()
        let registry = h.registry
        let clock = h.clock
        let pairsPerTask = 10_000
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<4 {
                group.addTask {
                    let sink = TestSink()
                    for i in 0..<pairsPerTask {
                        let room = rooms[(i + task) % rooms.count]
                        let visitor: VisitorIdentity? =
                            switch i % 4 {
                            case 0, 1: .identified("v\(i % 5)")
                            case 2: .ephemeral("t\(task)-\(i)")
                            default: nil
                            }
                        let format: EventFormat = i % 3 == 0 ? .legacy : .room
                        guard let sub = try? registry.join(.room(room, format), visitor: visitor, sink: sink) else {
                            Issue.record("join refused")
                            continue
                        }
                        if i % 100 == 0 { await Task.yield() }
                        registry.leave(sub)
                    }
                    done.value.add(1, ordering: .sequentiallyConsistent)
                }
            }
            // A driver moving the clock and ticking while the others churn.
            group.addTask {
                while done.value.load(ordering: .sequentiallyConsistent) < 4 {
                    clock.advance(by: .milliseconds(7))
                    registry.tick()
                    if Int.random(in: 0..<10) == 0 { registry.heartbeat() }
                    await Task.yield()
                }
            }
        }

        h.settle()
        for room in rooms {
            let counts = h.registry.counts(room: room)
            #expect(counts.online == 0, "\(room): \(counts)")
            #expect(counts.connections == 0, "\(room): \(counts)")
            let last = try #require(watchers[room]?.last)
            #expect(last.parsed.online == 0 && last.parsed.connections == 0, "\(room): \(last)")
            #expect(last.version == counts.version)
            let ids = watchers[room]!.events.map(\.version)
            #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
        }
        let siteCounts = h.registry.siteCounts()
        #expect(siteCounts.online == 0 && siteCounts.connections == 0 && siteCounts.rooms == 0)
        #expect(site.last?.version == siteCounts.version)
        #expect(site.last?.parsed.online == 0)
        #expect(h.registry.subscriberCount == 4)
        #expect(h.registry.stats().peakOnline >= 1)

        for sub in watcherSubs { h.registry.leave(sub) }
        h.registry.leave(siteSub)
        h.settle()
        #expect(h.registry.roomCount == 0)
        #expect(h.registry.subscriberCount == 0)
        #expect(!h.registry.hasPendingWork)
    }

    @Test func concurrentStreamsOfTheSameVisitorsCountOnce() async throws {
        let h = Harness(leaveGrace: .zero)
        let registry = h.registry
        // Four tasks each open a stream for the same ten visitors in one room and keep them open.
        let subs = await withTaskGroup(of: [Subscription].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    (0..<10).compactMap { i in try? registry.join(.room("shared", .room), visitor: .identified("v\(i)"), sink: TestSink()) }
                }
            }
            var all: [Subscription] = []
            for await part in group { all.append(contentsOf: part) }
            return all
        }
        #expect(subs.count == 40)
        #expect(h.online("shared") == 10)
        #expect(h.connections("shared") == 40)
        #expect(h.registry.siteCounts().online == 10)
        await withTaskGroup(of: Void.self) { group in
            for chunk in stride(from: 0, to: subs.count, by: 10) {
                let part = Array(subs[chunk..<chunk + 10])
                group.addTask { for sub in part { registry.leave(sub) } }
            }
        }
        #expect(h.online("shared") == 0)
        #expect(h.connections("shared") == 0)
        h.settle()
        #expect(h.registry.roomCount == 0)
    }
}

final class DoneCounter: Sendable {
    let value = Atomic<Int>(0)
}
