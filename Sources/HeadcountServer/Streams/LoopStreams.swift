import Synchronization
import CoreMetrics
import HeadcountCore
import NIOCore

/// The NIO streams of one event loop: one delivery group per subscription target, one heartbeat timer
/// for all of them (armed while the loop has streams), and a write-timeout check armed only while some
/// stream cannot take bytes, for the moment the first of them would time out. Touched only on its event
/// loop (except the counts).
final class LoopStreams: @unchecked Sendable {
    let eventLoop: any EventLoop
    let hub: StreamHub
    private var groups: [SubscriptionTarget: LoopGroup] = [:]
    private var streams: ContiguousArray<SSEStreamHandler> = []
    private var heartbeatTask: RepeatedTask?
    private var stallCheck: Scheduled<Void>?
    private var stallCheckAt: NIODeadline?
    /// Open streams of this loop by transport (read from any thread for metrics).
    let http1Count = Atomic<Int>(0)
    let http2Count = Atomic<Int>(0)
    var count: Int { http1Count.load(ordering: .relaxed) + http2Count.load(ordering: .relaxed) }
    func count(_ transport: StreamTransport) -> Int {
        transport == .http1 ? http1Count.load(ordering: .relaxed) : http2Count.load(ordering: .relaxed)
    }

    private func adjust(_ transport: StreamTransport, by delta: Int) {
        if transport == .http1 { http1Count.add(delta, ordering: .relaxed) } else { http2Count.add(delta, ordering: .relaxed) }
    }
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

    func add(_ stream: SSEStreamHandler, transport: StreamTransport) {
        stream.loopIndex = streams.count
        streams.append(stream)
        adjust(transport, by: 1)
        if heartbeatTask == nil {
            let heartbeat = hub.configuration.heartbeat.timeAmount
            heartbeatTask = eventLoop.scheduleRepeatedTask(initialDelay: heartbeat, delay: heartbeat) { [weak self] _ in
                self?.heartbeat()
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
        adjust(stream.framing.transport, by: -1)
        if streams.isEmpty {
            heartbeatTask?.cancel()
            heartbeatTask = nil
            stallCheck?.cancel()
            stallCheck = nil
            stallCheckAt = nil
        }
    }

    func removeGroupIfEmpty(_ group: LoopGroup) {
        guard group.members.isEmpty, groups[group.target] === group else { return }
        groups.removeValue(forKey: group.target)
        if let sub = group.subscription { hub.registry.leave(sub) }
        group.subscription = nil
    }

    /// A stream stopped taking bytes at `since`: make sure the write-timeout check runs by the time it
    /// would time out.
    func noteBlocked(since: NIODeadline) {
        let due = since + hub.configuration.writeTimeout.timeAmount
        if let at = stallCheckAt, at <= due { return }
        scheduleStallCheck(at: due)
    }

    private func scheduleStallCheck(at due: NIODeadline) {
        stallCheck?.cancel()
        stallCheckAt = due
        stallCheck = eventLoop.scheduleTask(deadline: due) { [weak self] in self?.checkStalls() }
    }

    /// Drops the streams whose reader has taken nothing for `--write-timeout`, and re-arms for the next
    /// blocked one (if any).
    private func checkStalls() {
        stallCheck = nil
        stallCheckAt = nil
        let now = NIODeadline.now()
        let writeTimeout = hub.configuration.writeTimeout.timeAmount
        var next: NIODeadline?
        // Iterate over a copy: a stream dropped for its write timeout leaves `streams` as we go.
        for stream in streams {
            if stream.isStalled(now: now, timeout: writeTimeout) {
                stream.dropSlowReader()
            } else if let since = stream.blockedSince, !stream.closing {
                next = min(next ?? since + writeTimeout, since + writeTimeout)
            }
        }
        if let next { scheduleStallCheck(at: next) }
    }

    /// A heartbeat to every stream that is not backed up (a backed-up one is already timing out).
    private func heartbeat() {
        var sent = 0
        batchingFlushes {
            for stream in streams where stream.heartbeatTick(raw: heartbeatRaw, chunked: heartbeatChunked) { sent += 1 }
        }
        if sent > 0 { hub.metrics.heartbeats.increment(by: Int64(sent)) }
    }

    // MARK: One flush per HTTP/2 connection and fan-out

    /// Whether a fan-out is being written on this loop: HTTP/2 connections then hold their flushes.
    private(set) var holdingFlushes = false
    private var heldFlushes: [HTTP2FlushBatcher] = []

    /// Runs `body` (writes to many streams) with HTTP/2 connections' flushes held, then flushes each
    /// connection once: every stream of a connection flushes it after its write, which would otherwise
    /// make one TLS record and one system call per stream.
    func batchingFlushes(_ body: () -> Void) {
        guard !holdingFlushes else { return body() }
        holdingFlushes = true
        body()
        holdingFlushes = false
        let held = heldFlushes
        heldFlushes.removeAll(keepingCapacity: true)
        for batcher in held { batcher.release() }
    }

    func hold(_ batcher: HTTP2FlushBatcher) {
        heldFlushes.append(batcher)
    }

    var groupCount: Int { groups.count }

    /// Shutdown: closes every stream of this loop at a random moment of the drain window, so that the
    /// reconnects do not arrive all at once. Call on the loop.
    func drain(window: TimeAmount) {
        for stream in streams {
            stream.leaveReason = .shutdown
            if window.nanoseconds > 0 {
                let delay = TimeAmount.nanoseconds(Int64(hub.jitter.next() % UInt64(window.nanoseconds + 1)))
                eventLoop.scheduleTask(in: delay) { [weak stream] in stream?.closeForShutdown() }
            } else {
                stream.closeForShutdown()
            }
        }
    }

    /// Closes every stream of this loop at once (the end of the drain window). Call on the loop.
    func closeAll() {
        for stream in streams {
            stream.leaveReason = .shutdown
            stream.context?.close(promise: nil)
        }
    }
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
            self.loop.batchingFlushes {
                for member in self.members where member.send(raw: buffer, chunked: chunked, version: version) { sent += 1 }
            }
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


/// In an HTTP/2 connection's pipeline, between TLS and the HTTP/2 handler: while its loop writes a
/// fan-out, the connection's flushes are held and released once at the end (`LoopStreams.batchingFlushes`).
final class HTTP2FlushBatcher: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = Any
    typealias OutboundOut = Any

    let streams: LoopStreams
    private var context: ChannelHandlerContext?
    private var held = false

    init(streams: LoopStreams) {
        self.streams = streams
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if held { context.flush() }
        self.context = nil
    }

    func flush(context: ChannelHandlerContext) {
        guard streams.holdingFlushes else { return context.flush() }
        if !held {
            held = true
            streams.hold(self)
        }
    }

    /// The fan-out is written: flush what it held.
    func release() {
        guard held else { return }
        held = false
        context?.flush()
    }
}
