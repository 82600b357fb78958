import AsyncHTTPClient
import Foundation
import HeadcountCore
import HeadcountServer
import NIOHTTP1
import Testing

@Suite("Health, history and the buffering self-test", .serialized)
struct OpsTests {
    @Test("/healthz and /readyz answer JSON")
    func health() async throws {
        try await withServer(transports: [.http1]) { base, _ in
            let (hs, _, hb) = try await TestHTTP.get("\(base)/healthz")
            #expect(hs == 200)
            #expect(hb == #"{"status":"ok"}"#)
            let (rs, _, rb) = try await TestHTTP.get("\(base)/readyz")
            #expect(rs == 200)
            #expect(rb == #"{"status":"ready"}"#)
        }
    }

    @Test("/api/history keeps one sample a second for the site and each room")
    func history() async throws {
        try await withServer(transports: [.http1]) { base, _ in
            let a = LiveStream.open("\(base)/rooms/hist/events?visitor=h1")
            let b = LiveStream.open("\(base)/rooms/hist/events?visitor=h2")
            try await a.waitForLatest { $0.int("online") == 2 }
            try await eventually(timeout: .seconds(5), "room history shows 2") {
                let json = try await TestHTTP.json("\(base)/api/history?room=hist&window=60")
                let samples = json["samples"] as? [[Int]] ?? []
                return samples.last?[1] == 2
            }
            let site = try await TestHTTP.json("\(base)/api/history?window=60")
            #expect(site["room"] is NSNull)
            #expect(site["interval"] as? Int == 1)
            let samples = try #require(site["samples"] as? [[Int]])
            #expect(samples.last?[1] == 2)
            let times = samples.map { $0[0] }
            #expect(times == times.sorted())
            for (status, query) in [(400, "window=0"), (400, "window=99999"), (400, "room=bad%20room"), (400, "window=x")] {
                let (s, _, body) = try await TestHTTP.get("\(base)/api/history?\(query)")
                #expect(s == status, "\(query)")
                #expect(body.contains("error"))
            }
            a.close()
            b.close()
        }
    }

    @Test("/selftest/stream sends 30 timestamped events 100 ms apart, then ends")
    func selftest() async throws {
        try await withServer(transports: [.http1]) { base, _ in
            let s = LiveStream.open("\(base)/selftest/stream")
            try await s.waitForEnd(timeout: .seconds(10))
            let events = s.events.filter { $0.int("seq") != nil }
            #expect(events.count == 30)
            #expect(events.map { $0.int("seq")! } == Array(0..<30))
            // Events arrive spread over about 3 s, not in one lump.
            let first = try #require(events.first)
            let last = try #require(events.last)
            let spread = last.at - first.at
            #expect(spread > .milliseconds(2500))
            #expect(s.headers.first(name: "x-accel-buffering") == "no")
        }
    }
}
