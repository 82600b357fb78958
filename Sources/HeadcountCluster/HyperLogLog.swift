import Foundation

/// A HyperLogLog sketch over 64-bit hashes, with Ertl's improved estimator (no bias tables, accurate from
/// zero to billions).
///
/// Nodes share sketches of rooms too large to share exact visitor sets; the union of several nodes'
/// visitors is the register-wise maximum of their sketches, so a visitor seen on two nodes counts once.
/// With the default precision (2^15 registers, 32 KiB) the standard error is 1.04 / √32768 ≈ 0.57 %;
/// the measured error is in docs/CLUSTER.md and checked by the tests.
public struct HyperLogLog: Sendable, Hashable {
    /// Default precision: 2^15 registers.
    public static let defaultPrecision = 15

    /// Number of index bits (4...16).
    public let precision: Int
    /// One register per bucket: the longest run of leading zeros seen, plus one (0: nothing seen).
    public private(set) var registers: [UInt8]

    public init(precision: Int = HyperLogLog.defaultPrecision) {
        precondition((4...16).contains(precision), "HyperLogLog precision must be 4...16")
        self.precision = precision
        self.registers = [UInt8](repeating: 0, count: 1 << precision)
    }

    /// A sketch of a set of hashes.
    public init<S: Sequence>(hashes: S, precision: Int = HyperLogLog.defaultPrecision) where S.Element == UInt64 {
        self.init(precision: precision)
        for h in hashes { insert(h) }
    }

    var bucketCount: Int { registers.count }

    /// Adds one hashed element.
    public mutating func insert(_ hash: UInt64) {
        let p = UInt64(precision)
        let index = Int(truncatingIfNeeded: hash >> (64 - p))
        // The remaining 64 - p bits, with a sentinel so that the run of zeros stops at 64 - p.
        let rest = (hash << p) | (1 << (p - 1))
        let rank = UInt8(truncatingIfNeeded: rest.leadingZeroBitCount + 1)
        registers.withUnsafeMutableBufferPointer { r in
            if rank > r[index] { r[index] = rank }
        }
    }

    /// Adds every element of `other` (register-wise maximum). Both must have the same precision.
    public mutating func formUnion(_ other: HyperLogLog) {
        precondition(other.precision == precision, "HyperLogLog precisions differ")
        registers.withUnsafeMutableBufferPointer { a in
            other.registers.withUnsafeBufferPointer { b in
                for i in 0..<a.count where b[i] > a[i] { a[i] = b[i] }
            }
        }
    }

    /// Whether nothing was ever inserted.
    public var isEmpty: Bool { registers.allSatisfy { $0 == 0 } }

    /// The estimated number of distinct elements.
    ///
    /// Ertl, "New cardinality estimation algorithms for HyperLogLog sketches" (2017), algorithm 6: the
    /// improved raw estimator, built from the histogram of register values.
    public func estimate() -> Double {
        let q = 64 - precision
        var histogram = [Int](repeating: 0, count: q + 2)
        registers.withUnsafeBufferPointer { r in
            histogram.withUnsafeMutableBufferPointer { h in
                for value in r { h[Int(value)] += 1 }
            }
        }
        let m = Double(bucketCount)
        if histogram[0] == bucketCount { return 0 }
        var z = m * Self.tau(1 - Double(histogram[q + 1]) / m)
        for k in stride(from: q, through: 1, by: -1) {
            z = 0.5 * (z + Double(histogram[k]))
        }
        z += m * Self.sigma(Double(histogram[0]) / m)
        let alphaInfinity = 1 / (2 * log(2.0))
        return alphaInfinity * m * m / z
    }

    /// The estimate rounded to a count.
    public var count: Int { Int(estimate().rounded()) }

    static func sigma(_ x: Double) -> Double {
        if x == 1 { return .infinity }
        var x = x
        var y = 1.0
        var z = x
        while true {
            x *= x
            let previous = z
            z += x * y
            y += y
            if z == previous { return z }
        }
    }

    static func tau(_ x: Double) -> Double {
        if x == 0 || x == 1 { return 0 }
        var x = x
        var y = 1.0
        var z = 1 - x
        while true {
            x = x.squareRoot()
            let previous = z
            y *= 0.5
            z -= (1 - x) * (1 - x) * y
            if z == previous { return z / 3 }
        }
    }

    // MARK: Wire form

    /// Bytes for the database: `[1, p, registers…]` (dense) or `[2, p, n (4 bytes), (index u16, value u8) × n]`
    /// (sparse), whichever is shorter.
    public func serialized() -> [UInt8] {
        let nonZero = registers.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }
        if 6 + 3 * nonZero < 2 + registers.count {
            var out: [UInt8] = [2, UInt8(precision)]
            out.reserveCapacity(6 + 3 * nonZero)
            let n = UInt32(nonZero)
            out += [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
            for (i, v) in registers.enumerated() where v != 0 {
                out += [UInt8(i >> 8), UInt8(i & 0xff), v]
            }
            return out
        }
        return [1, UInt8(precision)] + registers
    }

    /// Reads `serialized()` bytes; nil if they are malformed.
    public init?<C: Collection>(serialized bytes: C) where C.Element == UInt8 {
        let b = Array(bytes)
        guard b.count >= 2 else { return nil }
        let p = Int(b[1])
        guard (4...16).contains(p) else { return nil }
        let m = 1 << p
        let maxRank = UInt8(64 - p + 1)
        switch b[0] {
        case 1:
            guard b.count == 2 + m else { return nil }
            guard b[2...].allSatisfy({ $0 <= maxRank }) else { return nil }
            self.precision = p
            self.registers = Array(b[2...])
        case 2:
            guard b.count >= 6 else { return nil }
            let n = Int(b[2]) << 24 | Int(b[3]) << 16 | Int(b[4]) << 8 | Int(b[5])
            guard b.count == 6 + 3 * n else { return nil }
            var registers = [UInt8](repeating: 0, count: m)
            var i = 6
            for _ in 0..<n {
                let index = Int(b[i]) << 8 | Int(b[i + 1])
                let value = b[i + 2]
                guard index < m, value <= maxRank else { return nil }
                registers[index] = value
                i += 3
            }
            self.precision = p
            self.registers = registers
        default:
            return nil
        }
    }
}
