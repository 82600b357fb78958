import HeadcountCore
import NIOCore
import Synchronization

/// An in-memory `EventSink` that behaves like the server's stream sink (latest wins, events whose
/// version is not above the last accepted one are dropped) and records everything for assertions.
final class TestSink: EventSink {
    struct Event: Sendable, Equatable, CustomStringConvertible {
        var text: String
        var version: UInt64
        var description: String { "v\(version) \(text.debugDescription)" }
    }

    private struct State {
        /// Every call to `deliver`, in call order, before any filtering.
        var raw: [Event] = []
        /// Events a real sink would write: version strictly above the last accepted one.
        var accepted: [Event] = []
        /// One-slot mailbox, as in a real sink: a newer event replaces an unread one.
        var pending: Event?
        var lastVersion: UInt64?
        var heartbeats = 0
        var heartbeatsWhilePending = 0
        var closeCalls = 0
        var closed = false
    }

    private let state = Mutex(State())

    init() {}

    func deliver(_ buffer: ByteBuffer, version: UInt64) {
        let event = Event(text: String(buffer: buffer), version: version)
        state.withLock { s in
            s.raw.append(event)
            if s.closed { return }
            if let last = s.lastVersion, version <= last { return }
            s.lastVersion = version
            s.accepted.append(event)
            s.pending = event
        }
    }

    func heartbeat(_ buffer: ByteBuffer) {
        let text = String(buffer: buffer)
        state.withLock { s in
            precondition(text == ": heartbeat\n\n", "unexpected heartbeat bytes \(text.debugDescription)")
            s.heartbeats += 1
            if s.pending != nil { s.heartbeatsWhilePending += 1 }
        }
    }

    func close() {
        state.withLock { s in
            s.closeCalls += 1
            s.closed = true
            s.pending = nil
        }
    }

    // MARK: Inspection

    /// Every delivery, including ones a real sink drops.
    var rawEvents: [Event] { state.withLock { $0.raw } }
    /// Deliveries a real sink would write, in order.
    var events: [Event] { state.withLock { $0.accepted } }
    var texts: [String] { events.map(\.text) }
    var last: Event? { state.withLock { $0.accepted.last } }
    var lastText: String? { last?.text }
    var lastVersion: UInt64? { state.withLock { $0.lastVersion } }
    var eventCount: Int { state.withLock { $0.accepted.count } }
    var rawCount: Int { state.withLock { $0.raw.count } }
    var heartbeats: Int { state.withLock { $0.heartbeats } }
    var closeCalls: Int { state.withLock { $0.closeCalls } }
    var isClosed: Bool { state.withLock { $0.closed } }

    /// Takes the unread event out of the mailbox, as a stream writer would.
    func takePending() -> Event? { state.withLock { s in defer { s.pending = nil }; return s.pending } }

    /// Forgets recorded events (keeps the version floor).
    func reset() {
        state.withLock { s in
            s.raw.removeAll()
            s.accepted.removeAll()
            s.pending = nil
        }
    }
}

// MARK: Event parsing helpers

/// The figures carried by a room, legacy or site event.
struct ParsedEvent: Equatable, CustomStringConvertible {
    var id: UInt64?
    var room: String?
    var online: Int?
    var connections: Int?
    var rooms: Int?
    var onlineUsers: Int?
    var description: String {
        "id=\(id.map(String.init) ?? "-") room=\(room ?? "-") online=\(online.map(String.init) ?? "-") connections=\(connections.map(String.init) ?? "-") rooms=\(rooms.map(String.init) ?? "-") onlineUsers=\(onlineUsers.map(String.init) ?? "-")"
    }

    init(_ text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("id: ") {
                id = UInt64(line.dropFirst(4))
            } else if line.hasPrefix("data: ") {
                let json = line.dropFirst(6)
                room = Self.stringField("room", in: json)
                online = Self.intField("online", in: json)
                connections = Self.intField("connections", in: json)
                rooms = Self.intField("rooms", in: json)
                onlineUsers = Self.intField("onlineUsers", in: json)
            }
        }
    }

    /// Fields of a flat JSON object whose values are integers, booleans or unescaped strings.
    private static func fields(_ json: Substring) -> [String: String] {
        var body = json
        if body.first == "{" { body = body.dropFirst() }
        if body.last == "}" { body = body.dropLast() }
        var result: [String: String] = [:]
        for pair in body.split(separator: ",") {
            guard let colon = pair.firstIndex(of: ":") else { continue }
            let key = pair[..<colon].filter { $0 != "\"" }
            let value = pair[pair.index(after: colon)...].filter { $0 != "\"" }
            result[String(key)] = String(value)
        }
        return result
    }

    private static func intField(_ name: String, in json: Substring) -> Int? {
        fields(json)[name].flatMap { Int($0) }
    }

    private static func stringField(_ name: String, in json: Substring) -> String? {
        fields(json)[name]
    }
}

extension TestSink.Event {
    var parsed: ParsedEvent { ParsedEvent(text) }
}

/// Exact wire text of a room-format event.
func roomEventText(id: UInt64, room: String, online: Int, connections: Int) -> String {
    "id: \(id)\ndata: {\"room\":\"\(room)\",\"online\":\(online),\"connections\":\(connections)}\n\n"
}

/// Exact wire text of a legacy event.
func legacyEventText(online: Int) -> String {
    "data: {\"onlineUsers\":\(online)}\n\n"
}

/// Exact wire text of a site event.
func siteEventText(id: UInt64, online: Int, connections: Int, rooms: Int) -> String {
    "id: \(id)\ndata: {\"online\":\(online),\"connections\":\(connections),\"rooms\":\(rooms)}\n\n"
}
