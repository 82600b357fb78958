import HeadcountCore
import Testing

@Suite struct NamesTests {
    @Test(arguments: [
        "a", "Z", "0", "lobby", "Room-1", "a_b", "a.b", "a~b", "a:b", "-_.~:",
        "page:x", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        String(repeating: "x", count: 128),
    ])
    func acceptsLettersDigitsAndTheSafePunctuation(name: String) {
        #expect(Names.isValidRoom(name))
        #expect(Names.isValidVisitor(name))
        #expect(Names.isValidRoom(Substring(name)))
        #expect(Names.isValidVisitor(Substring(name)))
        #expect(Names.roomProblem(name) == nil)
        #expect(Names.visitorProblem(name) == nil)
    }

    @Test(arguments: [
        "", " ", "a b", " a", "a ", "a/b", "/", "a%20b", "%", "é", "ünïcödé", "日本", "😀", "a\u{0}b", "a\nb",
        "a\"b", "a\\b", "a,b", "a;b", "a?b", "a#b", "a&b", "a=b", "a+b", "<a>", "{a}", "a'b", "a@b", "a!b", "a*b",
        "\t", String(repeating: "x", count: 129), String(repeating: "x", count: 1_000),
    ])
    func rejectsEverythingElse(name: String) {
        #expect(!Names.isValidRoom(name))
        #expect(!Names.isValidVisitor(name))
        #expect(!Names.isValidRoom(Substring(name)))
        #expect(!Names.isValidVisitor(Substring(name)))
        #expect(Names.roomProblem(name) != nil)
        #expect(Names.visitorProblem(name) != nil)
    }

    @Test func problemsAreSpecific() {
        #expect(Names.roomProblem("") == "room name is empty")
        #expect(Names.visitorProblem("") == "visitor id is empty")
        #expect(Names.roomProblem(String(repeating: "a", count: 129)) == "room name is longer than 128 characters")
        #expect(Names.visitorProblem(String(repeating: "a", count: 129)) == "visitor id is longer than 128 characters")
        #expect(Names.roomProblem("a b") == "room name may contain only letters, digits and -_.~:")
        #expect(Names.visitorProblem("a/b") == "visitor id may contain only letters, digits and -_.~:")
        #expect(Names.maxLength == 128)
    }

    @Test func lengthIsCountedInBytesSoMultibyteTextCannotSlipPastTheLimit() {
        // 64 two-byte characters: 128 bytes, but not ASCII, so rejected either way.
        let name = String(repeating: "é", count: 64)
        #expect(!Names.isValidRoom(name))
        // A substring of a longer string is judged on its own.
        let long = "ok-" + String(repeating: "y", count: 200)
        let slice = long.prefix(10)
        #expect(Names.isValidRoom(slice))
        #expect(!Names.isValidRoom(long[...]))
    }

    @Test func everyAsciiByteIsClassifiedAsDocumented() {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:".utf8)
        for byte in UInt8(1)...UInt8(127) {
            let s = String(decoding: [UInt8(ascii: "a"), byte, UInt8(ascii: "b")], as: UTF8.self)
            #expect(Names.isValidRoom(s) == allowed.contains(byte), "byte \(byte)")
        }
    }
}
