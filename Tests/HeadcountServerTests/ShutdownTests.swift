import AsyncHTTPClient
import HeadcountCore
import HeadcountServer
import Logging
import ServiceLifecycle
import Testing

@Suite("Graceful shutdown", .serialized)
struct ShutdownTests {
    @Test("SIGTERM-style shutdown closes every stream and the server returns", arguments: TestTransport.allCases)
    func shutdownClosesStreams(_ transport: TestTransport) async throws {
        var configuration = HeadcountConfiguration.testing()
        if transport == .http2 {
            configuration.tlsCertificate = TestCertificate.files.certificate
            configuration.tlsKey = TestCertificate.files.key
        }
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let logger = Logger(label: "shutdown-test")
        let app = try buildApplication(configuration, logger: logger, onReady: { portSink.yield($0) })
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let base = "\(transport == .http2 ? "https" : "http")://127.0.0.1:\(port)"
            let streams = (0..<5).map { LiveStream.open("\(base)/rooms/bye/events?visitor=v\($0)") } + [LiveStream.open("\(base)/events")]
            try await streams[0].waitForLatest { $0.int("online") == 5 }
            #expect(app.openStreams == 6)
            let start = ContinuousClock.now
            await group.triggerGracefulShutdown()
            for s in streams { try await s.waitForEnd(timeout: .seconds(10)) }
            try await tasks.waitForAll()
            // Closes are spread over --drain (0.5 s here); whatever is left closes a second later.
            #expect(ContinuousClock.now - start < .seconds(4))
            #expect(app.openStreams == 0)
            #expect(app.registry.subscriberCount == 0)
            // New streams are refused once shutting down.
            #expect(app.registry.isShuttingDown)
        }
    }
}
