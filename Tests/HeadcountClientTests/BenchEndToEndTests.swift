import HeadcountClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The whole bench (connect storm, convergence, fan-out rounds, report) against `FakeServer`.
@Suite("bench end to end", .serialized)
struct BenchEndToEndTests {
    func configuration(port: Int, _ edit: (inout BenchConfiguration) -> Void) -> BenchConfiguration {
        var c = BenchConfiguration(url: "http://127.0.0.1:\(port)")
        c.subscribers = 40
        c.rooms = 2
        c.fanoutRounds = 3
        c.fanoutGap = 0.02
        c.settleSeconds = 0
        c.idleSeconds = 0.6
        c.timeout = 30
        c.roundTimeout = 5
        c.sourceAddresses = 2
        c.serverPIDs = [getpid()]
        edit(&c)
        return c
    }

    @Test("Headcount visitors: every client converges and sees every fan-out")
    func visitors() async throws {
        let server = FakeServer()
        try await server.start()
        let report = try await BenchRunner.run(configuration(port: server.port) { _ in }) { _ in }
        try await server.stop()
        #expect(report.problems == [])
        #expect(report.complete)
        #expect(report.connected == 40)
        #expect(report.convergedClients == 40)
        #expect(report.convergenceSeconds != nil)
        #expect(report.fanoutReceivers == 20)
        #expect(report.fanout.count == 3)
        #expect(report.fanout.allSatisfy { $0.seen == 20 && ($0.latency?.maxMs ?? -1) >= 0 })
        #expect(report.fanoutMedian != nil)
        #expect(report.server?.rssAfterKB != nil)
        #expect(report.server?.idleCPUPercent != nil)
        // Every client got at least its own first event; bytes are counted after de-chunking.
        #expect(report.events >= 40)
        #expect(report.bytes > 0)
    }

    @Test("watch-only streams converge on the first event and see the trigger's join")
    func watchers() async throws {
        let server = FakeServer()
        try await server.start()
        let report = try await BenchRunner.run(configuration(port: server.port) { $0.watch = true; $0.rooms = 1; $0.fanoutRounds = 2 }) { _ in }
        try await server.stop()
        #expect(report.complete, "\(report.problems)")
        #expect(report.fanout.map(\.seen) == [40, 40])
    }

    @Test("nchan mode: published seq=k reaches every subscriber")
    func nchan() async throws {
        let server = FakeServer()
        try await server.start()
        let config = configuration(port: server.port) {
            $0.url = "http://127.0.0.1:\(server.port)/sub/{room}"
            $0.nchanPublish = "http://127.0.0.1:\(server.port)/pub/{room}"
        }
        let report = try await BenchRunner.run(config) { _ in }
        try await server.stop()
        #expect(report.complete, "\(report.problems)")
        #expect(report.target == .nchan)
        #expect(report.fanout.map(\.seen) == [20, 20, 20])
        #expect(report.fanout.allSatisfy { $0.trigger.hasPrefix("POST 201") })
        #expect(report.comments == 40)
    }

    @Test("refused connections are counted, and convergence and fan-out are not claimed")
    func refused() async throws {
        // Nothing listens on this port any more.
        let server = FakeServer()
        try await server.start()
        let port = server.port
        try await server.stop()
        // Headcount mode checks /api/stats first.
        await #expect(throws: BenchError.self) {
            _ = try await BenchRunner.run(configuration(port: port) { $0.quietTimeout = 0 }) { _ in }
        }
        // nchan mode opens the streams straight away: every one fails.
        let report = try await BenchRunner.run(configuration(port: port) {
            $0.url = "http://127.0.0.1:\(port)/sub/{room}"
            $0.nchanPublish = "http://127.0.0.1:\(port)/pub/{room}"
        }) { _ in }
        #expect(!report.complete)
        #expect(report.connectErrors == 40)
        #expect(report.connected == 0)
        #expect(report.convergenceSeconds == nil)
        #expect(report.fanout.isEmpty)
        #expect(report.errors.keys.contains { $0.hasPrefix("connect:") })
    }
}
