/// Turns visitor ids into 64-bit keyed hashes before they leave the node.
///
/// SipHash-2-4 with a 128-bit key that every node of a cluster shares (created once, at random, in the
/// database). The same id hashes to the same value on every node, so two tabs of one visitor on two nodes
/// count once; the raw id never leaves the node, and without the key a hash cannot be matched to a guessed id.
/// The hashes feed both the exact visitor sets and the HyperLogLog sketches.
public struct VisitorHasher: Sendable, Hashable {
    public let k0: UInt64
    public let k1: UInt64

    public init(k0: UInt64, k1: UInt64) {
        self.k0 = k0
        self.k1 = k1
    }

    /// A hasher keyed by 16 bytes (little-endian halves, as in the SipHash reference).
    public init?(key: [UInt8]) {
        guard key.count == 16 else { return nil }
        var a: UInt64 = 0
        var b: UInt64 = 0
        for i in 0..<8 {
            a |= UInt64(key[i]) << (8 * UInt64(i))
            b |= UInt64(key[8 + i]) << (8 * UInt64(i))
        }
        self.init(k0: a, k1: b)
    }

    /// The keyed hash of a visitor id.
    public func hash(_ id: String) -> UInt64 {
        var id = id
        return id.withUTF8 { SipHash24.hash(UnsafeRawBufferPointer($0), k0: k0, k1: k1) }
    }

    /// The keyed hashes of many visitor ids.
    public func hashes(_ ids: [String]) -> Set<UInt64> {
        var set = Set<UInt64>(minimumCapacity: ids.count)
        for id in ids { set.insert(hash(id)) }
        return set
    }
}

/// SipHash-2-4 (Aumasson and Bernstein), 64-bit output.
enum SipHash24 {
    static func hash(_ bytes: UnsafeRawBufferPointer, k0: UInt64, k1: UInt64) -> UInt64 {
        var v0: UInt64 = 0x736f_6d65_7073_6575 ^ k0
        var v1: UInt64 = 0x646f_7261_6e64_6f6d ^ k1
        var v2: UInt64 = 0x6c79_6765_6e65_7261 ^ k0
        var v3: UInt64 = 0x7465_6462_7974_6573 ^ k1

        @inline(__always) func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 { (x << b) | (x >> (64 - b)) }
        @inline(__always) func round() {
            v0 &+= v1
            v1 = rotl(v1, 13)
            v1 ^= v0
            v0 = rotl(v0, 32)
            v2 &+= v3
            v3 = rotl(v3, 16)
            v3 ^= v2
            v0 &+= v3
            v3 = rotl(v3, 21)
            v3 ^= v0
            v2 &+= v1
            v1 = rotl(v1, 17)
            v1 ^= v2
            v2 = rotl(v2, 32)
        }

        let count = bytes.count
        let whole = count & ~7
        var offset = 0
        while offset < whole {
            let m = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            v3 ^= m
            round()
            round()
            v0 ^= m
            offset += 8
        }
        var last = UInt64(truncatingIfNeeded: count) << 56
        var shift: UInt64 = 0
        while offset < count {
            last |= UInt64(bytes[offset]) << shift
            shift += 8
            offset += 1
        }
        v3 ^= last
        round()
        round()
        v0 ^= last
        v2 ^= 0xff
        round()
        round()
        round()
        round()
        return v0 ^ v1 ^ v2 ^ v3
    }
}
