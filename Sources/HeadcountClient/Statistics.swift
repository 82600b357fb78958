/// Order statistics used by the reports.
public enum Statistics {
    /// Nearest-rank percentile (`p` in 0...100) of already sorted values; nil when empty.
    public static func percentile<T: BinaryFloatingPoint>(sorted: [T], _ p: Double) -> T? {
        guard !sorted.isEmpty else { return nil }
        if p <= 0 { return sorted[0] }
        if p >= 100 { return sorted[sorted.count - 1] }
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    /// Median (mean of the two middle values for an even count); nil when empty.
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        let mid = s.count / 2
        return s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
    }

    /// Median of the non-nil values.
    public static func median(_ values: [Double?]) -> Double? {
        median(values.compactMap { $0 })
    }
}

/// Distribution summary of latencies in milliseconds.
public struct LatencySummary: Codable, Sendable, Hashable {
    public var count: Int
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var maxMs: Double
    public var minMs: Double

    public init?(milliseconds values: [Double]) {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        count = s.count
        p50Ms = Statistics.percentile(sorted: s, 50)!
        p90Ms = Statistics.percentile(sorted: s, 90)!
        p99Ms = Statistics.percentile(sorted: s, 99)!
        maxMs = s[s.count - 1]
        minMs = s[0]
    }

    public init(count: Int, p50Ms: Double, p90Ms: Double, p99Ms: Double, maxMs: Double, minMs: Double) {
        self.count = count
        self.p50Ms = p50Ms
        self.p90Ms = p90Ms
        self.p99Ms = p99Ms
        self.maxMs = maxMs
        self.minMs = minMs
    }

    /// Field-wise medians of several summaries.
    public static func medians(_ summaries: [LatencySummary]) -> LatencySummary? {
        guard !summaries.isEmpty else { return nil }
        return LatencySummary(
            count: Int(Statistics.median(summaries.map { Double($0.count) })!),
            p50Ms: Statistics.median(summaries.map(\.p50Ms))!,
            p90Ms: Statistics.median(summaries.map(\.p90Ms))!,
            p99Ms: Statistics.median(summaries.map(\.p99Ms))!,
            maxMs: Statistics.median(summaries.map(\.maxMs))!,
            minMs: Statistics.median(summaries.map(\.minMs))!
        )
    }
}
