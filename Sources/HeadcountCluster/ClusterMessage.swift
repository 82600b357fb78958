import Foundation

/// One change announced on the `headcount` notification channel.
///
/// A notification carries one or more messages, one a line, after a `hc1` header line. PostgreSQL caps a
/// payload at 8,000 bytes, so only small exact contributions travel inline; a larger one is announced as
/// `changed` and the listeners read the row. Room names and node ids contain no spaces or newlines.
public enum ClusterMessage: Sendable, Hashable {
    /// A node's whole contribution to a room, inline (exact payloads only).
    case contribution(node: String, room: String, Contribution)
    /// A node's contribution to a room changed: read it from `headcount_rooms`.
    case changed(node: String, room: String, version: UInt64)
    /// A node has nobody left in a room.
    case removed(node: String, room: String, version: UInt64)
    /// A node (re)registered and rewrote all of its rows: read them all.
    case hello(node: String)
    /// A node withdrew (clean shutdown): forget it.
    case bye(node: String)

    public static let header = "hc1"
    /// Largest payload this code sends (PostgreSQL's limit is 8,000 bytes).
    public static let payloadLimit = 7_900
    /// Largest inline contribution line; larger ones are announced as `changed`.
    public static let inlineLimit = 6_000

    public var node: String {
        switch self {
        case .contribution(let node, _, _), .changed(let node, _, _), .removed(let node, _, _), .hello(let node), .bye(let node): node
        }
    }

    /// The message announcing `contribution`: inline when it is exact and small enough.
    public static func announcing(node: String, room: String, _ contribution: Contribution) -> ClusterMessage {
        if case .exact(let hashes) = contribution.payload, 120 + hashes.count * 11 < inlineLimit {
            return .contribution(node: node, room: room, contribution)
        }
        return .changed(node: node, room: room, version: contribution.version)
    }

    /// The message as one line.
    public var line: String {
        switch self {
        case .contribution(let node, let room, let c):
            guard case .exact(let hashes) = c.payload else {
                return "f \(node) \(room) \(c.version)"
            }
            let data = Data(Contribution.encode(hashes)).base64EncodedString()
            return "c \(node) \(room) \(c.version) \(c.connections) \(c.visitors) \(data)"
        case .changed(let node, let room, let version): return "f \(node) \(room) \(version)"
        case .removed(let node, let room, let version): return "d \(node) \(room) \(version)"
        case .hello(let node): return "h \(node)"
        case .bye(let node): return "b \(node)"
        }
    }

    /// Parses one line; nil for anything malformed or unknown (newer nodes may add kinds).
    public init?(line: Substring) {
        let f = line.split(separator: " ", omittingEmptySubsequences: false)
        guard let kind = f.first, f.count >= 2, !f[1].isEmpty else { return nil }
        let node = String(f[1])
        switch kind {
        case "c":
            guard f.count == 7, !f[2].isEmpty, let version = UInt64(f[3]), let connections = Int(f[4]), let visitors = Int(f[5]),
                connections >= 0, visitors >= 0
            else { return nil }
            let hashes: [UInt64]
            if f[6].isEmpty {
                hashes = []
            } else {
                guard let data = Data(base64Encoded: String(f[6])), let decoded = Contribution.decode(Array(data)) else { return nil }
                hashes = decoded
            }
            self = .contribution(
                node: node,
                room: String(f[2]),
                Contribution(version: version, connections: connections, visitors: visitors, payload: .exact(hashes))
            )
        case "f", "d":
            guard f.count == 4, !f[2].isEmpty, let version = UInt64(f[3]) else { return nil }
            self =
                kind == "f" ? .changed(node: node, room: String(f[2]), version: version) : .removed(node: node, room: String(f[2]), version: version)
        case "h":
            guard f.count == 2 else { return nil }
            self = .hello(node: node)
        case "b":
            guard f.count == 2 else { return nil }
            self = .bye(node: node)
        default:
            return nil
        }
    }

    /// Packs messages into as few payloads as fit under `payloadLimit`.
    public static func pack(_ messages: [ClusterMessage], limit: Int = payloadLimit) -> [String] {
        var payloads: [String] = []
        var current = header
        for message in messages {
            let line = message.line
            if current.utf8.count + 1 + line.utf8.count > limit, current != header {
                payloads.append(current)
                current = header
            }
            current += "\n" + line
        }
        if current != header { payloads.append(current) }
        return payloads
    }

    /// Reads a payload; lines that do not parse are skipped, a payload without the header yields nothing.
    public static func unpack(_ payload: String) -> [ClusterMessage] {
        let lines = payload.split(separator: "\n")
        guard lines.first == Substring(header) else { return [] }
        return lines.dropFirst().compactMap { ClusterMessage(line: $0) }
    }
}
