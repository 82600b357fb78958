import NIOCore

/// What one bench stream measures, whatever carries it (an HTTP/1.1 connection or an HTTP/2
/// stream): feeds the body to an `SSEParser`, extracts each event's value, records when it first
/// reaches each threshold, and reports the stream's end to the `ClientTable`. Used on the stream's
/// event loop only.
final class StreamRecorder {
    struct Setup: Sendable {
        var valueKind: ValueKind
        /// Threshold j is reached when the value is at least `base + j`.
        var base: Int
        /// Highest threshold index this stream waits for.
        var lastThreshold: Int
        /// Ready (and threshold 0 reached) when the `200` head arrives, not at the first event (nchan).
        var readyOnHead: Bool
    }

    let table: ClientTable
    let slot: Int
    let setup: Setup
    private var parser = SSEParser()
    private var next = 0
    private(set) var answered = false
    private var ready = false
    private var failed = false
    private var endReason: String?
    private var events = 0
    private var bytes = 0
    private var comments = 0
    private var reported = false
    /// Why the stream ended if it closes before its answer and nothing more specific is known.
    var unansweredReason: String?

    init(table: ClientTable, slot: Int, setup: Setup) {
        self.table = table
        self.slot = slot
        self.setup = setup
    }

    /// The stream's response head arrived with `200`.
    func answeredOK() {
        guard !answered else { return }
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
    }

    /// Body bytes of the stream.
    func body(_ buffer: ByteBuffer) {
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

    /// Something went wrong: before the answer it is a failed stream, after it the reason the stream
    /// ended. The caller closes the channel.
    func fail(_ reason: String) {
        if !failed && !answered {
            failed = true
            table.failed(reason)
        } else if endReason == nil {
            endReason = reason
        }
    }

    /// Why the stream ended, if nothing more specific is known by then.
    func noteEnd(_ reason: String) {
        if endReason == nil { endReason = reason }
    }

    /// The channel went inactive: adds the stream's traffic to the table (once).
    func ended() {
        guard !reported else { return }
        reported = true
        let reason = endReason ?? (answered ? nil : unansweredReason)
        table.ended(answeredBefore: answered, failedBefore: failed, reason: reason, events: events, bytes: bytes, comments: comments)
    }
}
