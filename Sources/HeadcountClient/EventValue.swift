/// Pulls one non-negative integer out of an event's data without a JSON decoder.
public enum EventValue {
    /// The integer after `"key":` in a flat JSON object (`{"room":"r","online":12,...}`), or nil.
    /// `"online"` does not match `"onlineUsers"`: the key must be followed by its closing quote.
    public static func jsonInteger(_ key: String, in data: String) -> Int? {
        var pattern = Array("\"".utf8)
        pattern.append(contentsOf: key.utf8)
        pattern.append(contentsOf: "\":".utf8)
        return integer(after: pattern, in: data)
    }

    /// The integer after `seq=` (the body the bench publishes to nchan: `seq=3 ...`), or nil.
    public static func sequence(in data: String) -> Int? {
        integer(after: Array("seq=".utf8), in: data)
    }

    /// The digits that follow the first occurrence of `pattern` (spaces allowed before them).
    public static func integer(after pattern: [UInt8], in data: String) -> Int? {
        var copy = data
        return copy.withUTF8 { bytes -> Int? in
            let n = bytes.count, m = pattern.count
            guard m > 0, n >= m else { return nil }
            var i = 0
            while i + m <= n {
                var k = 0
                while k < m && bytes[i + k] == pattern[k] { k += 1 }
                if k == m {
                    var j = i + m
                    while j < n && bytes[j] == UInt8(ascii: " ") { j += 1 }
                    var value = 0
                    var digits = 0
                    while j < n, bytes[j] >= UInt8(ascii: "0"), bytes[j] <= UInt8(ascii: "9") {
                        let (a, o1) = value.multipliedReportingOverflow(by: 10)
                        let (b, o2) = a.addingReportingOverflow(Int(bytes[j] - UInt8(ascii: "0")))
                        if o1 || o2 { return nil }
                        value = b
                        digits += 1
                        j += 1
                    }
                    return digits > 0 ? value : nil
                }
                i += 1
            }
            return nil
        }
    }
}
