/// Validation of the identifiers that clients choose: room names and visitor ids.
///
/// Both are 1–128 characters of ASCII letters, digits and `-_.~:`. That alphabet needs no escaping in
/// JSON, SSE or URLs, so validated names can be written into events byte for byte.
public enum Names {
    /// Longest room name or visitor id accepted.
    public static let maxLength = 128

    /// Whether `name` is a valid room name.
    public static func isValidRoom(_ name: Substring) -> Bool { isValidToken(name) }
    public static func isValidRoom(_ name: String) -> Bool { isValidToken(Substring(name)) }

    /// Whether `id` is a valid visitor id.
    public static func isValidVisitor(_ id: Substring) -> Bool { isValidToken(id) }
    public static func isValidVisitor(_ id: String) -> Bool { isValidToken(Substring(id)) }

    @inlinable
    static func isValidToken(_ s: Substring) -> Bool {
        var count = 0
        for byte in s.utf8 {
            count += 1
            if count > maxLength { return false }
            guard isAllowed(byte) else { return false }
        }
        return count > 0
    }

    @inlinable
    static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: ":"):
            return true
        default:
            return false
        }
    }

    /// Why a room name is invalid, in words a user can act on, or nil when it is valid.
    public static func roomProblem(_ name: String) -> String? {
        if name.isEmpty { return "room name is empty" }
        if name.utf8.count > maxLength { return "room name is longer than \(maxLength) characters" }
        if !isValidRoom(name) { return "room name may contain only letters, digits and -_.~:" }
        return nil
    }

    /// Why a visitor id is invalid, or nil when it is valid.
    public static func visitorProblem(_ id: String) -> String? {
        if id.isEmpty { return "visitor id is empty" }
        if id.utf8.count > maxLength { return "visitor id is longer than \(maxLength) characters" }
        if !isValidVisitor(id) { return "visitor id may contain only letters, digits and -_.~:" }
        return nil
    }
}
