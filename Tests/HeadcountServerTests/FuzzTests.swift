import Foundation
import HTTPTypes
import HeadcountCore
@testable import HeadcountServer
import HummingbirdCore
import NIOCore
import Testing

/// Fuzz tests of the pure request-parsing entry points: every input a client can choose (request
/// targets, cookies, tokens, forwarded-for headers) and every operator string (durations, proxy ranges).
/// Each test generates its inputs from a seeded generator (set `HEADCOUNT_FUZZ_SEED` to replay a run; the
/// seed is in every failure message), mixes random bytes with mutations of valid inputs, and checks the
/// result against a plainly written model. A crash fails the whole run; a wrong answer is reported with
/// its input. Together they feed more than 500,000 inputs (at least 100,000 to the SSE request planner).
@Suite("Fuzz: request parsers", .serialized)
struct FuzzTests {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["HEADCOUNT_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x4865_6164_636F_756E

    // MARK: SSERoutes.plan

    @Test("SSERoutes.plan: 120,000 generated request targets never crash and agree with a model of rooms, visitors and tokens")
    func planFuzz() throws {
        var rng = SplitMix64(seed: Self.seed)
        var configuration = HeadcountConfiguration()
        configuration.secret = "fuzz-secret"
        configuration.privateRooms = ["priv-*", "team-??"]
        let policy = AccessPolicy(configuration: configuration)
        let tokens = JoinTokens(secret: "fuzz-secret")
        let now = Int64(Date().timeIntervalSince1970)
        var failures: [String] = []
        var outcomes = (plans: 0, notSSE: 0, rejected: 0)
        let total = 120_000
        for i in 0..<total {
            let target = Self.requestTarget(&rng, tokens: tokens, now: now)
            let isGet = rng.below(20) != 0
            let cookie: String? = rng.below(3) == 0 ? Self.cookieHeader(&rng) : nil
            let uri = URI(target)
            func fail(_ what: String) {
                if failures.count < 10 { failures.append("input \(i) (seed \(Self.seed)) GET=\(isGet) \(target.debugDescription) cookie \(cookie.debugDescription): \(what)") }
            }
            do throws(APIError) {
                guard let plan = try SSERoutes.plan(isGet: isGet, uri: uri, cookieHeader: cookie, policy: policy) else {
                    outcomes.notSSE += 1
                    // A GET of the room route is planned or refused, never passed over.
                    if isGet, let outcome = Self.modelRoom(path: uri.path) { fail("nil for the room route (\(outcome))") }
                    continue
                }
                outcomes.plans += 1
                if !isGet { fail("a plan for a request that is not GET") }
                switch plan.target {
                case .site:
                    if uri.path != "/events" { fail("site stream for path \(uri.path)") }
                    if plan.visitor != nil { fail("site stream with a visitor") }
                case .room(let name, let format):
                    if !Names.isValidRoom(name) { fail("plan for invalid room \(name.debugDescription)") }
                    if format == .legacy && (uri.path != "/api/sse" || name != "lobby") { fail("legacy format for \(uri.path)") }
                    if uri.path != "/api/sse" {
                        switch Self.modelRoom(path: uri.path) {
                        case .valid(let expected)? where expected == name: break
                        default: fail("room \(name.debugDescription), model says \(String(describing: Self.modelRoom(path: uri.path)))")
                        }
                    }
                    if policy.isPrivate(name) && uri.queryParameters["token"] == nil { fail("private room planned without a token") }
                }
                switch plan.visitor {
                case .identified(let id)?:
                    if !Names.isValidVisitor(id) { fail("identified visitor with invalid id \(id.debugDescription)") }
                    if let q = uri.queryParameters["visitor"], String(q) != id { fail("visitor \(id) but query says \(q)") }
                    if plan.setCookie != nil { fail("Set-Cookie for an identified visitor") }
                case .ephemeral(let id)?:
                    if id.utf8.count != 32 || !id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) { fail("fresh id \(id)") }
                    if plan.setCookie?.hasPrefix("hc_vid=\(id);") != true { fail("fresh id without its cookie") }
                    if uri.queryParameters["visitor"] != nil { fail("ephemeral visitor despite ?visitor=") }
                case nil:
                    if case .room = plan.target, !["1", "true", ""].contains(Self.watchValue(uri)) { fail("watcher without watch=1") }
                }
            } catch {
                outcomes.rejected += 1
                if !isGet { fail("threw for a request that is not GET") }
                if !(400..<500).contains(error.status.code) { fail("status \(error.status.code) \(error.message)") }
                if error.message.isEmpty { fail("empty error message") }
                // A valid public room with no visitor, watch or token parameter has nothing to reject.
                if case .valid(let room)? = Self.modelRoom(path: uri.path), !policy.isPrivate(room),
                    uri.queryParameters["visitor"] == nil, uri.queryParameters["watch"] == nil
                {
                    fail("rejected a valid room: \(error.status.code) \(error.message)")
                }
                if case .invalid? = Self.modelRoom(path: uri.path), error.status.code != 400 { fail("invalid room answered \(error.status.code)") }
            }
        }
        #expect(failures.isEmpty, "\(failures.count) wrong plans:\n\(failures.joined(separator: "\n"))")
        // Planning reserves nothing: no stream slot is held, nothing is counted.
        #expect(policy.openByAddress == 0)
        // Every outcome occurred often enough for the run to mean something.
        #expect(outcomes.plans > 5_000 && outcomes.notSSE > 5_000 && outcomes.rejected > 20_000, "\(outcomes)")
    }

    enum RoomOutcome: Equatable, CustomStringConvertible {
        case valid(String)
        case invalid
        var description: String {
            switch self {
            case .valid(let r): return "valid(\(r))"
            case .invalid: return "invalid"
            }
        }
    }

    /// The model of `/rooms/{room}/events`, byte by byte: nil when the path is not that route (or not ASCII,
    /// where the route's Character-based matching is left unmodelled).
    static func modelRoom(path: String) -> RoomOutcome? {
        let bytes = Array(path.utf8)
        guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
        let prefix = Array("/rooms/".utf8), suffix = Array("/events".utf8)
        guard bytes.count >= prefix.count + suffix.count, bytes.starts(with: prefix), bytes.suffix(suffix.count).elementsEqual(suffix) else {
            return nil
        }
        let raw = Array(bytes[prefix.count..<(bytes.count - suffix.count)])
        let name = raw.contains(UInt8(ascii: "%")) ? (percentDecode(raw) ?? raw) : raw
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:".utf8)
        guard (1...128).contains(name.count), name.allSatisfy({ allowed.contains($0) }) else { return .invalid }
        return .valid(String(decoding: name, as: UTF8.self))
    }

    /// %XX decoding; nil for a bad escape or bytes that are not UTF-8 (Foundation's rule).
    static func percentDecode(_ raw: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var i = 0
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 48...57: return b - 48
            case 65...70: return b - 55
            case 97...102: return b - 87
            default: return nil
            }
        }
        while i < raw.count {
            if raw[i] == UInt8(ascii: "%") {
                guard i + 2 < raw.count, let h = hex(raw[i + 1]), let l = hex(raw[i + 2]) else { return nil }
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(raw[i])
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self) == nil ? nil : out
    }

    static func watchValue(_ uri: URI) -> String? {
        uri.queryParameters["watch"].map(String.init)
    }

    static let roomAlphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~:".utf8)
    static let nasty: [String] = [
        "%", "%00", "%zz", "%2F", "%2f", "%25", "%E0%A4", "%C0%AF", "%ED%A0%80", "%F0%9F%98%80", "%41", "%3A", "/", "//", "..", "?",
        "&", "=", "#", " ", "\t", "\r\n", "\u{0}", "\u{7F}", "é", "e\u{301}", "\u{202E}", "😀", "\u{FEFF}", "%FF", "+", ";", ",",
        "watch=1", "watch=", "watch=0", "watch=2", "visitor=", "visitor=a b", "token=", "token=a.b", "&&", "=&=", "rooms", "events",
    ]

    static func requestTarget(_ rng: inout SplitMix64, tokens: JoinTokens, now: Int64) -> String {
        switch rng.below(10) {
        case 0:
            // Random bytes (as UTF-8, with repairs) after a slash.
            return "/" + String(decoding: (0..<rng.below(80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, as: UTF8.self)
        case 1:
            // Random characters from a URL-ish alphabet.
            let alphabet = Array("/?&=%abcdefghijklmnopqrstuvwxyz0123456789-_.~:rooms/events".utf8)
            return "/" + String(decoding: (0..<rng.below(60)).map { _ in alphabet[rng.below(alphabet.count)] }, as: UTF8.self)
        default:
            var target = Array(validTarget(&rng, tokens: tokens, now: now).utf8)
            for _ in 0..<rng.below(4) { mutate(&target, &rng) }
            return String(decoding: target, as: UTF8.self)
        }
    }

    static func validTarget(_ rng: inout SplitMix64, tokens: JoinTokens, now: Int64) -> String {
        let length = rng.below(20) + 1
        let room = String(decoding: (0..<length).map { _ in roomAlphabet[rng.below(roomAlphabet.count)] }, as: UTF8.self)
        let visitor = "v\(rng.below(1000))"
        switch rng.below(12) {
        case 0: return "/api/sse"
        case 1: return "/events"
        case 2: return "/rooms/\(room)/events?watch=1"
        case 3: return "/rooms/\(room)/events"
        case 4: return "/rooms/priv-\(room)/events?token=\(tokens.sign(.init(room: "priv-\(room)", expires: now + 600)))"
        case 5: return "/rooms/priv-\(room)/events?visitor=\(visitor)&token=\(tokens.sign(.init(room: "priv-", prefix: true, expires: now + 600, visitor: visitor)))"
        case 6: return "/rooms/team-ab/events?token=\(tokens.sign(.init(room: "team-ab", expires: now - 5)))"
        case 7: return "/rooms/\(room.prefix(3))%\(String(rng.below(256), radix: 16))/events?visitor=\(visitor)"
        case 8: return "/rooms/\(String(repeating: "r", count: rng.below(300)))/events"
        default: return "/rooms/\(room)/events?visitor=\(visitor)"
        }
    }

    static func mutate(_ bytes: inout [UInt8], _ rng: inout SplitMix64) {
        let n = bytes.count
        let i = n == 0 ? 0 : rng.below(n + 1)
        switch rng.below(7) {
        case 0 where n > 0: bytes[min(i, n - 1)] = UInt8(truncatingIfNeeded: rng.next())
        case 1: bytes.insert(contentsOf: Array(nasty[rng.below(nasty.count)].utf8), at: i)
        case 2 where n > 0: bytes.removeSubrange(i..<min(n, i + rng.below(12) + 1))
        case 3 where n > 0:
            let j = rng.below(n)
            bytes.insert(contentsOf: bytes[j..<min(n, j + rng.below(30) + 1)], at: i)
        case 4 where n > 0: bytes.removeSubrange(i..<n)
        case 5: bytes.insert(contentsOf: [UInt8](repeating: Array("a%/.:".utf8)[rng.below(5)], count: rng.below(200)), at: i)
        default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: i)
        }
    }

    static func cookieHeader(_ rng: inout SplitMix64) -> String {
        let options = ["hc_vid=abc", "hc_vid=", "hc_vid", "=", ";", "; ; ;", "hc_vid=a b", "hc_vid=\(String(repeating: "x", count: 129))",
                       "other=1; hc_vid=ok-1", "hc_vid=%41", "hc_vid==", " hc_vid=sp", "HC_VID=upper", "hc_vid=é"]
        var s = options[rng.below(options.count)]
        if rng.below(3) == 0 {
            var bytes = Array(s.utf8)
            mutate(&bytes, &rng)
            s = String(decoding: bytes, as: UTF8.self)
        }
        return s
    }

    // MARK: Names and cookies

    @Test("Names and SSERoutes.cookieValue: 100,000 random strings agree with a byte-level model")
    func namesFuzz() {
        var rng = SplitMix64(seed: Self.seed &+ 1)
        let allowed = Set(Self.roomAlphabet)
        var failures: [String] = []
        for i in 0..<100_000 {
            let bytes: [UInt8]
            switch rng.below(4) {
            case 0: bytes = (0..<rng.below(140)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1: bytes = (0..<rng.below(140)).map { _ in Self.roomAlphabet[rng.below(Self.roomAlphabet.count)] }
            case 2: bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 120 + rng.below(16))
            default:
                var b = Array("room-\(i)".utf8)
                Self.mutate(&b, &rng)
                bytes = b
            }
            let text = String(decoding: bytes, as: UTF8.self)
            let utf8 = Array(text.utf8)
            let expected = (1...128).contains(utf8.count) && utf8.allSatisfy { allowed.contains($0) }
            if Names.isValidRoom(text) != expected || Names.isValidVisitor(text) != expected
                || (Names.roomProblem(text) == nil) != expected || (Names.visitorProblem(text) == nil) != expected
                || Names.isValidRoom(Substring(text)) != expected
            {
                if failures.count < 10 { failures.append("input \(i) (seed \(Self.seed)): \(text.debugDescription) expected valid=\(expected)") }
            }
            // Cookie parsing takes any header text without trapping and finds the value up to the next `;`
            // (modelled for ASCII: a leading combining mark joins the `=` into one Character).
            let header = "a=1; hc_vid=\(text); b=2"
            let cookie = SSERoutes.cookieValue(header, name: "hc_vid")
            if text.utf8.allSatisfy({ $0 < 0x80 }), cookie != String(text.prefix(while: { $0 != ";" })), failures.count < 10 {
                failures.append("input \(i): cookie value \(cookie.debugDescription) from \(header.debugDescription)")
            }
            _ = SSERoutes.cookieValue(text, name: "hc_vid")
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    // MARK: Join tokens

    @Test("JoinTokens.verify: 100,000 random and mutated tokens never verify unless they carry the signed claims")
    func tokenFuzz() {
        var rng = SplitMix64(seed: Self.seed &+ 2)
        let tokens = JoinTokens(secret: "fuzz-secret")
        let other = JoinTokens(secret: "another-secret")
        let now: Int64 = 1_800_000_000
        var failures: [String] = []
        var verified = 0
        for i in 0..<100_000 {
            let claims = JoinTokens.Claims(room: "priv-\(rng.below(50))", prefix: rng.below(4) == 0,
                                           expires: now + Int64(rng.below(7200)) - 3600, visitor: rng.below(2) == 0 ? "v\(i % 100)" : nil)
            let signed = tokens.sign(claims)
            var candidate: String
            switch rng.below(6) {
            case 0: candidate = String(decoding: (0..<rng.below(200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, as: UTF8.self)
            case 1: candidate = other.sign(claims)  // right claims, wrong key
            case 2: candidate = String(repeating: signed, count: 1 + rng.below(12))
            case 3: candidate = signed  // unmodified: verifies exactly when not expired and the room matches
            default:
                var bytes = Array(signed.utf8)
                for _ in 0...rng.below(3) { Self.mutate(&bytes, &rng) }
                candidate = String(decoding: bytes, as: UTF8.self)
            }
            let room = rng.below(3) == 0 ? "priv-\(rng.below(50))x" : claims.room
            do throws(JoinTokens.Failure) {
                let got = try tokens.verify(candidate, room: room, now: now)
                verified += 1
                // Only the signed claims can come out (a mutation may leave the decoded bytes unchanged).
                if got != claims || got.expires <= now || !(got.prefix ? room.hasPrefix(got.room) : room == got.room) {
                    if failures.count < 10 { failures.append("input \(i) (seed \(Self.seed)): \(candidate.debugDescription) verified as \(got), signed \(claims)") }
                }
            } catch {
                if candidate == signed && claims.expires > now && room == claims.room {
                    if failures.count < 10 { failures.append("input \(i): a valid token was refused: \(error)") }
                }
                if candidate == signed && claims.expires <= now && error != .expired {
                    if failures.count < 10 { failures.append("input \(i): an expired token gave \(error)") }
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(verified > 1_000)
    }

    // MARK: Durations

    @Test("DurationParser.parse: 100,000 random strings give nil or the model's duration")
    func durationFuzz() {
        var rng = SplitMix64(seed: Self.seed &+ 3)
        let alphabet = Array("0123456789.......smhdu \t-+eExXnNaif".utf8)
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("", 1)]
        var failures: [String] = []
        var parsed = 0
        for i in 0..<100_000 {
            let text: String
            switch rng.below(4) {
            case 0: text = String(decoding: (0..<rng.below(16)).map { _ in alphabet[rng.below(alphabet.count)] }, as: UTF8.self)
            case 1: text = String(decoding: (0..<rng.below(16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, as: UTF8.self)
            default:
                let whole = rng.below(2_000_000_000)
                let fraction = rng.below(2) == 0 ? "" : ".\(rng.below(1000))"
                let unit = units[rng.below(units.count)].0
                var bytes = Array("\(whole)\(fraction)\(unit)".utf8)
                if rng.below(3) == 0 { Self.mutate(&bytes, &rng) }
                text = String(decoding: bytes, as: UTF8.self)
            }
            let got = DurationParser.parse(text)
            let model = Self.modelDuration(text, units: units)
            if let got {
                parsed += 1
                if (got < .zero || got.seconds >= 1e9) && failures.count < 10 { failures.append("\(text.debugDescription) -> \(got)") }
            }
            switch (got, model) {
            case (nil, nil): break
            case (let g?, let m?) where abs(g.seconds - m) <= max(1e-9, m * 1e-12): break
            default:
                if failures.count < 10 { failures.append("input \(i) (seed \(Self.seed)): \(text.debugDescription) parsed \(String(describing: got)), model \(String(describing: model))") }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(parsed > 10_000)
    }

    /// Plain decimal (digits with at most one dot, at least one digit) and an optional unit, after trimming
    /// whitespace; below 1e9 seconds.
    static func modelDuration(_ text: String, units: [(String, Double)]) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        for (unit, factor) in units where trimmed.hasSuffix(unit) {
            let number = trimmed.dropLast(unit.count)
            guard let last = number.unicodeScalars.last, (48...57).contains(last.value) || last == "." else { continue }
            guard number.unicodeScalars.allSatisfy({ (48...57).contains($0.value) || $0 == "." }),
                number.filter({ $0 == "." }).count <= 1, number.contains(where: \.isNumber), let value = Double(number)
            else { return nil }
            let seconds = value * factor
            return seconds < 1e9 ? seconds : nil
        }
        return nil
    }

    // MARK: Client addresses and proxy ranges

    @Test("AccessPolicy.clientAddress and IPRange: 100,000 random forwarded-for headers and ranges")
    func addressFuzz() throws {
        var rng = SplitMix64(seed: Self.seed &+ 4)
        var configuration = HeadcountConfiguration()
        configuration.trustedProxies = ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]
        let policy = AccessPolicy(configuration: configuration)
        let untrustingPolicy = AccessPolicy(configuration: HeadcountConfiguration())
        let pieces = ["127.0.0.1", "10.1.2.3", "10.255.255.255", "203.0.113.7", "198.51.100.1", "::1", "fd00::5", "2001:db8::1", "unknown",
                      "", " ", "1.2.3", "256.1.1.1", "1.2.3.4.5", "::ffff:1.2.3.4", "[::1]", "1.2.3.4:80", "fe80::1%eth0", "é", "\u{0}", "-",
                      "0.0.0.0", "255.255.255.255", "10.0.0.0/8", "a,b", ",,,"]
        var failures: [String] = []
        for i in 0..<50_000 {
            var hops: [String] = []
            for _ in 0..<rng.below(6) {
                var p = Array(pieces[rng.below(pieces.count)].utf8)
                if rng.below(5) == 0 { Self.mutate(&p, &rng) }
                hops.append(String(decoding: p, as: UTF8.self))
            }
            let header = rng.below(10) == 0 ? nil : hops.joined(separator: rng.below(2) == 0 ? ", " : ",")
            let peers = ["127.0.0.1", "10.9.8.7", "203.0.113.99", "::1"]
            let peerIP = peers[rng.below(peers.count)]
            let peer = try SocketAddress(ipAddress: peerIP, port: 4000)
            let got = policy.clientAddress(peer: peer, forwardedFor: header)
            let expected = Self.modelClientAddress(peerIP: peerIP, header: header, trusted: policy.isTrusted)
            if got != expected, failures.count < 10 {
                failures.append("input \(i) (seed \(Self.seed)): peer \(peerIP) XFF \(header.debugDescription): got \(got), model \(expected)")
            }
            let plain = untrustingPolicy.clientAddress(peer: peer, forwardedFor: header)
            if plain != peerIP, failures.count < 10 { failures.append("without trusted proxies XFF was believed: \(plain)") }
        }
        #expect(policy.clientAddress(peer: nil, forwardedFor: "1.2.3.4") == "unknown")
        // IPRange over random text, including strings made only of "/" (which used to trap).
        for i in 0..<50_000 {
            var bytes: [UInt8]
            if rng.below(2) == 0 {
                bytes = (0..<rng.below(24)).map { _ in Array("0123456789abcdef.:/%".utf8)[rng.below(20)] }
            } else {
                bytes = Array(pieces[rng.below(pieces.count)].utf8) + Array("/\(rng.below(140))".utf8)
                if rng.below(2) == 0 { Self.mutate(&bytes, &rng) }
            }
            if rng.below(50) == 0 { bytes = [UInt8](repeating: UInt8(ascii: "/"), count: rng.below(4)) }
            let text = String(decoding: bytes, as: UTF8.self)
            guard let range = IPRange(text) else { continue }
            let bits = range.base.count * 8
            if !(range.base.count == 4 || range.base.count == 16) || !(0...bits).contains(range.prefix) || !range.contains(range.base) {
                if failures.count < 10 { failures.append("range \(i) \(text.debugDescription): base \(range.base) prefix \(range.prefix)") }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    /// The right-most forwarded hop that is not a trusted proxy, when it is an address; the peer when the
    /// peer is not trusted or the hop is not an address; the first hop when every hop is trusted.
    static func modelClientAddress(peerIP: String, header: String?, trusted: (String) -> Bool) -> String {
        guard let header, trusted(peerIP) else { return peerIP }
        let hops = header.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let hop = hops.last(where: { !trusted($0) }) {
            return IPRange.parseAddress(hop) != nil ? hop : peerIP
        }
        return hops.first ?? peerIP
    }

    @Test("a --trusted-proxy made of slashes is refused, not a crash")
    func proxyRangeOfSlashes() {
        #expect(!HeadcountConfiguration.isValidProxy("/"))
        #expect(!HeadcountConfiguration.isValidProxy("//"))
    }
}

/// A small, fast, seedable generator (SplitMix64) so that every run can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    /// A uniform Int in 0..<n (n > 0).
    mutating func below(_ n: Int) -> Int { Int(next(upperBound: UInt64(n))) }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
