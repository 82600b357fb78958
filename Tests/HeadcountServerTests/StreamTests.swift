import AsyncHTTPClient
import Foundation
import HeadcountCore
import HeadcountServer
import NIOHTTP1
import Testing

@Suite("Live SSE streams", .serialized)
struct StreamTests {
    @Test("first event carries the caller's own count")
    func firstEventCountsCaller() async throws {
        try await withServer { base, _ in
            let a = LiveStream.open("\(base)/rooms/first/events?visitor=alice")
            let e = try await a.waitForLatest { $0.int("online") != nil }
            #expect(e.int("online") == 1)
            #expect(e.int("connections") == 1)
            #expect(e.json["room"] as? String == "first")
            a.close()
        }
    }

    @Test("a second client raises the count for both, closing lowers it within 1 s")
    func secondClientRaisesClosingLowers() async throws {
        try await withServer(.testing(leaveGrace: .seconds(30))) { base, app in
            // Anonymous streams (no visitor, no cookie) are their own visitors and leave at once.
            let a = LiveStream.open("\(base)/rooms/pair/events")
            try await a.waitForLatest { $0.int("online") == 1 }
            let b = LiveStream.open("\(base)/rooms/pair/events")
            try await b.waitForLatest { $0.int("online") == 2 && $0.int("connections") == 2 }
            try await a.waitForLatest { $0.int("online") == 2 && $0.int("connections") == 2 }
            b.close()
            let start = ContinuousClock.now
            try await a.waitForLatest(timeout: .seconds(1)) { $0.int("online") == 1 && $0.int("connections") == 1 }
            #expect(ContinuousClock.now - start < .seconds(1))
            a.close()
            try await eventually("registry empty") { app.openStreams == 0 && app.registry.subscriberCount == 0 && app.registry.roomCount == 0 }
        }
    }

    @Test("two tabs with one visitor count once; connections count both")
    func twoTabsOneVisitor() async throws {
        try await withServer { base, _ in
            let t1 = LiveStream.open("\(base)/rooms/tabs/events?visitor=v1")
            try await t1.waitForLatest { $0.int("online") == 1 }
            let t2 = LiveStream.open("\(base)/rooms/tabs/events?visitor=v1")
            try await t2.waitForLatest { $0.int("online") == 1 && $0.int("connections") == 2 }
            try await t1.waitForLatest { $0.int("online") == 1 && $0.int("connections") == 2 }
            let snapshot = try await TestHTTP.json("\(base)/api/rooms/tabs")
            #expect(snapshot["online"] as? Int == 1)
            #expect(snapshot["connections"] as? Int == 2)
            t1.close()
            t2.close()
        }
    }

    @Test("a reload inside the leave grace keeps online steady; after the grace it drops")
    func reloadInsideGrace() async throws {
        try await withServer(.testing(leaveGrace: .seconds(1))) { base, _ in
            let watcher = LiveStream.open("\(base)/rooms/reload/events?watch=1")
            try await watcher.waitForLatest { $0.int("online") == 0 }
            let tab = LiveStream.open("\(base)/rooms/reload/events?visitor=reloader")
            try await watcher.waitForLatest { $0.int("online") == 1 }
            tab.close()
            try await watcher.waitForLatest { $0.int("connections") == 0 }
            let again = LiveStream.open("\(base)/rooms/reload/events?visitor=reloader")
            try await watcher.waitForLatest { $0.int("connections") == 1 }
            // Never dropped to zero in between.
            let onlineSeen = watcher.events.compactMap { $0.int("online") }
            #expect(onlineSeen.drop(while: { $0 == 0 }).allSatisfy { $0 == 1 }, "online flickered: \(onlineSeen)")
            again.close()
            // Grace expires: online falls to 0 within grace + margin.
            try await watcher.waitForLatest(timeout: .seconds(3)) { $0.int("online") == 0 }
            watcher.close()
        }
    }

    @Test("watch=1 streams counts without being counted")
    func watchIsNotCounted() async throws {
        try await withServer { base, _ in
            let w = LiveStream.open("\(base)/rooms/watched/events?watch=1")
            let e = try await w.waitForLatest { $0.int("online") != nil }
            #expect(e.int("online") == 0)
            #expect(e.int("connections") == 0)
            let s = try await TestHTTP.json("\(base)/api/rooms/watched")
            #expect(s["online"] as? Int == 0)
            let v = LiveStream.open("\(base)/rooms/watched/events?visitor=x")
            try await w.waitForLatest { $0.int("online") == 1 && $0.int("connections") == 1 }
            v.close()
            w.close()
        }
    }

    @Test("bad room names get 400 JSON and change no count", arguments: ["bad%20room", String(repeating: "a", count: 129), "%C3%A9t%C3%A9", "a%2Fb", "semi;colon"])
    func badRoom(_ room: String) async throws {
        try await withServer { base, app in
            let w = LiveStream.open("\(base)/events")
            try await w.waitForLatest { $0.int("online") == 0 }
            let before = try await TestHTTP.json("\(base)/api/stats")
            let (status, headers, body) = try await TestHTTP.get("\(base)/rooms/\(room)/events?visitor=bad")
            #expect(status == 400)
            #expect(headers.first(name: "content-type")?.hasPrefix("application/json") == true)
            let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            #expect((json?["error"] as? String)?.isEmpty == false)
            let after = try await TestHTTP.json("\(base)/api/stats")
            #expect(after["online"] as? Int == before["online"] as? Int)
            #expect(after["connections"] as? Int == 0)
            #expect(app.registry.roomCount == 0)
            #expect(w.events.filter { !$0.data.isEmpty }.allSatisfy { $0.int("online") == 0 })
            w.close()
        }
    }

    @Test("bad visitor ids and watch values get 400 JSON")
    func badQueryValues() async throws {
        try await withServer { base, app in
            for query in ["visitor=", "visitor=a%20b", "visitor=" + String(repeating: "v", count: 129), "watch=maybe"] {
                let (status, _, body) = try await TestHTTP.get("\(base)/rooms/ok/events?\(query)")
                #expect(status == 400, "\(query)")
                #expect(body.contains("\"error\""), "\(query)")
            }
            #expect(app.registry.roomCount == 0)
        }
    }

    @Test("/api/sse keeps the original contract: headers, retry and exactly {\"onlineUsers\":N}")
    func legacyContract() async throws {
        try await withServer { base, _ in
            let a = LiveStream.open("\(base)/api/sse")
            let first = try await a.waitForLatest { !$0.data.isEmpty }
            #expect(first.data == #"{"onlineUsers":1}"#)
            #expect(a.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
            #expect(a.headers.first(name: "cache-control") == "no-cache, no-transform")
            #expect(a.headers.first(name: "x-accel-buffering") == "no")
            #expect(a.headers.first(name: "access-control-allow-origin") == "*")
            let b = LiveStream.open("\(base)/api/sse")
            try await a.waitForLatest { $0.data == #"{"onlineUsers":2}"# }
            try await b.waitForLatest { $0.data == #"{"onlineUsers":2}"# }
            // The legacy route is the lobby room.
            let lobby = try await TestHTTP.json("\(base)/api/rooms/lobby")
            #expect(lobby["online"] as? Int == 2)
            // Every event is exactly the original payload, with no id.
            for e in a.events where !e.data.isEmpty {
                #expect(e.data.range(of: #"^\{"onlineUsers":\d+\}$"#, options: .regularExpression) != nil, "\(e.data)")
                #expect(e.id == nil)
            }
            b.close()
            try await a.waitForLatest(timeout: .seconds(1)) { $0.data == #"{"onlineUsers":1}"# }
            a.close()
        }
    }

    @Test("each stream opens with a randomised retry and ids increase with every change")
    func retryAndIds() async throws {
        var c = HeadcountConfiguration.testing()
        c.retryMin = .seconds(1)
        c.retryMax = .seconds(6)
        try await withServer(c) { base, _ in
            var retries: Set<Int> = []
            var streams: [LiveStream] = []
            for i in 0..<8 {
                let s = LiveStream.open("\(base)/rooms/ids/events?visitor=v\(i)")
                streams.append(s)
                try await s.waitForLatest { $0.int("online") != nil }
                let raw = s.rawText
                #expect(raw.hasPrefix("retry: "), "stream must open with retry: \(raw.prefix(40))")
                let retry = Int(raw.dropFirst(7).prefix(while: { $0.isNumber })) ?? -1
                #expect((1000...6000).contains(retry))
                retries.insert(retry)
            }
            #expect(retries.count > 1, "retry should be randomised per connection")
            try await streams[0].waitForLatest { $0.int("online") == 8 }
            let ids = streams[0].events.compactMap { $0.id.flatMap { UInt64($0) } }
            #expect(ids == ids.sorted() && Set(ids).count == ids.count, "ids must increase: \(ids)")
            for s in streams { s.close() }
        }
    }

    @Test("the hc_vid cookie identifies a plain EventSource across reloads")
    func cookieIdentity() async throws {
        try await withServer { base, _ in
            let first = LiveStream.open("\(base)/rooms/cookie/events")
            try await first.waitForLatest { $0.int("online") == 1 }
            let setCookie = try #require(first.headers.first(name: "set-cookie"))
            #expect(setCookie.hasPrefix("hc_vid="))
            let value = String(setCookie.split(separator: ";")[0])
            let second = LiveStream.open("\(base)/rooms/cookie/events", headers: ["Cookie": value])
            try await second.waitForLatest { $0.int("connections") == 2 }
            #expect(second.latest?.int("online") == 1, "the cookie's owner counts once")
            #expect(second.headers.first(name: "set-cookie") == nil)
            first.close()
            second.close()
        }
    }

    @Test("/events streams site totals: distinct visitors across rooms, connections, occupied rooms")
    func siteTotals() async throws {
        try await withServer { base, _ in
            let site = LiveStream.open("\(base)/events")
            try await site.waitForLatest { $0.int("online") == 0 }
            let a = LiveStream.open("\(base)/rooms/r1/events?visitor=same")
            let b = LiveStream.open("\(base)/rooms/r2/events?visitor=same")
            let c = LiveStream.open("\(base)/rooms/r2/events?visitor=other")
            try await site.waitForLatest { $0.int("online") == 2 && $0.int("connections") == 3 && $0.int("rooms") == 2 }
            let stats = try await TestHTTP.json("\(base)/api/stats")
            #expect(stats["online"] as? Int == 2)
            #expect(stats["peakOnline"] as? Int == 2)
            #expect(stats["peakAt"] is String)
            #expect((stats["uptimeSeconds"] as? Double ?? -1) >= 0)
            let rooms = try await TestHTTP.json("\(base)/api/rooms?limit=1")
            let list = try #require(rooms["rooms"] as? [[String: Any]])
            #expect(list.count == 1)
            #expect(list.first?["room"] as? String == "r2")
            for s in [a, b, c, site] { s.close() }
        }
    }

    @Test("a storm of joins is coalesced: a watcher gets far fewer events than joins, ending on the true count")
    func joinStormCoalesced() async throws {
        try await withServer(.testing(updateInterval: .milliseconds(200))) { base, _ in
            let watcher = LiveStream.open("\(base)/rooms/storm/events?watch=1")
            try await watcher.waitForLatest { $0.int("online") == 0 }
            var streams: [LiveStream] = []
            for i in 0..<60 { streams.append(LiveStream.open("\(base)/rooms/storm/events?visitor=s\(i)")) }
            try await watcher.waitForLatest(timeout: .seconds(30)) { $0.int("online") == 60 }
            let events = watcher.events.filter { !$0.data.isEmpty }.count
            #expect(events < 40, "60 joins produced \(events) events")
            for s in streams { s.close() }
            try await watcher.waitForLatest(timeout: .seconds(5)) { $0.int("connections") == 0 }
            watcher.close()
        }
    }

    @Test("heartbeat comments arrive at the configured interval")
    func heartbeats() async throws {
        var c = HeadcountConfiguration.testing()
        c.heartbeat = .milliseconds(100)
        try await withServer(c) { base, _ in
            let s = LiveStream.open("\(base)/rooms/hb/events?watch=1")
            try await eventually("three heartbeats") { s.comments >= 3 }
            #expect(s.rawText.contains(": heartbeat\n\n"))
            s.close()
        }
    }

    @Test("streams leave the registry when clients go: nothing is left behind")
    func nothingLeaks() async throws {
        try await withServer(.testing(leaveGrace: .milliseconds(100))) { base, app in
            var streams: [LiveStream] = []
            for i in 0..<40 {
                streams.append(LiveStream.open("\(base)/rooms/leak\(i % 4)/events?visitor=l\(i)"))
                streams.append(LiveStream.open("\(base)/rooms/leak\(i % 4)/events?watch=1"))
            }
            streams.append(LiveStream.open("\(base)/events"))
            try await eventually("all joined") { app.openStreams == 81 }
            for s in streams { s.close() }
            try await eventually("all left") { app.openStreams == 0 && app.registry.subscriberCount == 0 }
            try await eventually("graces expired, rooms collected") { app.registry.roomCount == 0 }
            // A fresh connection: AsyncHTTPClient's HTTP/2 connection whose 81 streams it cancelled stops
            // answering in this in-process setup (curl and Python's h2 keep using theirs: docs/RELIABILITY.md).
            let fresh = TestHTTP.makeClient()
            let stats = try await TestHTTP.json("\(base)/api/stats", client: fresh)
            try await fresh.shutdown()
            #expect(stats["online"] as? Int == 0)
            #expect(stats["connections"] as? Int == 0)
        }
    }
}
