import CoreMetrics
import Foundation
import HeadcountCore
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// How a stream's bytes are framed on the wire.
enum StreamFraming: Sendable {
    /// HTTP/1.1: chunked transfer coding (the chunk framing is applied once per event and shared).
    case chunked
    /// HTTP/1.0: the raw event bytes; the stream ends when the connection closes.
    case identity
    /// An HTTP/2 stream: DATA frames on its own child channel.
    case http2

    var transport: StreamTransport { self == .http2 ? .http2 : .http1 }
}

/// One SSE stream served straight from a NIO channel handler, whichever way it arrived (the first or a
/// later request of an HTTP/1.x connection, plain or TLS, or an HTTP/2 stream): no task, no async writer,
/// no per-stream timer. It writes the response head itself, then pre-encoded (and, for HTTP/1.1,
/// pre-chunked) event bytes shared with every other stream. A stream that cannot take more bytes keeps
/// only a reference to the newest event and writes it when the socket (or the HTTP/2 flow-control
/// window) drains.
final class SSEStreamHandler: ChannelInboundHandler, EventSink, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let plan: SSEPlan
    let framing: StreamFraming
    let origin: String?
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

    /// A TLS connection's fate: a vanished peer is reported as such even though TLS (or HTTP/2) hides
    /// the socket's error from the stream.
    let fate: ConnectionFate?

    init(plan: SSEPlan, framing: StreamFraming, origin: String?, hub: StreamHub, clientIP: String?, fate: ConnectionFate? = nil) {
        self.fate = fate
        self.clientIP = clientIP
        self.plan = plan
        self.framing = framing
        self.origin = origin
        self.hub = hub
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        writable = context.channel.isWritable
        // Bounded bytes per stream: NIO holds at most 16 KB, the kernel's send buffer 16 KB (doubled by
        // Linux for bookkeeping), plus a reference to one pending event. Presence events are tiny: a reader
        // that keeps up never has more than a few hundred bytes queued. An HTTP/2 stream channel takes no
        // such options (it traps on them): its bound is the listener's stream configuration (8 KB) and the
        // flow-control window.
        if framing != .http2, let options = context.channel.syncOptions {
            try? options.setOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 4 * 1024, high: 16 * 1024))
            try? options.setOption(ChannelOptions.socketOption(.so_sndbuf), value: 16 * 1024)
        }
        writeHead(context: context)
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
            loop.add(self, transport: framing.transport)
            self.group = group
            self.loopStreams = loop
            if let since = blockedSince { loop.noteBlocked(since: since) }
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
        if fate?.deadPeer == true, !closing { leaveReason = .deadPeer }
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
        releaseSlot()
    }

    /// Gives back the client address's stream slot (once).
    func releaseSlot() {
        if let ip = clientIP {
            clientIP = nil
            hub.policy.release(ip: ip)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // HTTP/2: the stream channel also reads flow-control frames (WINDOW_UPDATE); the request is complete
        // and a client reset arrives as an error, so frames are ignored here.
        guard framing != .http2 else { return }
        // HTTP/1: the request is complete, so any byte is a request pipelined behind it, which nothing will
        // ever answer. End the stream cleanly; the client reconnects.
        leaveReason = .closed
        closeForShutdown()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            // The client closed its side: it is gone.
            leave()
            context.close(promise: nil)
        } else if event is ChannelShouldQuiesceEvent {
            // Shutdown: `LoopStreams.drain` closes every stream of the loop spread over the drain window,
            // whatever carries it.
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !closing { leaveReason = LeaveReason(error) }
        leave()
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
            markBlocked()
        }
        context.fireChannelWritabilityChanged()
    }

    private func markBlocked() {
        let now = NIODeadline.now()
        blockedSince = now
        loopStreams?.noteBlocked(since: now)
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
        leave()
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
            switch framing {
            case .chunked: context.writeAndFlush(NIOAny(framed), promise: nil)
            case .identity: context.writeAndFlush(NIOAny(raw), promise: nil)
            case .http2: context.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(raw)))), promise: nil)
            }
        } else {
            pending = (raw, framed)
            if blockedSince == nil { markBlocked() }
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

    /// Ends the response properly (last chunk, or END_STREAM) and closes. A reader that is not taking
    /// bytes could never receive the end: it is closed at once.
    func closeForShutdown() {
        guard let context, !closing else { return }
        closing = true
        // Counted out now, not when the channel is gone: a TLS close waits for the peer's close_notify.
        leave()
        let channel = context.channel
        guard writable else {
            context.close(promise: nil)
            return
        }
        switch framing {
        case .chunked:
            context.writeAndFlush(NIOAny(ChunkFraming.terminator)).whenComplete { _ in channel.close(promise: nil) }
        case .identity:
            context.close(promise: nil)
        case .http2:
            let end = HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
            context.writeAndFlush(NIOAny(end)).whenComplete { _ in channel.close(promise: nil) }
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

    /// Writes the response head (by hand on HTTP/1: the HTTP handlers are gone from the pipeline) and
    /// the stream's randomised `retry:`.
    private func writeHead(context: ChannelHandlerContext) {
        let fields = SSEStreamHandler.headFields(plan: plan, origin: origin, cors: hub.cors)
        let retry = SSEEncoder.retry(milliseconds: hub.randomRetryMilliseconds())
        switch framing {
        case .chunked, .identity:
            context.write(NIOAny(SSEStreamHandler.http1Head(fields: fields, chunked: framing == .chunked, retry: retry)), promise: nil)
        case .http2:
            var headers = HPACKHeaders([(":status", "200")])
            for (name, value) in fields { headers.add(name: name.lowercased(), value: value) }
            context.write(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: headers))), promise: nil)
            context.write(NIOAny(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(retry)))), promise: nil)
        }
    }

    /// The header fields of every stream's response, on every transport.
    static func headFields(plan: SSEPlan, origin: String?, cors: CORSPolicy) -> [(String, String)] {
        var fields = [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache, no-transform"),
            ("X-Accel-Buffering", "no"),
        ]
        fields += cors.fields(origin: origin)
        if let cookie = plan.setCookie { fields.append(("Set-Cookie", cookie)) }
        fields.append(("Date", DateHeader.shared.now))
        fields.append(("Server", "headcount"))
        return fields
    }

    /// An HTTP/1.x response head and the first bytes of the body (`retry:`).
    static func http1Head(fields: [(String, String)], chunked: Bool, retry: ByteBuffer) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: 512)
        b.writeString(chunked ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.0 200 OK\r\n")
        for (name, value) in fields { b.writeString("\(name): \(value)\r\n") }
        b.writeString(chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Connection: close\r\n\r\n")
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
        } else if error is NIOHTTP2Errors.StreamClosed {
            self = .closed  // the client reset its HTTP/2 stream
        } else {
            self = .writeFailure
        }
    }
}
