import CoreMetrics
import Foundation
import HeadcountCore
import Logging
import NIOCore

/// One SSE stream served straight from a NIO channel handler: no task, no async writer, no per-stream
/// timer. It writes the response head itself, then pre-encoded (and, for HTTP/1.1, pre-chunked) event
/// bytes shared with every other stream. A stream that cannot take more bytes keeps only a reference to
/// the newest event and writes it when the socket drains.
final class SSEStreamHandler: ChannelInboundHandler, EventSink, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let plan: SSEPlan
    let chunked: Bool
    let head: ByteBuffer
    let hub: StreamHub
    var context: ChannelHandlerContext?
    var subscription: Subscription?
    var group: LoopGroup?
    var loopStreams: LoopStreams?
    var loopIndex = -1
    var groupIndex = -1
    var lastVersion: UInt64?
    /// Newest event not yet written because the channel was not writable.
    var pending: (raw: ByteBuffer, chunked: ByteBuffer)?
    var closing = false
    /// Set once the stream has left: a fan-out already under way skips it.
    var left = false
    var leaveReason = LeaveReason.closed
    /// Since when the socket has refused more bytes (nil while writable).
    var blockedSince: NIODeadline?
    /// The channel's writability as of its last change event: read once per write on the fan-out path
    /// instead of asking the channel twice (a perf profile of fan-outs to 15,000 streams put ~4 % of the
    /// server's samples in `isWritable` and the pipeline's `channel` getter).
    var writable = true

    /// The client address whose stream slot this stream holds.
    var clientIP: String?

    init(plan: SSEPlan, chunked: Bool, head: ByteBuffer, hub: StreamHub, clientIP: String?) {
        self.clientIP = clientIP
        self.plan = plan
        self.chunked = chunked
        self.head = head
        self.hub = hub
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        writable = context.channel.isWritable
        // Bounded bytes per stream: NIO holds at most 16 KB, the kernel's send buffer 16 KB (doubled by
        // Linux for bookkeeping), plus a reference to one pending event. Presence events are tiny: a reader
        // that keeps up never has more than a few hundred bytes queued.
        if let options = context.channel.syncOptions {
            try? options.setOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 4 * 1024, high: 16 * 1024))
            try? options.setOption(ChannelOptions.socketOption(.so_sndbuf), value: 16 * 1024)
        }
        context.write(NIOAny(head), promise: nil)
        let loop = hub.streams(on: context.eventLoop)
        do {
            let group = try loop.group(for: plan.target)
            do {
                subscription = try hub.registry.join(plan.target, visitor: plan.visitor, initialTo: self)
            } catch {
                loop.removeGroupIfEmpty(group)
                throw error
            }
            if plan.visitor != nil { hub.metrics.joins.increment() }
            group.add(self)
            loop.add(self)
            self.group = group
            self.loopStreams = loop
        } catch {
            hub.logger.info("stream refused after accept", metadata: ["headcount.reason": "\(error)"])
            closeForShutdown()
            return
        }
        context.flush()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        leave()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        leave()
        context.fireChannelInactive()
    }

    /// Leaves the registry and the loop's groups; runs once, on every exit path.
    private func leave() {
        left = true
        if let sub = subscription {
            subscription = nil
            hub.registry.leave(sub)
            if plan.visitor != nil { hub.metrics.left(leaveReason) }  // counted streams only, as joins
            if leaveReason == .deadPeer || leaveReason == .writeFailure {
                hub.logLimiter.log(hub.logger, level: .info, "dropped a stream", reason: leaveReason.rawValue, metadata: ["headcount.reason": "\(leaveReason.rawValue)"])
            }
        }
        group?.remove(self)
        group = nil
        loopStreams?.remove(self)
        loopStreams = nil
        pending = nil
        if let ip = clientIP {
            clientIP = nil
            hub.policy.release(ip: ip)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A stream's request is complete; anything more the client sends is ignored.
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            // The client closed its side: it is gone.
            context.close(promise: nil)
        } else if event is ChannelShouldQuiesceEvent {
            leaveReason = .shutdown
            // Spread the closes over the drain window so that reconnects do not arrive all at once.
            let window = hub.configuration.drain.timeAmount.nanoseconds
            if window > 0 {
                let delay = TimeAmount.nanoseconds(Int64.random(in: 0...window))
                context.eventLoop.scheduleTask(in: delay) { [weak self] in self?.closeForShutdown() }
            } else {
                closeForShutdown()
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !closing { leaveReason = LeaveReason(error) }
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable {
            blockedSince = nil
            if let p = pending {
                pending = nil
                write(raw: p.raw, chunked: p.chunked)
            }
        } else if blockedSince == nil {
            blockedSince = .now()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Whether the reader has taken no bytes for `timeout`.
    func isStalled(now: NIODeadline, timeout: TimeAmount) -> Bool {
        guard let since = blockedSince, !closing else { return false }
        return now - since >= timeout
    }

    /// A reader that stopped reading: drop it (it is counted out like any other leave).
    func dropSlowReader() {
        guard let context else { return }
        leaveReason = .slowReader
        closing = true
        pending = nil
        hub.logLimiter.log(hub.logger, level: .info, "dropped a stream that stopped reading", reason: "slow_reader", metadata: ["headcount.reason": "slow_reader"])
        context.close(promise: nil)
    }

    /// Delivers an event on the loop: written at once, or kept as the newest pending one. Returns
    /// whether the event was taken (not a duplicate or stale one).
    @discardableResult
    func send(raw: ByteBuffer, chunked framed: ByteBuffer, version: UInt64) -> Bool {
        guard context != nil, !closing, !left else { return false }
        if let last = lastVersion, version <= last { return false }
        lastVersion = version
        write(raw: raw, chunked: framed)
        return true
    }

    private func write(raw: ByteBuffer, chunked framed: ByteBuffer) {
        guard let context else { return }
        if writable {
            // Crossing the high watermark fires channelWritabilityChanged inside this call, which clears
            // `writable` and starts `blockedSince`.
            context.writeAndFlush(NIOAny(chunked ? framed : raw), promise: nil)
        } else {
            pending = (raw, framed)
            if blockedSince == nil { blockedSince = .now() }
        }
    }

    /// Called by the loop's timer every `--heartbeat`; returns whether a heartbeat was written. Every
    /// stream gets one, even one that just had an event: a write at least every heartbeat is what lets
    /// TCP_USER_TIMEOUT notice a vanished peer within `--dead-peer-timeout` (see `DeadPeerDetection`).
    func heartbeatTick(raw: ByteBuffer, chunked framed: ByteBuffer) -> Bool {
        if pending == nil && !closing {
            write(raw: raw, chunked: framed)
            return true
        }
        return false
    }

    /// Ends the response properly (last chunk) and closes.
    func closeForShutdown() {
        guard let context, !closing else { return }
        closing = true
        if chunked {
            let channel = context.channel
            context.writeAndFlush(NIOAny(ChunkFraming.terminator)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: EventSink (the initial event, delivered by `join` on this loop)

    func deliver(_ buffer: ByteBuffer, version: UInt64) {
        let framed = ChunkFraming.frame(buffer)
        if context?.eventLoop.inEventLoop == true {
            if send(raw: buffer, chunked: framed, version: version) { hub.metrics.sent(events: 1, bytes: framed.readableBytes) }
        } else {
            context?.eventLoop.execute {
                if self.send(raw: buffer, chunked: framed, version: version) { self.hub.metrics.sent(events: 1, bytes: framed.readableBytes) }
            }
        }
    }

    func heartbeat(_ buffer: ByteBuffer) {}

    func close() {
        if context?.eventLoop.inEventLoop == true {
            leaveReason = .shutdown
            closeForShutdown()
        } else {
            context?.eventLoop.execute {
                self.leaveReason = .shutdown
                self.closeForShutdown()
            }
        }
    }

    /// The response head, written by hand: the HTTP handlers are gone from the pipeline by then.
    static func responseHead(plan: SSEPlan, chunked: Bool, origin: String?, cors: CORSPolicy, retryMilliseconds: Int) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: 512)
        b.writeString(chunked ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.0 200 OK\r\n")
        b.writeString("Content-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\n")
        for (name, value) in cors.fields(origin: origin) { b.writeString("\(name): \(value)\r\n") }
        if let cookie = plan.setCookie { b.writeString("Set-Cookie: \(cookie)\r\n") }
        b.writeString("Date: \(DateHeader.shared.now)\r\nServer: headcount\r\n")
        b.writeString(chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Connection: close\r\n\r\n")
        let retry = SSEEncoder.retry(milliseconds: retryMilliseconds)
        if chunked { b.writeImmutableBuffer(ChunkFraming.frame(retry)) } else { b.writeImmutableBuffer(retry) }
        return b
    }
}

extension LeaveReason {
    /// Classifies the error that ended a stream: a reset is the client leaving, a timeout is a peer that
    /// vanished (TCP_USER_TIMEOUT or keepalive gave up), anything else a failed write.
    init(_ error: any Error) {
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNRESET, EPIPE: self = .closed
            case ETIMEDOUT, EHOSTUNREACH: self = .deadPeer
            default: self = .writeFailure
            }
        } else if let channelError = error as? ChannelError, channelError == .eof || channelError == .alreadyClosed {
            self = .closed
        } else {
            self = .writeFailure
        }
    }
}
