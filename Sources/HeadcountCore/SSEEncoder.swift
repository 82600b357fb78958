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
            buffer.writeString("data: {\"onlineUsers\":")
            buffer.writeDecimal(counts.online)
            buffer.writeString("}\n\n")
        case .room:
            buffer.writeString("id: ")
            buffer.writeDecimal(counts.version)
            buffer.writeString("\ndata: ")
            writeRoomJSON(counts, into: &buffer)
            buffer.writeString("\n\n")
        }
        return buffer
    }

    /// The JSON object of a room, as used in events and `/api/rooms/{room}`.
    public static func writeRoomJSON(_ counts: RoomCounts, into buffer: inout ByteBuffer, includePeak: Bool = false) {
        buffer.writeString("{\"room\":\"")
        buffer.writeString(counts.room)
        buffer.writeString("\",\"online\":")
        buffer.writeDecimal(counts.online)
        buffer.writeString(",\"connections\":")
        buffer.writeDecimal(counts.connections)
        if includePeak {
            buffer.writeString(",\"peak\":")
            buffer.writeDecimal(counts.peak)
        }
        if counts.partial { buffer.writeString(",\"partial\":true") }
        buffer.writeString("}")
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
    /// Writes a non-negative or negative integer in decimal without allocating a String.
    @inlinable
    public mutating func writeDecimal<T: BinaryInteger>(_ value: T) {
        if value == 0 {
            self.writeInteger(UInt8(ascii: "0"))
            return
        }
        var v = UInt64(truncatingIfNeeded: value.magnitude)
        if value < 0 { self.writeInteger(UInt8(ascii: "-")) }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, enough for 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            while v > 0 {
                raw[count] = UInt8(ascii: "0") &+ UInt8(v % 10)
                v /= 10
                count += 1
            }
            var i = count - 1
            while i >= 0 {
                self.writeInteger(raw[i])
                i -= 1
            }
        }
    }
}
