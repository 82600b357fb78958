@testable import HeadcountServer
import Logging
import Synchronization
import Testing

/// Collects log lines.
final class CapturedLogs: Sendable {
    let lines = Mutex<[(Logger.Level, String, Logger.Metadata)]>([])
}

struct CapturingHandler: LogHandler {
    let store: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        store.lines.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) }
    }
}

@Suite("Log flood control")
struct LogLimiterTests {
    @Test("10,000 rejections in a second log at most 10 lines per reason, and the next line says how many were suppressed")
    func flood() async throws {
        let store = CapturedLogs()
        let logger = Logger(label: "t") { _ in CapturingHandler(store: store) }
        let limiter = LogLimiter(perSecond: 10)
        let start = ContinuousClock.now
        for _ in 0..<10_000 { limiter.log(logger, level: .info, "request rejected", reason: "bad_request", metadata: [:]) }
        limiter.log(logger, level: .info, "request rejected", reason: "not_found", metadata: [:])
        let elapsed = ContinuousClock.now - start
        let lines = store.lines.withLock { $0 }
        // All in one second (or spanning two): at most 10 per reason per second.
        #expect(lines.count <= (elapsed < .seconds(1) ? 11 : 21))
        #expect(lines.contains { $0.1 == "request rejected" })
        try await Task.sleep(for: .milliseconds(1100))
        limiter.log(logger, level: .info, "request rejected", reason: "bad_request", metadata: [:])
        let last = try #require(store.lines.withLock { $0.last })
        #expect(Int(last.2["headcount.suppressed"]?.description ?? "0") ?? 0 > 9_000)
    }
}
