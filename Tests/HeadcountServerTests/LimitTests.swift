import AsyncHTTPClient
import Foundation
import HeadcountCore
import HeadcountServer
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

/// Sends raw bytes on a fresh connection and returns what the server answered before closing.
func rawExchange(port: Int, _ request: [UInt8], timeout: Duration = .seconds(5)) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
    return try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(bytes: request))
        var text = ""
        let deadline = ContinuousClock.now + timeout
        for try await chunk in inbound {
            text += String(buffer: chunk)
            if ContinuousClock.now > deadline || text.contains("\r\n\r\n{") && text.hasSuffix("}") { break }
        }
        return text
    }
}

@Suite("Limits, private rooms and admin routes", .serialized)
struct LimitTests {
    @Test("streams per client address are capped with 429 and a Retry-After; counts do not move")
    func perIPLimit() async throws {
        var c = HeadcountConfiguration.testing()
        c.maxStreamsPerIP = 3
        try await withServer(c) { base, app in
            let streams = (0..<3).map { LiveStream.open("\(base)/rooms/capped/events?visitor=c\($0)") }
            try await streams[0].waitForLatest { $0.int("online") == 3 }
            let (status, headers, body) = try await TestHTTP.get("\(base)/rooms/capped/events?visitor=c9")
            #expect(status == 429)
            let retry = Int(headers.first(name: "retry-after") ?? "") ?? 0
            #expect((5...15).contains(retry))
            #expect(body.contains("too many streams"))
            #expect(app.registry.localCounts(room: "capped").online == 3)
            streams[0].close()
            try await eventually("slot freed") {
                (try await TestHTTP.json("\(base)/api/rooms/capped"))["connections"] as? Int == 2
            }
            let again = LiveStream.open("\(base)/rooms/capped/events?visitor=c9")
            try await again.waitForLatest { $0.int("connections") == 3 }
            for s in streams + [again] { s.close() }
        }
    }

    @Test("X-Forwarded-For counts only from trusted proxies")
    func trustedProxy() async throws {
        var c = HeadcountConfiguration.testing()
        c.maxStreamsPerIP = 1
        c.trustedProxies = ["127.0.0.1"]
        try await withServer(c) { base, _ in
            let a = LiveStream.open("\(base)/rooms/xff/events?visitor=a", headers: ["X-Forwarded-For": "203.0.113.7"])
            try await a.waitForLatest { $0.int("online") == 1 }
            // Another client behind the same trusted proxy is another address.
            let b = LiveStream.open("\(base)/rooms/xff/events?visitor=b", headers: ["X-Forwarded-For": "203.0.113.8"])
            try await b.waitForLatest { $0.int("online") == 2 }
            // The same forwarded address again is over its limit.
            let (status, _, _) = try await TestHTTP.get("\(base)/rooms/xff/events?visitor=c", headers: ["X-Forwarded-For": "203.0.113.7"])
            #expect(status == 429)
            a.close()
            b.close()
        }
        var untrusted = HeadcountConfiguration.testing()
        untrusted.maxStreamsPerIP = 1
        try await withServer(untrusted) { base, _ in
            let a = LiveStream.open("\(base)/rooms/xff/events?visitor=a", headers: ["X-Forwarded-For": "203.0.113.7"])
            try await a.waitForLatest { $0.int("online") == 1 }
            // Without --trusted-proxy the header is ignored: both come from 127.0.0.1.
            let (status, _, _) = try await TestHTTP.get("\(base)/rooms/xff/events?visitor=b", headers: ["X-Forwarded-For": "198.51.100.1"])
            #expect(status == 429)
            a.close()
        }
    }

    @Test("total streams are capped with 503; too many rooms with 503")
    func totals() async throws {
        var c = HeadcountConfiguration.testing()
        c.maxStreams = 2
        c.maxRooms = 3
        try await withServer(c) { base, _ in
            let a = LiveStream.open("\(base)/rooms/t1/events?visitor=a")
            let b = LiveStream.open("\(base)/rooms/t2/events?visitor=b")
            try await a.waitForLatest { $0.int("online") == 1 }
            try await b.waitForLatest { $0.int("online") == 1 }
            let (status, _, body) = try await TestHTTP.get("\(base)/rooms/t1/events?visitor=c")
            #expect(status == 503)
            #expect(body.contains("maximum number of streams"))
            a.close()
            b.close()
        }
        var r = HeadcountConfiguration.testing()
        r.maxRooms = 2
        try await withServer(r) { base, _ in
            let a = LiveStream.open("\(base)/rooms/r1/events?visitor=a")
            let b = LiveStream.open("\(base)/rooms/r2/events?visitor=b")
            try await a.waitForLatest { $0.int("online") == 1 }
            try await b.waitForLatest { $0.int("online") == 1 }
            let (status, _, body) = try await TestHTTP.get("\(base)/rooms/r3/events?visitor=c")
            #expect(status == 503)
            #expect(body.contains("too many rooms"))
            a.close()
            b.close()
        }
    }

    @Test("a head over 16 KB gets 431 and a URL over 2 KB gets 414, as JSON")
    func oversized() async throws {
        // Raw HTTP/1 bytes: plaintext only (HTTP/2 has no such heads; its header list is capped by SETTINGS).
        try await withServer(transports: [.http1]) { base, app in
            let port = Int(base.split(separator: ":").last!)!
            let big = "GET /rooms/x/events HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 20_000))\r\n\r\n"
            let answer = try await rawExchange(port: port, Array(big.utf8))
            #expect(answer.hasPrefix("HTTP/1.1 431"), "\(answer.prefix(80))")
            #expect(answer.contains(#"{"error":"#))
            let (status, _, body) = try await TestHTTP.get("\(base)/rooms/x/events?visitor=\(String(repeating: "v", count: 2100))")
            #expect(status == 414)
            #expect(body.contains("error"))
            let garbage = try await rawExchange(port: port, [0x16, 0x03, 0x01, 0x00, 0xFF, 0x0D, 0x0A, 0x0D, 0x0A])
            #expect(garbage.hasPrefix("HTTP/1.1 400"), "\(garbage.prefix(80))")
            #expect(app.registry.roomCount == 0)
        }
    }

    @Test("private rooms need a valid join token: missing 401, forged or other room 403, expired 401")
    func privateRooms() async throws {
        var c = HeadcountConfiguration.testing()
        c.secret = "test-secret"
        c.privateRooms = ["priv-*"]
        let tokens = JoinTokens(secret: "test-secret")
        let now = Int64(Date().timeIntervalSince1970)
        let good = tokens.sign(.init(room: "priv-a", expires: now + 60))
        let prefix = tokens.sign(.init(room: "priv-", prefix: true, expires: now + 60))
        let other = tokens.sign(.init(room: "priv-b", expires: now + 60))
        let expired = tokens.sign(.init(room: "priv-a", expires: now - 1))
        let forged = JoinTokens(secret: "wrong").sign(.init(room: "priv-a", expires: now + 60))
        let bound = tokens.sign(.init(room: "priv-a", expires: now + 60, visitor: "alice"))
        try await withServer(c) { base, app in
            for (token, expected) in [(nil, 401), (expired, 401), (forged, 403), (other, 403), ("garbage", 403), (bound, 403)] as [(String?, Int)] {
                let query = token.map { "&token=\($0)" } ?? ""
                let visitor = token == bound ? "mallory" : "v"
                let (status, _, body) = try await TestHTTP.get("\(base)/rooms/priv-a/events?visitor=\(visitor)\(query)")
                #expect(status == expected, "token \(token ?? "none")")
                #expect(body.contains("error"))
            }
            #expect(app.registry.roomCount == 0)
            let ok = LiveStream.open("\(base)/rooms/priv-a/events?visitor=v&token=\(good)")
            try await ok.waitForLatest { $0.int("online") == 1 }
            let viaPrefix = LiveStream.open("\(base)/rooms/priv-a/events?visitor=w&token=\(prefix)")
            try await viaPrefix.waitForLatest { $0.int("online") == 2 }
            let asAlice = LiveStream.open("\(base)/rooms/priv-a/events?token=\(bound)")
            try await asAlice.waitForLatest { $0.int("online") == 3 }
            // Public rooms stay open; the private room's snapshot needs its token and it is not listed.
            let (snapStatus, _, _) = try await TestHTTP.get("\(base)/api/rooms/priv-a")
            #expect(snapStatus == 401)
            let snap = try await TestHTTP.json("\(base)/api/rooms/priv-a?token=\(good)")
            #expect(snap["online"] as? Int == 3)
            let list = try await TestHTTP.json("\(base)/api/rooms")
            #expect((list["rooms"] as? [[String: Any]])?.isEmpty == true)
            for s in [ok, viaPrefix, asAlice] { s.close() }
        }
    }

    @Test("with --admin-token, room listings, stats and history need the bearer token")
    func adminToken() async throws {
        var c = HeadcountConfiguration.testing()
        c.adminToken = "s3cret"
        try await withServer(c, transports: [.http1]) { base, _ in
            for path in ["/api/rooms", "/api/stats", "/api/history"] {
                let (status, headers, body) = try await TestHTTP.get("\(base)\(path)")
                #expect(status == 401, "\(path)")
                #expect(headers.first(name: "www-authenticate") == "Bearer")
                #expect(body.contains("error"))
                let (wrong, _, _) = try await TestHTTP.get("\(base)\(path)", headers: ["Authorization": "Bearer nope"])
                #expect(wrong == 401)
                let (ok, _, _) = try await TestHTTP.get("\(base)\(path)", headers: ["Authorization": "Bearer s3cret"])
                #expect(ok == 200, "\(path)")
            }
            let (room, _, _) = try await TestHTTP.get("\(base)/api/rooms/public-room")
            #expect(room == 200)
        }
    }
}
