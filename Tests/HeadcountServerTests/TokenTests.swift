import HeadcountServer
import Testing

@Suite("Join tokens")
struct TokenTests {
    let tokens = JoinTokens(secret: "k")

    @Test("a token verifies for its room until it expires")
    func roundTrip() throws {
        let t = tokens.sign(.init(room: "priv-1", expires: 2000, visitor: "v"))
        let claims = try tokens.verify(t, room: "priv-1", now: 1999)
        #expect(claims == .init(room: "priv-1", expires: 2000, visitor: "v"))
        #expect(throws: JoinTokens.Failure.expired) { try tokens.verify(t, room: "priv-1", now: 2000) }
        #expect(throws: JoinTokens.Failure.wrongRoom) { try tokens.verify(t, room: "priv-2", now: 0) }
    }

    @Test("prefix tokens admit every room with the prefix")
    func prefix() throws {
        let t = tokens.sign(.init(room: "team-", prefix: true, expires: 10))
        _ = try tokens.verify(t, room: "team-a", now: 0)
        #expect(throws: JoinTokens.Failure.wrongRoom) { try tokens.verify(t, room: "teams", now: 0) }
    }

    @Test("tampered, truncated and foreign tokens are refused", arguments: ["", ".", "abc", "a.b.c", "!!!.!!!", String(repeating: "A", count: 2000)])
    func malformed(_ token: String) {
        #expect(throws: JoinTokens.Failure.self) { try tokens.verify(token, room: "r", now: 0) }
    }

    @Test("a token signed with another secret or edited payload fails the signature")
    func forged() throws {
        let t = JoinTokens(secret: "other").sign(.init(room: "r", expires: 10))
        #expect(throws: JoinTokens.Failure.badSignature) { try tokens.verify(t, room: "r", now: 0) }
        let good = tokens.sign(.init(room: "r", expires: 10))
        let parts = good.split(separator: ".")
        let edited = tokens.sign(.init(room: "r", expires: 99999)).split(separator: ".")[0] + "." + parts[1]
        #expect(throws: JoinTokens.Failure.badSignature) { try tokens.verify(String(edited), room: "r", now: 0) }
    }

    @Test("room globs")
    func globs() {
        let p = RoomPatterns(["priv-*", "team-??", "exact"])
        #expect(p.matches("priv-"))
        #expect(p.matches("priv-anything:here"))
        #expect(p.matches("team-ab"))
        #expect(!p.matches("team-abc"))
        #expect(p.matches("exact"))
        #expect(!p.matches("exactly"))
        #expect(!p.matches("public"))
    }
}
