import Benchmark
import HeadcountCore
import NIOCore
import Synchronization

/// A sink that only counts what it is given: the cost measured is the registry's, not a socket's.
final class CountingSink: EventSink {
    let delivered = Atomic<Int>(0)
    func deliver(_ buffer: ByteBuffer, version: UInt64) { delivered.add(1, ordering: .relaxed) }
    func heartbeat(_ buffer: ByteBuffer) {}
    func close() {}
}

/// Hands out visitor ids that were never used before.
final class FreshIDs: Sendable {
    let next = Atomic<Int>(0)
    /// `count` new ids, made before the measurement starts.
    func take(_ count: Int) -> [String] {
        let start = next.add(count, ordering: .relaxed).oldValue
        return (start..<start + count).map { "n\($0)" }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000
    )

    // Join + leave of an identified visitor in a room that already has 100 subscribers; no grace, so
    // every pair is a real enter and exit. Events are coalesced (a long update interval), as in a storm.
    Benchmark("join+leave pair") { benchmark in
        let registry = PresenceRegistry(configuration: .init(leaveGrace: .zero, updateInterval: .seconds(3600)))
        let sink = CountingSink()
        let crowd = (0..<100).map { i in try! registry.join(.room("bench", .room), visitor: .identified("crowd\(i)"), sink: sink) }
        let ids = (0..<1024).map { "v\($0)" }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let sub = try! registry.join(.room("bench", .room), visitor: .identified(ids[i & 1023]), sink: sink)
            registry.leave(sub)
        }
        benchmark.stopMeasurement()
        for s in crowd { registry.leave(s) }
    }

    // The same pair alternating between two rooms of 100 subscribers: no join finds its room as the
    // room of the previous join (the registry remembers that one), so each looks its room up by name.
    Benchmark("join+leave pair, two rooms alternating") { benchmark in
        let registry = PresenceRegistry(configuration: .init(leaveGrace: .zero, updateInterval: .seconds(3600)))
        let sink = CountingSink()
        let names = ["bench-a", "bench-b"]
        let crowd = (0..<200).map { i in try! registry.join(.room(names[i & 1], .room), visitor: .identified("crowd\(i)"), sink: sink) }
        let ids = (0..<1024).map { "v\($0)" }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let sub = try! registry.join(.room(names[i & 1], .room), visitor: .identified(ids[i & 1023]), sink: sink)
            registry.leave(sub)
        }
        benchmark.stopMeasurement()
        for s in crowd { registry.leave(s) }
    }

    // The same pair with one registry for the whole run and every visitor id new (the pair above builds a
    // fresh registry for each iteration and takes its ids from one fixed list): the registry's tables
    // have seen millions of visitors come and go.
    let freshRegistry = PresenceRegistry(configuration: .init(leaveGrace: .zero, updateInterval: .seconds(3600)))
    let freshSink = CountingSink()
    for i in 0..<100 { _ = try! freshRegistry.join(.room("bench", .room), visitor: .identified("crowd\(i)"), sink: freshSink) }
    let freshIDs = FreshIDs()
    Benchmark("join+leave pair, every visitor new") { benchmark in
        let ids = freshIDs.take(benchmark.scaledIterations.count)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            let sub = try! freshRegistry.join(.room("bench", .room), visitor: .identified(ids[i]), sink: freshSink)
            freshRegistry.leave(sub)
        }
        benchmark.stopMeasurement()
    }

    // Encoding one room event (done once per change, whatever the number of subscribers).
    Benchmark("encode room event") { benchmark in
        let counts = RoomCounts(room: "article-42", online: 12_345, connections: 15_000, version: 1_795_616_148_495_679)
        for _ in benchmark.scaledIterations {
            blackHole(SSEEncoder.roomEvent(counts, format: .room))
        }
    }

    // One change fanned out to N in-memory sinks: allocations must not grow with N.
    for n in [1_000, 15_000] {
        Benchmark("fan-out one change to \(n) sinks", configuration: .init(scalingFactor: .one)) { benchmark in
            let registry = PresenceRegistry(configuration: .init(leaveGrace: .zero, updateInterval: .zero, fanoutCostPerSubscriber: .zero))
            let sinks = (0..<n).map { _ in CountingSink() }
            let subs = sinks.map { try! registry.join(.room("big", .room), visitor: nil, sink: $0) }
            var flip = 0
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                // A visitor enters (one change, one fan-out to every watcher), then leaves (another).
                let s = try! registry.join(.room("big", .room), visitor: .ephemeral("x\(flip & 1)"), sink: sinks[0])
                registry.leave(s)
                flip &+= 1
            }
            benchmark.stopMeasurement()
            for s in subs { registry.leave(s) }
        }
    }
}
