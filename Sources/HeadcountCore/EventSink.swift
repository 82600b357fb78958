public import NIOCore

/// Where the registry sends a subscriber's events: the small interface every stream shape implements
/// (an async route writer, a NIO channel handler, an in-memory test sink).
///
/// All methods may be called from any thread and must not block. The registry never calls a sink while
/// it holds its own lock, so a sink may call back into the registry.
public protocol EventSink: AnyObject, Sendable {
    /// Deliver an encoded SSE event. `buffer` is shared by every subscriber of the same event: write it, do
    /// not mutate it. Latest wins: if an earlier event has not been written yet, the sink replaces it, so
    /// a slow reader never makes the server hold more than the newest event. `version` increases with
    /// every change of the source; a sink drops an event whose version is lower than one it already has.
    func deliver(_ buffer: ByteBuffer, version: UInt64)

    /// Write a heartbeat comment if nothing else is pending.
    func heartbeat(_ buffer: ByteBuffer)

    /// End the stream (server shutdown, subscriber dropped). Idempotent. The stream's owner then leaves
    /// the registry.
    func close()

    /// Whether this sink only relays events to streams that joined the registry on their own (a NIO
    /// event loop's group). A relay is not counted in the audience that sizes coalescing and the fan-out
    /// budget: its streams are, one each.
    var isRelay: Bool { get }
}

extension EventSink {
    public var isRelay: Bool { false }
}
