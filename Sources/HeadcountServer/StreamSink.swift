import HeadcountCore
import NIOCore
import Synchronization

/// The sink of a stream served by a Hummingbird route: a one-slot mailbox read by the route's writer
/// loop. Latest wins, so a slow reader never makes the server hold more than the newest event.
final class StreamSink: EventSink {
    private struct State {
        var pending: ByteBuffer?
        var heartbeatPending: ByteBuffer?
        var lastVersion: UInt64?
        var closed = false
        var closeReason = LeaveReason.closed
        var waiter: CheckedContinuation<ByteBuffer?, Never>?
    }
    private let state = Mutex(State())

    init() {}

    func deliver(_ buffer: ByteBuffer, version: UInt64) {
        state.withLock { s in
            if s.closed { return }
            if let last = s.lastVersion, version <= last { return }
            s.lastVersion = version
            if let waiter = s.waiter {
                s.waiter = nil
                waiter.resume(returning: buffer)
            } else {
                s.pending = buffer
                s.heartbeatPending = nil
            }
        }
    }

    func heartbeat(_ buffer: ByteBuffer) {
        state.withLock { s in
            if s.closed || s.pending != nil { return }
            if let waiter = s.waiter {
                s.waiter = nil
                waiter.resume(returning: buffer)
            } else {
                s.heartbeatPending = buffer
            }
        }
    }

    func close() { close(reason: .shutdown) }

    /// Ends the stream; the first reason given is the one reported.
    func close(reason: LeaveReason) {
        state.withLock { s in
            if !s.closed { s.closeReason = reason }
            s.closed = true
            s.pending = nil
            s.heartbeatPending = nil
            if let waiter = s.waiter {
                s.waiter = nil
                waiter.resume(returning: nil)
            }
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }
    var closeReason: LeaveReason { state.withLock { $0.closeReason } }

    /// The next bytes to write, or nil once the sink is closed.
    func next() async -> ByteBuffer? {
        await withCheckedContinuation { (continuation: CheckedContinuation<ByteBuffer?, Never>) in
            state.withLock { s in
                if s.closed {
                    continuation.resume(returning: nil)
                } else if let pending = s.pending {
                    s.pending = nil
                    continuation.resume(returning: pending)
                } else if let hb = s.heartbeatPending {
                    s.heartbeatPending = nil
                    continuation.resume(returning: hb)
                } else {
                    precondition(s.waiter == nil, "one reader per sink")
                    s.waiter = continuation
                }
            }
        }
    }
}
