public import NIOCore

/// The wire format of each kind of subscriber.
public enum EventFormat: Sendable, Hashable {
    /// `id: N` + `data: {"room":..,"online":..,"connections":..}`: `/rooms/{room}/events`.
    case room
    /// `data: {"onlineUsers":N}` with no id: the original `/api/sse` contract.
    case legacy
}

/// Encodes Server-Sent Events. Room names are validated to an alphabet that needs no JSON escaping,
/// so events are written byte for byte without a JSON encoder.
public enum SSEEncoder {
    /// `: heartbeat` comment.
    public static let heartbeatBytes: [UInt8] = Array(": heartbeat\n\n".utf8)

    public static func heartbeat(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        allocator.buffer(bytes: heartbeatBytes)
    }

    /// `retry: ms` line that opens a stream.
    public static func retry(milliseconds: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 24)
        buffer.writeString("retry: ")
        buffer.writeDecimal(milliseconds)
        buffer.writeString("\n\n")
        return buffer
    }

    /// One room event in the given format.
    public static func roomEvent(_ counts: RoomCounts, format: EventFormat, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 96 + counts.room.utf8.count)
        switch format {
        case .legacy:
            buffer.writeStaticString("data: {\"onlineUsers\":")
            buffer.writeDecimal(counts.online)
            buffer.writeStaticString("}\n\n")
        case .room:
            buffer.writeStaticString("id: ")
            buffer.writeDecimal(counts.version)
            buffer.writeStaticString("\ndata: ")
            writeRoomJSON(counts, into: &buffer)
            buffer.writeStaticString("\n\n")
        }
        return buffer
    }

    /// The JSON object of a room, as used in events and `/api/rooms/{room}`.
    public static func writeRoomJSON(_ counts: RoomCounts, into buffer: inout ByteBuffer, includePeak: Bool = false) {
        buffer.writeStaticString("{\"room\":\"")
        buffer.writeString(counts.room)
        buffer.writeStaticString("\",\"online\":")
        buffer.writeDecimal(counts.online)
        buffer.writeStaticString(",\"connections\":")
        buffer.writeDecimal(counts.connections)
        if includePeak {
            buffer.writeStaticString(",\"peak\":")
            buffer.writeDecimal(counts.peak)
        }
        if counts.partial { buffer.writeStaticString(",\"partial\":true") }
        buffer.writeStaticString("}")
    }

    /// One site-totals event.
    public static func siteEvent(_ counts: SiteCounts, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 96)
        buffer.writeString("id: ")
        buffer.writeDecimal(counts.version)
        buffer.writeString("\ndata: {\"online\":")
        buffer.writeDecimal(counts.online)
        buffer.writeString(",\"connections\":")
        buffer.writeDecimal(counts.connections)
        buffer.writeString(",\"rooms\":")
        buffer.writeDecimal(counts.rooms)
        if counts.partial { buffer.writeString(",\"partial\":true") }
        buffer.writeString("}\n\n")
        return buffer
    }
}

extension ByteBuffer {
    /// Writes an integer in decimal without allocating a String: digits go to a small stack buffer and
    /// are written with one copy.
    @inlinable
    public mutating func writeDecimal<T: BinaryInteger>(_ value: T) {
        var v = UInt64(truncatingIfNeeded: value.magnitude)
        let negative = value < 0
        // 20 digits and a sign fit in 24 bytes.
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { raw in
            var i = raw.count
            repeat {
                i -= 1
                raw[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            } while v > 0
            if negative {
                i -= 1
                raw[i] = UInt8(ascii: "-")
            }
            self.writeBytes(UnsafeRawBufferPointer(rebasing: raw[i...]))
        }
    }
}
