import Synchronization
import CoreMetrics
import HeadcountCore
import NIOCore

/// The NIO streams of one event loop: one delivery group per subscription target, and one heartbeat
/// timer for all of them. Touched only on its event loop (except `count`).
final class LoopStreams: @unchecked Sendable {
    let eventLoop: any EventLoop
    let hub: StreamHub
    private var groups: [SubscriptionTarget: LoopGroup] = [:]
    private var streams: ContiguousArray<SSEStreamHandler> = []
    private var heartbeatTask: RepeatedTask?
    let count = Atomic<Int>(0)
    let heartbeatRaw: ByteBuffer
    let heartbeatChunked: ByteBuffer

    init(eventLoop: any EventLoop, hub: StreamHub) {
        self.eventLoop = eventLoop
        self.hub = hub
        self.heartbeatRaw = SSEEncoder.heartbeat()
        self.heartbeatChunked = ChunkFraming.frame(heartbeatRaw)
    }

    /// The group of `target` on this loop, registering it with the registry as a watcher when new.
    func group(for target: SubscriptionTarget) throws(JoinRefusal) -> LoopGroup {
        eventLoop.preconditionInEventLoop()
        if let g = groups[target] { return g }
        let g = LoopGroup(target: target, loop: self)
        g.subscription = try hub.registry.join(target, visitor: nil, sink: g)
        groups[target] = g
        return g
    }

    /// The channels of this loop's open streams (for tests). Call on the loop.
    func openChannels() -> [any Channel] { streams.compactMap { $0.context?.channel } }

    func add(_ stream: SSEStreamHandler) {
        stream.loopIndex = streams.count
        streams.append(stream)
        count.add(1, ordering: .relaxed)
        if heartbeatTask == nil {
            // One timer per loop: write-timeout checks every tick, heartbeats every `heartbeat`.
            let heartbeat = hub.configuration.heartbeat.timeAmount
            let tick = min(heartbeat, .seconds(1))
            nextHeartbeat = .now() + heartbeat
            heartbeatTask = eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [weak self] _ in
                self?.tick()
            }
        }
    }

    func remove(_ stream: SSEStreamHandler) {
        let i = stream.loopIndex
        guard i >= 0, i < streams.count, streams[i] === stream else { return }
        let last = streams.removeLast()
        if i < streams.count {
            streams[i] = last
            last.loopIndex = i
        }
        stream.loopIndex = -1
        count.subtract(1, ordering: .relaxed)
        if streams.isEmpty {
            heartbeatTask?.cancel()
            heartbeatTask = nil
        }
    }

    func removeGroupIfEmpty(_ group: LoopGroup) {
        guard group.members.isEmpty, groups[group.target] === group else { return }
        groups.removeValue(forKey: group.target)
        if let sub = group.subscription { hub.registry.leave(sub) }
        group.subscription = nil
    }

    private var nextHeartbeat = NIODeadline.now()

    private func tick() {
        let now = NIODeadline.now()
        let writeTimeout = hub.configuration.writeTimeout.timeAmount
        // Iterate over a copy: a stream dropped for its write timeout leaves `streams` as we go.
        for stream in streams where stream.isStalled(now: now, timeout: writeTimeout) {
            stream.dropSlowReader()
        }
        if now >= nextHeartbeat {
            nextHeartbeat = now + hub.configuration.heartbeat.timeAmount
            heartbeat()
        }
    }

    /// A heartbeat to every stream that is not backed up (a backed-up one is already timing out).
    private func heartbeat() {
        var sent = 0
        for stream in streams where stream.heartbeatTick(raw: heartbeatRaw, chunked: heartbeatChunked) { sent += 1 }
        if sent > 0 { hub.metrics.heartbeats.increment(by: Int64(sent)) }
    }

    var groupCount: Int { groups.count }
}

/// All streams of one target on one event loop. The registry sees the group as one watcher, so an event
/// costs one hop per event loop, and the group writes the same bytes to each member on its loop.
final class LoopGroup: EventSink, @unchecked Sendable {
    let target: SubscriptionTarget
    let loop: LoopStreams
    var members: ContiguousArray<SSEStreamHandler> = []
    var subscription: Subscription?

    init(target: SubscriptionTarget, loop: LoopStreams) {
        self.target = target
        self.loop = loop
    }

    func add(_ stream: SSEStreamHandler) {
        stream.groupIndex = members.count
        members.append(stream)
    }

    func remove(_ stream: SSEStreamHandler) {
        let i = stream.groupIndex
        guard i >= 0, i < members.count, members[i] === stream else { return }
        let last = members.removeLast()
        if i < members.count {
            members[i] = last
            last.groupIndex = i
        }
        stream.groupIndex = -1
        loop.removeGroupIfEmpty(self)
    }

    // EventSink: called from any thread by the registry.
    func deliver(_ buffer: ByteBuffer, version: UInt64) {
        let chunked = ChunkFraming.frame(buffer)
        let enqueued = NIODeadline.now()
        loop.eventLoop.execute {
            let started = NIODeadline.now()
            var sent = 0
            for member in self.members where member.send(raw: buffer, chunked: chunked, version: version) { sent += 1 }
            let finished = NIODeadline.now()
            let hub = self.loop.hub
            hub.metrics.sent(events: sent, bytes: chunked.readableBytes)
            hub.metrics.loopFanoutDuration.recordNanoseconds((finished - enqueued).nanoseconds)
            // What a delivery really costs on this machine sizes coalescing (DECISIONS §6). Wall time on
            // the loop, not CPU time: it is at least the CPU time, and grows when the machine is busy.
            hub.registry.recordFanout(deliveries: sent, duration: .nanoseconds((finished - started).nanoseconds))
        }
    }

    func heartbeat(_ buffer: ByteBuffer) {
        // The loop's own timer sends heartbeats.
    }

    /// The group's streams joined the registry one by one (without a sink): they, not the group, are the
    /// room's audience.
    var isRelay: Bool { true }

    func close() {
        loop.eventLoop.execute {
            for member in self.members { member.closeForShutdown() }
        }
    }
}

/// HTTP/1.1 chunked framing, applied once per event and shared by every stream.
enum ChunkFraming {
    static func frame(_ payload: ByteBuffer) -> ByteBuffer {
        let length = payload.readableBytes
        let hex = String(length, radix: 16)
        var out = ByteBufferAllocator().buffer(capacity: hex.utf8.count + 4 + length)
        out.writeString(hex)
        out.writeStaticString("\r\n")
        out.writeImmutableBuffer(payload)
        out.writeStaticString("\r\n")
        return out
    }
    static let terminator: ByteBuffer = ByteBuffer(string: "0\r\n\r\n")
}

