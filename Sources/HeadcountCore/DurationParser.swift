/// Parses durations written as plain seconds (`3`, `0.1`) or with a unit (`100ms`, `1.5s`, `2m`, `1h`).
public enum DurationParser {
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { return nil }
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        var number = Substring(trimmed)
        var scale = 1.0
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            let candidate = trimmed.dropLast(suffix.count)
            if let last = candidate.last, last.isNumber || last == "." {
                number = candidate
                scale = factor
                break
            }
        }
        // Plain decimal only: no sign, exponent, hex or nan.
        guard number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), number.filter({ $0 == "." }).count <= 1,
            let value = Double(number), value.isFinite
        else { return nil }
        let seconds = value * scale
        guard seconds < 1e9 else { return nil }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    public var seconds: Double {
        let c = self.components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
