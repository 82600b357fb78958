import AsyncHTTPClient
import HeadcountCore
import HeadcountServer
import Logging
import ServiceLifecycle
import Testing

@Suite("Graceful shutdown", .serialized)
struct ShutdownTests {
    @Test("SIGTERM-style shutdown closes every stream and the server returns", arguments: HeadcountConfiguration.StreamShape.allCases)
    func shutdownClosesStreams(_ shape: HeadcountConfiguration.StreamShape) async throws {
        var configuration = HeadcountConfiguration.testing()
        configuration.streamShape = shape
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let logger = Logger(label: "shutdown-test")
        let app = try buildApplication(configuration, logger: logger, onReady: { portSink.yield($0) })
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let base = "http://127.0.0.1:\(port)"
            let streams = (0..<5).map { LiveStream.open("\(base)/rooms/bye/events?visitor=v\($0)") } + [LiveStream.open("\(base)/events")]
            try await streams[0].waitForLatest { $0.int("online") == 5 }
            #expect(app.openStreams == 6)
            let start = ContinuousClock.now
            await group.triggerGracefulShutdown()
            for s in streams { try await s.waitForEnd(timeout: .seconds(10)) }
            try await tasks.waitForAll()
            // Closes are spread over --drain (0.5 s here). The NIO path ends right after; the route shape
            // also waits for Hummingbird to wind down its keep-alive connections (seconds, not minutes).
            #expect(ContinuousClock.now - start < (shape == .nio ? .seconds(4) : .seconds(15)))
            #expect(app.openStreams == 0)
            #expect(app.registry.subscriberCount == 0)
            // New streams are refused once shutting down.
            #expect(app.registry.isShuttingDown)
        }
    }
}
