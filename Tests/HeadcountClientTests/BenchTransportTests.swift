import Foundation
@testable import HeadcountClient
import Testing

@Suite("bench transports: flags, configuration, helpers")
struct BenchTransportTests {
    func configuration(_ url: String = "http://127.0.0.1:8080", _ edit: (inout BenchConfiguration) -> Void) -> BenchConfiguration {
        var c = BenchConfiguration(url: url)
        c.runID = "abc"
        edit(&c)
        return c
    }

    /// The message of the validation error, or nil when the configuration is valid.
    func refusal(_ c: BenchConfiguration) -> String? {
        do {
            _ = try BenchPlan(c)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func transportFollowsTheFlags() throws {
        #expect(configuration { _ in }.transport == .http1)
        #expect(configuration { $0.keepalive = true }.transport == .http1Keepalive)
        #expect(configuration("https://127.0.0.1:8443") { $0.http2 = true }.transport == .http2)
        #expect(BenchTransport.allCases.map(\.rawValue) == ["http1", "http1-keepalive", "http2"])
        #expect(try BenchPlan(configuration { $0.keepalive = true }).transport == .http1Keepalive)
    }

    @Test("each refusal names its flag")
    func refusals() {
        let both = refusal(configuration("https://127.0.0.1:8443") { $0.keepalive = true; $0.http2 = true })
        #expect(both?.contains("--keepalive") == true && both?.contains("--http2") == true)
        #expect(refusal(configuration("http://127.0.0.1:8443") { $0.http2 = true })?.hasPrefix("--http2 requires an https:// URL") == true)
        #expect(refusal(configuration("https://127.0.0.1:8443") { _ in })?.contains("need --http2") == true)
        for bad in [0, -1, 10_001, 1_000_000] {
            #expect(refusal(configuration("https://127.0.0.1:8443") { $0.http2 = true; $0.streamsPerConnection = bad }) == "--streams-per-connection must be 1...10000")
            #expect(refusal(configuration { $0.streamsPerConnection = bad })?.hasPrefix("--streams-per-connection") == true)
        }
        #expect(refusal(configuration("https://127.0.0.1:8443/sub/{room}") {
            $0.http2 = true
            $0.nchanPublish = "https://127.0.0.1:8443/pub/{room}"
        })?.hasPrefix("--nchan-publish") == true)
        #expect(refusal(configuration("https://10.0.0.1:8443") { $0.http2 = true })?.contains("not loopback") == true)
        for path in ["widget.js", "", "/a b", "/x#y"] {
            #expect(refusal(configuration { $0.keepalive = true; $0.keepalivePath = path })?.hasPrefix("--keepalive-path") == true)
        }
    }

    @Test func acceptedBounds() {
        for m in [1, 100, 10_000] {
            #expect(refusal(configuration("https://127.0.0.1:8443") { $0.http2 = true; $0.streamsPerConnection = m }) == nil)
        }
        #expect(refusal(configuration { $0.keepalive = true; $0.keepalivePath = "/api/stats?x=1" }) == nil)
        // nchan over HTTP/2: subscribers on TLS, the publisher on plain http://.
        #expect(refusal(configuration("https://127.0.0.1:8443/sub/{room}") {
            $0.http2 = true
            $0.nchanPublish = "http://127.0.0.1:8080/pub/{room}"
        }) == nil)
    }

    @Test func httpsURLs() throws {
        let url = try LoopbackURL(parsing: "https://127.0.0.1:18443/hc?x=1", allowTLS: true)
        #expect(url.tls && url.port == 18443 && url.pathAndQuery == "/hc?x=1")
        #expect(url.description == "https://127.0.0.1:18443/hc?x=1")
        #expect(url.with(pathAndQuery: "/y").tls)
        let standard = try LoopbackURL(parsing: "https://localhost", allowTLS: true)
        #expect(standard.port == 443 && standard.hostHeader == "localhost")
        #expect(throws: LoopbackURL.ParseError.self) { try LoopbackURL(parsing: "https://127.0.0.1:18443") }
        #expect(throws: LoopbackURL.ParseError.self) { try LoopbackURL(parsing: "https://example.com", allowTLS: true) }
        #expect(try !LoopbackURL(parsing: "http://127.0.0.1:80", allowTLS: true).tls)
    }

    @Test func plans() throws {
        let keep = try BenchPlan(configuration { $0.keepalive = true })
        #expect(keep.keepaliveURL?.pathAndQuery == "/widget.js")
        let prefixed = try BenchPlan(configuration("http://127.0.0.1:8080/hc/") { $0.keepalive = true; $0.keepalivePath = "/w.js" })
        #expect(prefixed.keepaliveURL?.pathAndQuery == "/hc/w.js")
        #expect(prefixed.streamURL(client: 0).pathAndQuery == "/hc/rooms/bench-0/events?visitor=bench-abc-0")
        #expect(try BenchPlan(configuration { _ in }).keepaliveURL == nil)
        let h2 = try BenchPlan(configuration("https://127.0.0.1:18443") { $0.http2 = true; $0.rooms = 2; $0.subscribers = 4 })
        #expect(h2.keepaliveURL == nil)
        let stream = h2.streamURL(client: 3)
        #expect(stream.tls && stream.pathAndQuery == "/rooms/bench-1/events?visitor=bench-abc-3")
        #expect(h2.server.description == "https://127.0.0.1:18443/")
        let nchan = try BenchPlan(configuration("https://127.0.0.1:8443/sub/{room}") {
            $0.http2 = true
            $0.nchanPublish = "http://127.0.0.1:8080/pub/{room}"
        })
        #expect(nchan.streamURL(client: 0).tls && nchan.streamURL(client: 0).pathAndQuery == "/sub/bench-abc-0")
        #expect(nchan.publishURL(room: 0).map { !$0.tls && $0.port == 8080 } == true)
    }

    @Test("worker processes get the new options (the spec is the JSON of the configuration)")
    func workerSpec() throws {
        let c = configuration("https://127.0.0.1:18443") { $0.http2 = true; $0.streamsPerConnection = 37; $0.keepalivePath = "/x.js" }
        let spec = WorkerSpec(configuration: c, worker: 1, workers: 3, threads: 1, lifetimeSeconds: 60)
        let decoded = try JSONDecoder().decode(WorkerSpec.self, from: JSONEncoder().encode(spec))
        #expect(decoded.configuration.http2 && decoded.configuration.streamsPerConnection == 37)
        #expect(decoded.configuration.keepalivePath == "/x.js" && !decoded.configuration.keepalive)
        #expect(decoded.configuration.transport == .http2)
        let k = configuration { $0.keepalive = true }
        #expect(try JSONDecoder().decode(BenchConfiguration.self, from: JSONEncoder().encode(k)).transport == .http1Keepalive)
    }

    @Test func streamsPerConnection() {
        #expect(H2Connections.streamsPerConnection(wanted: 100, serverLimit: 100) == 100)
        #expect(H2Connections.streamsPerConnection(wanted: 500, serverLimit: 100) == 100)
        #expect(H2Connections.streamsPerConnection(wanted: 10, serverLimit: Int.max) == 10)
        #expect(H2Connections.streamsPerConnection(wanted: 10, serverLimit: 0) == 1)
        #expect(H2Connections.connections(streams: 2000, perConnection: 100) == 20)
        #expect(H2Connections.connections(streams: 2001, perConnection: 100) == 21)
        #expect(H2Connections.connections(streams: 0, perConnection: 100) == 0)
        #expect(H2Connections.connections(streams: 5, perConnection: 1) == 5)
    }

    @Test func requestHeaders() throws {
        let url = try LoopbackURL(parsing: "https://127.0.0.1:18443/rooms/r/events?visitor=v", allowTLS: true)
        let fields = H2StreamHandler.requestHeaderFields(url)
        #expect(fields.prefix(4).map(\.name) == [":method", ":scheme", ":authority", ":path"])
        #expect(fields.prefix(4).map(\.value) == ["GET", "https", "127.0.0.1:18443", "/rooms/r/events?visitor=v"])
        #expect(fields.contains { $0 == ("accept", "text/event-stream") })
        #expect(fields.contains { $0 == ("cache-control", "no-cache") })
        #expect(!H2StreamHandler.requestHeaderFields(url, accept: "*/*").contains { $0.name == "cache-control" })
        #expect(fields.allSatisfy { $0.name == $0.name.lowercased() })
    }

    @Test func statusCodes() {
        #expect(H2StreamHandler.statusCode("200") == 200)
        #expect(H2StreamHandler.statusCode("429") == 429)
        #expect(H2StreamHandler.statusCode("103") == 103)
        for bad in [nil, "", "20", "2000", "abc", "099", "600", "+20", " 200"] as [String?] {
            #expect(H2StreamHandler.statusCode(bad) == nil)
        }
    }
}
