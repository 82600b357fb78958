import HeadcountCore
@testable import HeadcountServer
import Logging
import NIOCore
import NIOEmbedded
import Testing

/// The NIO stream path on embedded channels: what each stream is written when its socket is full, how one
/// event reaches every stream of a loop, and a stream that closes in the middle of a fan-out.
@Suite("NIO stream path (per-loop groups)")
struct LoopPathTests {
    /// A hub and registry like the server's, with streams on `loop`.
    struct Rig {
        let hub: StreamHub
        let loop: EmbeddedEventLoop
        var registry: PresenceRegistry { hub.registry }

        init() {
            var configuration = HeadcountConfiguration()
            configuration.leaveGrace = .zero
            configuration.updateInterval = .zero
            configuration.logLevel = .critical
            let registry = PresenceRegistry(configuration: configuration.presence(startWallTime: 0))
            hub = StreamHub(registry: registry, configuration: configuration, metrics: HeadcountMetrics(), logger: Logger(label: "test"))
            loop = EmbeddedEventLoop()
        }

        /// A stream of `room` on a new embedded channel of the rig's loop, its head and first event read.
        func open(room: String, visitor: String?) throws -> (EmbeddedChannel, SSEStreamHandler) {
            let channel = EmbeddedChannel(loop: loop)
            let plan = SSEPlan(target: .room(room, .room), visitor: visitor.map { .identified($0) }, setCookie: nil)
            let handler = SSEStreamHandler(plan: plan, framing: .identity, origin: nil, hub: hub, clientIP: nil)
            try channel.pipeline.syncOperations.addHandler(handler)
            loop.run()
            return (channel, handler)
        }

        /// `count` streams of `room` (visitors `prefix0`, `prefix1`, …), their opening bytes already read.
        func open(room: String, count: Int, prefix: String) throws -> [(EmbeddedChannel, SSEStreamHandler)] {
            let streams = try (0..<count).map { i in try open(room: room, visitor: "\(prefix)\(i)") }
            for (channel, _) in streams { _ = try LoopPathTests.written(channel) }
            return streams
        }
    }

    /// Everything written to `channel` (and flushed) since the last read, as strings.
    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out.append(String(buffer: buffer)) }
        return out
    }

    static func event(room: String, online: Int, version: UInt64) -> ByteBuffer {
        SSEEncoder.roomEvent(RoomCounts(room: room, online: online, connections: online, version: version), format: .room)
    }

    @Test("a stream that is not writable keeps only the newest event and writes it, once, when it drains")
    func notWritableGetsNewestOnly() throws {
        let rig = Rig()
        let (channel, handler) = try rig.open(room: "full", visitor: "a")
        let opening = try Self.written(channel)
        #expect(opening.count == 2 && opening[0].hasPrefix("HTTP/1.0 200 OK\r\n") && opening[1].contains("\"online\":1"))
        let group = try #require(handler.group)

        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        for online in 2...50 { group.deliver(Self.event(room: "full", online: online, version: 1_000 + UInt64(online)), version: 1_000 + UInt64(online)) }
        rig.loop.run()
        #expect(try Self.written(channel).isEmpty, "nothing is written while the socket is full")
        #expect(handler.pending.map { String(buffer: $0.raw).contains("\"online\":50") } == true, "only the newest is held")

        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        let drained = try Self.written(channel)
        #expect(drained.count == 1, "exactly one event after draining, not the 49 it missed: \(drained)")
        #expect(drained.first?.contains("\"online\":50") == true)
        #expect(handler.pending == nil)

        // An older event arriving late is not written over the newer one.
        group.deliver(Self.event(room: "full", online: 7, version: 1_007), version: 1_007)
        rig.loop.run()
        #expect(try Self.written(channel).isEmpty)
        _ = try channel.finish(acceptAlreadyClosed: true)
        rig.loop.run()
        #expect(rig.registry.localCounts(room: "full").connections == 0)
    }

    @Test("one change reaches every stream of a loop through one group: one registry subscriber, one write and flush per stream")
    func oneGroupPerLoop() throws {
        let rig = Rig()
        let streams = try rig.open(room: "batch", count: 25, prefix: "v")
        // 25 counted streams and a single watcher (the loop's group) in the registry, whatever the size.
        #expect(rig.registry.subscriberCount == 26)
        #expect(rig.hub.streams(on: rig.loop).groupCount == 1)
        let group = try #require(streams[0].1.group)
        #expect(streams.allSatisfy { $0.1.group === group })

        // Two changes land before the loop runs: each stream gets both, in order, each one flushed.
        group.deliver(Self.event(room: "batch", online: 100, version: 5_000), version: 5_000)
        group.deliver(Self.event(room: "batch", online: 101, version: 5_001), version: 5_001)
        rig.loop.run()
        for (channel, _) in streams {
            let got = try Self.written(channel)
            #expect(got.count == 2 && got[0].contains("\"online\":100") && got[1].contains("\"online\":101"), "\(got)")
        }
        for (channel, _) in streams { _ = try channel.finish(acceptAlreadyClosed: true) }
        rig.loop.run()
        #expect(rig.registry.localCounts(room: "batch").connections == 0)
        #expect(rig.hub.streams(on: rig.loop).groupCount == 0, "the group leaves with its last stream")
        #expect(rig.registry.subscriberCount == 0)
    }

    /// Closes `victim` the first time an event passes through it.
    final class CloseOnWrite: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = ByteBuffer
        let victim: EmbeddedChannel
        var fired = false
        init(victim: EmbeddedChannel) { self.victim = victim }
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if !fired, String(buffer: unwrapOutboundIn(data)).contains("\"online\":77") {
                fired = true
                victim.close(promise: nil)
            }
            context.write(data, promise: promise)
        }
    }

    @Test("streams that close in the middle of a fan-out are skipped, the others still get the event, and counts stay exact")
    func closeDuringFanout() throws {
        let rig = Rig()
        let streams = try rig.open(room: "mid", count: 6, prefix: "m")
        let group = try #require(streams[0].1.group)
        // The group writes members in order; the first member's write closes two later members.
        let order = group.members.map { member in streams.firstIndex { $0.1 === member }! }
        let first = streams[order[0]].0, victims = [order[2], order[4]]
        for v in victims { try first.pipeline.syncOperations.addHandler(CloseOnWrite(victim: streams[v].0), position: .first) }

        group.deliver(Self.event(room: "mid", online: 77, version: 9_000), version: 9_000)
        rig.loop.run()
        for (i, (channel, _)) in streams.enumerated() {
            let got = try Self.written(channel)
            if victims.contains(i) {
                #expect(got.isEmpty, "a stream closed during the fan-out is not written: \(got)")
                #expect(!channel.isActive)
            } else {
                #expect(got.count == 1 && got[0].contains("\"online\":77"), "stream \(i): \(got)")
            }
        }
        #expect(group.members.count == 4)
        #expect(rig.registry.localCounts(room: "mid").connections == 4)
        #expect(rig.registry.localCounts(room: "mid").online == 4)
        for (channel, _) in streams { _ = try? channel.finish(acceptAlreadyClosed: true) }
        rig.loop.run()
        #expect(rig.registry.localCounts(room: "mid").connections == 0)
    }
}
