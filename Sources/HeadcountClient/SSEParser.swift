public import NIOCore

/// One dispatched Server-Sent Event.
public struct SSEEvent: Sendable, Hashable {
    /// The `event:` field, or `"message"` when the event had none.
    public var type: String
    /// The `data:` lines joined with `\n` (no trailing newline).
    public var data: String
    /// The last event ID at dispatch time (`id:` of this event or of an earlier one), empty if none.
    public var lastEventID: String

    public init(type: String = "message", data: String, lastEventID: String = "") {
        self.type = type
        self.data = data
        self.lastEventID = lastEventID
    }
}

/// What the parser reports, in stream order.
public enum SSEOutput: Sendable, Hashable {
    /// A complete event (a blank line ended a block with at least one `data:` field).
    case event(SSEEvent)
    /// A comment line (`: heartbeat`), without the leading colon and one optional space.
    case comment(String)
    /// A valid `retry:` field, in milliseconds. It takes effect at once (not at dispatch).
    case retry(Int)
}

/// An incremental parser of the `text/event-stream` format (WHATWG HTML, "Server-sent events").
///
/// Feed it the body bytes as they arrive, in pieces of any size; it reports events, comments and
/// `retry:` values as soon as they are complete. Lines may end in CRLF, LF or CR (a CRLF split across
/// two reads counts once). A leading UTF-8 byte order mark is skipped. An event is dispatched only
/// when a blank line ends it: a block still open when the stream ends is discarded (`finish()`).
/// Blocks without `data:` (a lone `retry:` or `id:`) dispatch nothing but still update
/// `lastEventID` / `retry`. Invalid UTF-8 is replaced with U+FFFD.
public struct SSEParser: Sendable {
    /// The last event ID buffer (updated by `id:` fields that contain no NUL).
    public private(set) var lastEventID: String = ""
    /// The last valid `retry:` value in milliseconds, if any.
    public private(set) var retry: Int?
    /// Longest line kept; longer lines are truncated to this many bytes (a guard against a server that
    /// never sends a newline). Default 1 MiB.
    public var maxLineLength: Int

    private var line: [UInt8] = []
    private var lineTruncated = false
    private var data: [UInt8] = []
    private var hasData = false
    private var eventType: [UInt8] = []
    /// The previous byte was CR: a following LF belongs to the same line ending.
    private var afterCR = false
    /// Bytes of a possible leading BOM seen so far (0...3), or -1 once past the start of the stream.
    private var bomState = 0

    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    public init(maxLineLength: Int = 1 << 20) {
        self.maxLineLength = max(16, maxLineLength)
    }

    /// Feeds bytes and calls `body` for each complete item, in order.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes, _ body: (SSEOutput) throws -> Void) rethrows where Bytes.Element == UInt8 {
        let done: Void? = try bytes.withContiguousStorageIfAvailable { buffer in
            try feed(UnsafeRawBufferPointer(buffer), body)
        }
        if done == nil {
            let array = Array(bytes)
            try array.withUnsafeBytes { try feed($0, body) }
        }
    }

    /// Feeds the readable bytes of a buffer (without moving its reader index).
    public mutating func feed(_ buffer: ByteBuffer, _ body: (SSEOutput) throws -> Void) rethrows {
        try buffer.withUnsafeReadableBytes { try feed($0, body) }
    }

    /// Feeds bytes and returns the events they completed (comments and `retry:` are recorded in
    /// `retry` but not returned).
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [SSEEvent] where Bytes.Element == UInt8 {
        var events: [SSEEvent] = []
        feed(bytes) { output in
            if case .event(let event) = output { events.append(event) }
        }
        return events
    }

    /// The stream ended: an unterminated last line and an undispatched event are dropped (a stream
    /// that ends inside an event does not dispatch it). The parser is then ready for a new stream;
    /// `lastEventID` and `retry` are kept, as a reconnecting client keeps them.
    public mutating func finish() {
        line.removeAll(keepingCapacity: true)
        lineTruncated = false
        data.removeAll(keepingCapacity: true)
        hasData = false
        eventType.removeAll(keepingCapacity: true)
        afterCR = false
        bomState = 0
    }

    /// The core: scans for line ends and handles whole lines straight from the input when it can.
    private mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (SSEOutput) throws -> Void) rethrows {
        let n = bytes.count
        var i = 0
        while bomState >= 0 && i < n {
            if bytes[i] == Self.bom[bomState] {
                bomState += 1
                i += 1
                if bomState == 3 { bomState = -1 }
                continue
            }
            // Not a BOM after all: the bytes that looked like one belong to the first line.
            line.append(contentsOf: Self.bom.prefix(bomState))
            bomState = -1
        }
        while i < n {
            if afterCR {
                afterCR = false
                if bytes[i] == Self.lf {
                    i += 1
                    continue
                }
            }
            var j = i
            while j < n {
                let b = bytes[j]
                if b == Self.lf || b == Self.cr { break }
                j += 1
            }
            if j == n {
                appendToLine(UnsafeRawBufferPointer(rebasing: bytes[i..<n]))
                return
            }
            afterCR = bytes[j] == Self.cr
            if line.isEmpty && !lineTruncated {
                // The whole line is in this input: no copy.
                let whole = UnsafeRawBufferPointer(rebasing: bytes[i..<j])
                if whole.isEmpty {
                    try dispatch(body)
                } else {
                    try processLine(whole.count > maxLineLength ? UnsafeRawBufferPointer(rebasing: whole[0..<maxLineLength]) : whole, body)
                }
            } else {
                appendToLine(UnsafeRawBufferPointer(rebasing: bytes[i..<j]))
                try line.withUnsafeBytes { try processLine($0, body) }
                line.removeAll(keepingCapacity: true)
                lineTruncated = false
            }
            i = j + 1
        }
    }

    private static let lf = UInt8(ascii: "\n")
    private static let cr = UInt8(ascii: "\r")

    private mutating func appendToLine(_ bytes: UnsafeRawBufferPointer) {
        let room = maxLineLength - line.count
        if bytes.count <= room {
            line.append(contentsOf: bytes)
        } else {
            if room > 0 { line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<room])) }
            lineTruncated = true
        }
    }

    private mutating func processLine(_ line: UnsafeRawBufferPointer, _ body: (SSEOutput) throws -> Void) rethrows {
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        if colon == 0 {
            var start = 1
            if line.count > 1 && line[1] == UInt8(ascii: " ") { start = 2 }
            try body(.comment(String(decoding: UnsafeRawBufferPointer(rebasing: line[start...]), as: UTF8.self)))
            return
        }
        let nameEnd = colon ?? line.count
        var valueStart = colon.map { $0 + 1 } ?? line.count
        if valueStart < line.count && line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let name = UnsafeRawBufferPointer(rebasing: line[0..<nameEnd])
        let value = UnsafeRawBufferPointer(rebasing: line[valueStart...])
        if name.elementsEqual("data".utf8) {
            if hasData { data.append(Self.lf) }
            data.append(contentsOf: value)
            hasData = true
        } else if name.elementsEqual("event".utf8) {
            eventType.removeAll(keepingCapacity: true)
            eventType.append(contentsOf: value)
        } else if name.elementsEqual("id".utf8) {
            if !value.contains(0) {
                lastEventID = String(decoding: value, as: UTF8.self)
            }
        } else if name.elementsEqual("retry".utf8) {
            if let ms = Self.parseDigits(value) {
                retry = ms
                try body(.retry(ms))
            }
        }
        // Any other field name is ignored.
    }

    private mutating func dispatch(_ body: (SSEOutput) throws -> Void) rethrows {
        defer {
            data.removeAll(keepingCapacity: true)
            hasData = false
            eventType.removeAll(keepingCapacity: true)
        }
        guard hasData else { return }
        let type = eventType.isEmpty ? "message" : String(decoding: eventType, as: UTF8.self)
        try body(.event(SSEEvent(type: type, data: String(decoding: data, as: UTF8.self), lastEventID: lastEventID)))
    }

    /// A `retry:` value: ASCII digits only (at least one), clamped to Int.max.
    static func parseDigits(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var n = 0
        for b in bytes {
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(b - UInt8(ascii: "0")))
            n = (o1 || o2) ? Int.max : s
        }
        return n
    }
}
