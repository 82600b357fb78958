import AsyncHTTPClient
import Foundation
import HeadcountServer
import NIOHTTP1
import Testing

@Suite("Snapshots, errors and assets", .serialized)
struct APITests {
    @Test("an empty room is zeros, not 404")
    func emptyRoom() async throws {
        try await withServer { base, _ in
            let (status, _, body) = try await TestHTTP.get("\(base)/api/rooms/nobody-here")
            #expect(status == 200)
            #expect(body == #"{"room":"nobody-here","online":0,"connections":0}"#)
        }
    }

    @Test("unknown routes get a JSON 404")
    func notFound() async throws {
        try await withServer { base, _ in
            let (status, headers, body) = try await TestHTTP.get("\(base)/no/such/route")
            #expect(status == 404)
            #expect(headers.first(name: "content-type")?.hasPrefix("application/json") == true)
            #expect(body.hasPrefix(#"{"error":"#))
        }
    }

    @Test("bad limits get 400 JSON", arguments: ["0", "-3", "abc", "1001", "99999999999999999999"])
    func badLimit(_ limit: String) async throws {
        try await withServer { base, _ in
            let (status, _, body) = try await TestHTTP.get("\(base)/api/rooms?limit=\(limit)")
            #expect(status == 400)
            #expect(body.contains("limit"))
        }
    }

    @Test("/api/rooms lists the busiest rooms first")
    func busiest() async throws {
        try await withServer { base, _ in
            var streams: [LiveStream] = []
            for (room, n) in [("quiet", 1), ("busy", 3), ("middle", 2)] {
                for i in 0..<n { streams.append(LiveStream.open("\(base)/rooms/\(room)/events?visitor=\(room)\(i)")) }
            }
            try await eventually("six joined") { (try await TestHTTP.json("\(base)/api/stats"))["connections"] as? Int == 6 }
            let json = try await TestHTTP.json("\(base)/api/rooms?limit=10")
            let rooms = try #require(json["rooms"] as? [[String: Any]])
            #expect(rooms.map { $0["room"] as? String } == ["busy", "middle", "quiet"])
            #expect(rooms.map { $0["online"] as? Int } == [3, 2, 1])
            for s in streams { s.close() }
        }
    }

    @Test("the demo page is served at /")
    func demoPage() async throws {
        try await withServer { base, _ in
            let (status, headers, body) = try await TestHTTP.get("\(base)/")
            #expect(status == 200)
            #expect(headers.first(name: "content-type")?.hasPrefix("text/html") == true)
            #expect(body.contains("Headcount"))
        }
    }

    @Test("CORS preflight and a configured origin list")
    func cors() async throws {
        var c = HeadcountConfiguration.testing()
        c.allowOrigins = ["https://example.com"]
        try await withServer(c) { base, _ in
            let (_, allowed, _) = try await TestHTTP.get("\(base)/api/rooms/x", headers: ["Origin": "https://example.com"])
            #expect(allowed.first(name: "access-control-allow-origin") == "https://example.com")
            #expect(allowed.first(name: "access-control-allow-credentials") == "true")
            let (_, other, _) = try await TestHTTP.get("\(base)/api/rooms/x", headers: ["Origin": "https://evil.example"])
            #expect(other.first(name: "access-control-allow-origin") == nil)
        }
    }
}
