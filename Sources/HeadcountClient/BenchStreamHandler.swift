import NIOCore
import NIOHTTP1

/// The last handler of a bench stream's pipeline (after NIOHTTP1's client codec, which undoes the
/// chunked encoding): feeds the body to an `SSEParser`, extracts each event's value and records
/// when it first reaches each threshold.
final class BenchStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    struct Setup: Sendable {
        /// Request written as soon as the connection is up; nil: someone writes it later.
        var request: HTTPRequestHead?
        var valueKind: ValueKind
        /// Threshold j is reached when the value is at least `base + j`.
        var base: Int
        /// Highest threshold index this stream waits for.
        var lastThreshold: Int
        /// Ready (and threshold 0 reached) when the `200` head arrives, not at the first event (nchan).
        var readyOnHead: Bool
    }

    private let table: ClientTable
    private let slot: Int
    private let setup: Setup
    private var parser = SSEParser()
    private var next = 0
    private var answered = false
    private var ready = false
    private var failed = false
    private var endReason: String?
    private var events = 0
    private var bytes = 0
    private var comments = 0

    init(table: ClientTable, slot: Int, setup: Setup) {
        self.table = table
        self.slot = slot
        self.setup = setup
    }

    func channelActive(context: ChannelHandlerContext) {
        if let request = setup.request {
            context.write(wrapOutboundOut(.head(request)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard head.status == .ok else {
                fail("HTTP \(head.status.code)", context: context)
                return
            }
            answered = true
            table.answered()
            if setup.readyOnHead {
                let now = MonotonicClock.nanoseconds()
                ready = true
                table.markReady(slot, at: now)
                if setup.lastThreshold >= 0 {
                    table.markSeen(slot, from: 0, to: 1, at: now)
                    next = 1
                }
            }
        case .body(let buffer):
            bytes += buffer.readableBytes
            let now = MonotonicClock.nanoseconds()
            parser.feed(buffer) { output in
                switch output {
                case .event(let event):
                    events += 1
                    received(event, at: now)
                case .comment:
                    comments += 1
                case .retry:
                    break
                }
            }
        case .end:
            endReason = "stream ended by the server"
            context.close(promise: nil)
        }
    }

    private func received(_ event: SSEEvent, at now: Int64) {
        if !ready {
            ready = true
            table.markReady(slot, at: now)
        }
        guard next <= setup.lastThreshold, let value = setup.valueKind.value(of: event.data) else { return }
        let from = next
        while next <= setup.lastThreshold && value >= setup.base + next { next += 1 }
        if next > from { table.markSeen(slot, from: from, to: next, at: now) }
    }

    private func fail(_ reason: String, context: ChannelHandlerContext) {
        if !failed && !answered {
            failed = true
            table.failed(reason)
        } else if endReason == nil {
            endReason = reason
        }
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("\(error)", context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        table.ended(answeredBefore: answered, failedBefore: failed, reason: endReason, events: events, bytes: bytes, comments: comments)
        events = 0
        bytes = 0
        comments = 0
        context.fireChannelInactive()
    }
}
