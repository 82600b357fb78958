/// What one node contributes to one room: its open streams and its distinct visitors, either as the exact
/// set of hashed visitor ids (rooms up to `--exact-visitors` visitors on that node) or as a HyperLogLog
/// sketch (larger rooms).
public struct Contribution: Sendable, Hashable {
    /// The node's sequence number of this change; a newer version replaces an older one.
    public var version: UInt64
    /// Open counted streams of the room on the node.
    public var connections: Int
    /// Distinct visitors of the room on the node (exact, whatever the payload).
    public var visitors: Int
    public var payload: Payload

    public enum Payload: Sendable, Hashable {
        /// Hashed visitor ids, sorted.
        case exact([UInt64])
        /// A sketch of the hashed visitor ids.
        case sketch(HyperLogLog)
    }

    public init(version: UInt64, connections: Int, visitors: Int, payload: Payload) {
        self.version = version
        self.connections = connections
        self.visitors = visitors
        self.payload = payload
    }

    /// The contribution of a room whose hashed visitors are `hashes`: exact up to `exactLimit` visitors.
    public init(version: UInt64, connections: Int, hashes: Set<UInt64>, exactLimit: Int, precision: Int = HyperLogLog.defaultPrecision) {
        let payload: Payload = hashes.count <= exactLimit ? .exact(hashes.sorted()) : .sketch(HyperLogLog(hashes: hashes, precision: precision))
        self.init(version: version, connections: connections, visitors: hashes.count, payload: payload)
    }

    /// Column `kind` of `headcount_rooms`: 0 exact, 1 sketch.
    public var kind: Int16 {
        switch payload {
        case .exact: 0
        case .sketch: 1
        }
    }

    /// Column `data` of `headcount_rooms`: 8 little-endian bytes per hash, or the serialized sketch.
    public var data: [UInt8] {
        switch payload {
        case .exact(let hashes): Self.encode(hashes)
        case .sketch(let sketch): sketch.serialized()
        }
    }

    /// Reads a row of `headcount_rooms`; nil when the columns do not make sense.
    public init?(version: Int64, connections: Int32, visitors: Int32, kind: Int16, data: [UInt8]) {
        guard version >= 0, connections >= 0, visitors >= 0 else { return nil }
        let payload: Payload
        switch kind {
        case 0:
            guard let hashes = Self.decode(data) else { return nil }
            payload = .exact(hashes)
        case 1:
            guard let sketch = HyperLogLog(serialized: data) else { return nil }
            payload = .sketch(sketch)
        default:
            return nil
        }
        self.init(version: UInt64(version), connections: Int(connections), visitors: Int(visitors), payload: payload)
    }

    static func encode(_ hashes: [UInt64]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(hashes.count * 8)
        for h in hashes {
            var v = h
            for _ in 0..<8 {
                out.append(UInt8(truncatingIfNeeded: v))
                v >>= 8
            }
        }
        return out
    }

    static func decode<C: Collection>(_ bytes: C) -> [UInt64]? where C.Element == UInt8, C.Index == Int {
        guard bytes.count % 8 == 0 else { return nil }
        var hashes = [UInt64]()
        hashes.reserveCapacity(bytes.count / 8)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            var v: UInt64 = 0
            for j in 0..<8 { v |= UInt64(bytes[i + j]) << (8 * UInt64(j)) }
            hashes.append(v)
            i += 8
        }
        return hashes
    }
}
