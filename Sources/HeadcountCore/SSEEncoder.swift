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
    ///
    /// Written in one pass: the exact length is computed first, then every byte is stored through one
    /// pointer (no per-field bounds checks or capacity checks). The joiner's own first event is encoded on
    /// every join, so this is on the join path. The JSON object is `RoomJSON`, as in `writeRoomJSON`.
    public static func roomEvent(_ counts: RoomCounts, format: EventFormat, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        switch format {
        case .legacy:
            let online = DecimalDigits(counts.online)
            let length = legacyPrefix.utf8CodeUnitCount + online.count + eventEnd.utf8CodeUnitCount + 1
            var buffer = allocator.buffer(capacity: length)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { raw in
                var out = RawWriter(raw.baseAddress!)
                out.write(legacyPrefix)
                out.write(online)
                out.write(UInt8(ascii: "}"))
                out.write(eventEnd)
                return out.written(since: raw.baseAddress!)
            }
            return buffer
        case .room:
            let version = DecimalDigits(counts.version)
            let json = RoomJSON(counts, includePeak: false)
            let length = idPrefix.utf8CodeUnitCount + version.count + dataPrefix.utf8CodeUnitCount + json.count + eventEnd.utf8CodeUnitCount
            var buffer = allocator.buffer(capacity: length)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { raw in
                var out = RawWriter(raw.baseAddress!)
                out.write(idPrefix)
                out.write(version)
                out.write(dataPrefix)
                json.write(room: counts.room, to: &out)
                out.write(eventEnd)
                return out.written(since: raw.baseAddress!)
            }
            return buffer
        }
    }

    // The constant pieces of an event.
    static let idPrefix: StaticString = "id: "
    static let dataPrefix: StaticString = "\ndata: "
    static let legacyPrefix: StaticString = "data: {\"onlineUsers\":"
    static let eventEnd: StaticString = "\n\n"

    /// The JSON object of a room, as used in events and `/api/rooms/{room}`.
    public static func writeRoomJSON(_ counts: RoomCounts, into buffer: inout ByteBuffer, includePeak: Bool = false) {
        let json = RoomJSON(counts, includePeak: includePeak)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: json.count) { raw in
            var out = RawWriter(raw.baseAddress!)
            json.write(room: counts.room, to: &out)
            return out.written(since: raw.baseAddress!)
        }
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

/// An integer to be written in decimal, with its length known before writing (so that a whole event
/// can be sized first and written in one pass).
struct DecimalDigits {
    let magnitude: UInt64
    let negative: Bool
    /// Number of bytes, sign included.
    let count: Int

    @inline(__always)
    init<T: BinaryInteger>(_ value: T) {
        magnitude = UInt64(truncatingIfNeeded: value.magnitude)
        negative = value < 0
        // Digits: compare against powers of ten (multiplications by 10, no division).
        var digits = 1
        var power: UInt64 = 10
        while digits < 20, magnitude >= power {
            digits += 1
            power &*= 10
        }
        count = digits + (negative ? 1 : 0)
    }

    /// "00" "01" … "99": two digits per division.
    private static let pairs: StaticString = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

    /// Writes the `count` bytes at `destination`, last digit first.
    @inline(__always)
    func write(to destination: UnsafeMutableRawPointer) {
        let table = UnsafeRawPointer(Self.pairs.utf8Start)
        var end = destination + count
        var v = magnitude
        while v >= 100 {
            let (q, r) = v.quotientAndRemainder(dividingBy: 100)
            end -= 2
            end.copyMemory(from: table + Int(r) * 2, byteCount: 2)
            v = q
        }
        if v >= 10 {
            end -= 2
            end.copyMemory(from: table + Int(v) * 2, byteCount: 2)
        } else {
            end -= 1
            end.storeBytes(of: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v), as: UInt8.self)
        }
        if negative { destination.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self) }
    }
}

/// A room's JSON object, `{"room":..,"online":..,"connections":..}` (plus `"peak"` when asked, and
/// `"partial":true` when the figures miss part of the cluster), sized before it is written in one pass.
/// The one place that knows the object's fields and their order: events and `/api/rooms` both use it.
struct RoomJSON {
    let online: DecimalDigits
    let connections: DecimalDigits
    /// Written only when `includePeak`.
    let peak: DecimalDigits
    let includePeak: Bool
    let partial: Bool
    /// Number of bytes.
    let count: Int

    static let roomPrefix: StaticString = "{\"room\":\""
    static let onlinePrefix: StaticString = "\",\"online\":"
    static let connectionsPrefix: StaticString = ",\"connections\":"
    static let peakPrefix: StaticString = ",\"peak\":"
    static let partialField: StaticString = ",\"partial\":true"

    @inline(__always)
    init(_ counts: RoomCounts, includePeak: Bool) {
        online = DecimalDigits(counts.online)
        connections = DecimalDigits(counts.connections)
        peak = DecimalDigits(includePeak ? counts.peak : 0)
        self.includePeak = includePeak
        partial = counts.partial
        count = Self.roomPrefix.utf8CodeUnitCount + counts.room.utf8.count + Self.onlinePrefix.utf8CodeUnitCount + online.count
            + Self.connectionsPrefix.utf8CodeUnitCount + connections.count
            + (includePeak ? Self.peakPrefix.utf8CodeUnitCount + peak.count : 0)
            + (partial ? Self.partialField.utf8CodeUnitCount : 0) + 1
    }

    /// Writes the object for `room`, the name these figures were sized with.
    @inline(__always)
    func write(room: String, to out: inout RawWriter) {
        out.write(Self.roomPrefix)
        out.write(room)
        out.write(Self.onlinePrefix)
        out.write(online)
        out.write(Self.connectionsPrefix)
        out.write(connections)
        if includePeak {
            out.write(Self.peakPrefix)
            out.write(peak)
        }
        if partial { out.write(Self.partialField) }
        out.write(UInt8(ascii: "}"))
    }
}

/// Stores bytes through a raw pointer into memory already sized for them.
struct RawWriter {
    private var cursor: UnsafeMutableRawPointer

    init(_ start: UnsafeMutableRawPointer) { cursor = start }

    mutating func write(_ s: StaticString) {
        cursor.copyMemory(from: s.utf8Start, byteCount: s.utf8CodeUnitCount)
        cursor += s.utf8CodeUnitCount
    }

    mutating func write(_ byte: UInt8) {
        cursor.storeBytes(of: byte, as: UInt8.self)
        cursor += 1
    }

    mutating func write(_ digits: DecimalDigits) {
        digits.write(to: cursor)
        cursor += digits.count
    }

    /// A room name: validated ASCII, so its UTF-8 bytes are written as they are.
    mutating func write(_ string: String) {
        var string = string
        let n = string.withUTF8 { utf8 in
            if let base = utf8.baseAddress { cursor.copyMemory(from: base, byteCount: utf8.count) }
            return utf8.count
        }
        cursor += n
    }

    func written(since start: UnsafeMutableRawPointer) -> Int { cursor - start }
}
