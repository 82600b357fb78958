import Foundation
import HeadcountClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `--keepalive` end to end against `FakeServer`: an ordinary request, then the stream, on one connection.
@Suite("bench keep-alive end to end", .serialized)
struct BenchKeepaliveTests {
    func configuration(port: Int, _ edit: (inout BenchConfiguration) -> Void = { _ in }) -> BenchConfiguration {
        var c = BenchConfiguration(url: "http://127.0.0.1:\(port)")
        c.keepalive = true
        c.subscribers = 30
        c.rooms = 2
        c.fanoutRounds = 2
        c.fanoutGap = 0.02
        c.settleSeconds = 0
        c.idleSeconds = 0
        c.timeout = 30
        c.roundTimeout = 5
        edit(&c)
        return c
    }

    @Test("every stream follows its connection's ordinary request; the report names the transport")
    func keepalive() async throws {
        let server = FakeServer()
        try await server.start()
        let report = try await BenchRunner.run(configuration(port: server.port)) { _ in }
        try await server.stop()
        #expect(report.complete, "\(report.problems) \(report.errors)")
        #expect(report.transport == .http1Keepalive)
        #expect(report.keepaliveRequest == "/widget.js")
        #expect(report.connected == 30 && report.convergedClients == 30)
        #expect(report.connections == 30)
        #expect(report.fanout.map(\.seen) == [15, 15])
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        #expect(json.contains("\"transport\":\"http1-keepalive\""))
        #expect(report.table().contains("http1-keepalive"))
    }

    @Test("a failing ordinary request fails the stream, with the reason")
    func missingPath() async throws {
        let server = FakeServer()
        try await server.start()
        let report = try await BenchRunner.run(configuration(port: server.port) { $0.keepalivePath = "/nothing.js" }) { _ in }
        try await server.stop()
        #expect(!report.complete)
        #expect(report.connectErrors == 30)
        #expect(report.errors.keys.contains { $0.hasPrefix("keep-alive request /nothing.js: HTTP 404") })
    }

    @Test("plain runs say http1")
    func plain() async throws {
        let server = FakeServer()
        try await server.start()
        let report = try await BenchRunner.run(configuration(port: server.port) { $0.keepalive = false; $0.subscribers = 4; $0.fanoutRounds = 1 }) { _ in }
        try await server.stop()
        #expect(report.complete, "\(report.problems)")
        #expect(report.transport == .http1)
        #expect(report.keepaliveRequest == nil && report.streamsPerConnection == nil)
        #expect(report.connections == 4)
    }
}
