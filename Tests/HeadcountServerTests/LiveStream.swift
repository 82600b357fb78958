import AsyncHTTPClient
import Foundation
import HeadcountServer
import ServiceLifecycle
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import Testing

/// One SSE event as a test sees it.
struct TestEvent: Sendable {
    var id: String?
    var data: String
    var retry: Int?
    var at: ContinuousClock.Instant

    /// `data` parsed as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any]) ?? [:]
    }
    func int(_ key: String) -> Int? { json[key] as? Int }
}

/// A minimal incremental SSE parser for tests: events, ids, retry, comments.
struct TestSSEParser {
    private var line: [UInt8] = []
    private var data: [String] = []
    private var id: String?
    private var retry: Int?
    private var lastWasCR = false
    var comments = 0

    mutating func feed(_ bytes: some Sequence<UInt8>, emit: (TestEvent) -> Void) {
        for b in bytes {
            if b == UInt8(ascii: "\n") && lastWasCR { lastWasCR = false; continue }
            lastWasCR = b == UInt8(ascii: "\r")
            if b == UInt8(ascii: "\n") || b == UInt8(ascii: "\r") {
                handleLine(emit: emit)
                line.removeAll(keepingCapacity: true)
            } else {
                line.append(b)
            }
        }
    }

    private mutating func handleLine(emit: (TestEvent) -> Void) {
        if line.isEmpty {
            if !data.isEmpty || retry != nil {
                if !data.isEmpty || retry != nil {
                    emit(TestEvent(id: id, data: data.joined(separator: "\n"), retry: retry, at: .now))
                }
            }
            data = []
            retry = nil
            return
        }
        let text = String(decoding: line, as: UTF8.self)
        if text.hasPrefix(":") { comments += 1; return }
        let (field, value): (Substring, Substring)
        if let colon = text.firstIndex(of: ":") {
            field = text[..<colon]
            var v = text[text.index(after: colon)...]
            if v.first == " " { v = v.dropFirst() }
            value = v
        } else {
            field = Substring(text)
            value = ""
        }
        switch field {
        case "data": data.append(String(value))
        case "id": id = String(value)
        case "retry": retry = Int(value)
        default: break
        }
    }
}

/// A live SSE stream read by AsyncHTTPClient in the background. Closing it cancels the request, which
/// closes the socket: the server sees the close as a real browser's would.
final class LiveStream: Sendable {
    struct State {
        var events: [TestEvent] = []
        var status: Int?
        var headers: HTTPHeaders = [:]
        var ended = false
        var comments = 0
        var bytes: [UInt8] = []
    }
    let state = Mutex(State())
    let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    static func open(_ url: String, headers: HTTPHeaders = [:], client: HTTPClient = TestHTTP.client) -> LiveStream {
        let stream = LiveStream()
        let task = Task {
            var request = HTTPClientRequest(url: url)
            request.headers = headers
            do {
                let response = try await client.execute(request, timeout: .seconds(60))
                stream.state.withLock {
                    $0.status = Int(response.status.code)
                    $0.headers = response.headers
                }
                var parser = TestSSEParser()
                for try await chunk in response.body {
                    let bytes = Array(chunk.readableBytesView)
                    var newEvents: [TestEvent] = []
                    parser.feed(bytes) { newEvents.append($0) }
                    let comments = parser.comments
                    stream.state.withLock {
                        $0.events.append(contentsOf: newEvents)
                        $0.comments = comments
                        if $0.bytes.count < 1 << 16 { $0.bytes.append(contentsOf: bytes) }
                    }
                }
            } catch {}
            stream.state.withLock { $0.ended = true }
        }
        stream.task.withLock { $0 = task }
        return stream
    }

    func close() {
        task.withLock { $0?.cancel() }
    }

    var events: [TestEvent] { state.withLock { $0.events } }
    var latest: TestEvent? { state.withLock { $0.events.last(where: { !$0.data.isEmpty }) } }
    var status: Int? { state.withLock { $0.status } }
    var headers: HTTPHeaders { state.withLock { $0.headers } }
    var ended: Bool { state.withLock { $0.ended } }
    var comments: Int { state.withLock { $0.comments } }
    var rawText: String { state.withLock { String(decoding: $0.bytes, as: UTF8.self) } }

    /// Waits until the latest data event satisfies `predicate`; fails the test after `timeout`.
    @discardableResult
    func waitForLatest(
        timeout: Duration = .seconds(5),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ predicate: (TestEvent) -> Bool
    ) async throws -> TestEvent {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let e = latest, predicate(e) { return e }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("timed out; latest event: \(latest?.data ?? "none"), status \(status.map(String.init) ?? "none")", sourceLocation: sourceLocation)
        throw TestTimeout()
    }

    /// Waits until the stream has a status (response head received).
    func waitForStatus(timeout: Duration = .seconds(5)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let s = status { return s }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw TestTimeout()
    }

    /// Waits until the server ended the stream.
    func waitForEnd(timeout: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if ended { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw TestTimeout()
    }
}

struct TestTimeout: Error {}

enum TestHTTP {
    /// One client for all tests with a large per-host pool: each SSE stream holds a connection.
    static let client: HTTPClient = makeClient()

    /// A client of its own (shut it down when done).
    static func makeClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 1000)
        configuration.decompression = .disabled
        // The test server's certificate is self-signed (TestCertificate).
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        configuration.tlsConfiguration = tls
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// GET a URL and return status, headers and body text.
    static func get(_ url: String, headers: HTTPHeaders = [:], client: HTTPClient = client) async throws -> (status: Int, headers: HTTPHeaders, body: String) {
        var request = HTTPClientRequest(url: url)
        request.headers = headers
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 22)
        return (Int(response.status.code), response.headers, String(buffer: body))
    }

    static func json(_ url: String, headers: HTTPHeaders = [:], client: HTTPClient = client) async throws -> [String: Any] {
        let (_, _, body) = try await get(url, headers: headers, client: client)
        return (try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
    }
}

extension HeadcountConfiguration {
    /// A test server: a free port, short intervals.
    static func testing(leaveGrace: Duration = .milliseconds(500), updateInterval: Duration = .milliseconds(50)) -> HeadcountConfiguration {
        var c = HeadcountConfiguration()
        c.port = 0
        c.leaveGrace = leaveGrace
        c.updateInterval = updateInterval
        c.logLevel = .warning
        c.maxStreamsPerIP = 10_000  // every test client is 127.0.0.1; LimitTests checks the limit itself
        c.drain = .milliseconds(500)
        return c
    }
}

/// How a test reaches the server: plaintext HTTP/1.1 (the test client reuses keep-alive connections, so
/// many streams follow ordinary requests on their connection), or HTTPS, where the client negotiates
/// HTTP/2 and multiplexes every request over one connection.
enum TestTransport: String, CaseIterable, Sendable {
    case http1
    case http2
}

/// Runs a live Headcount server for the body and hands it the base URL: once per transport, since every
/// stream must behave the same whatever carries it.
func withServer(
    _ configuration: HeadcountConfiguration = .testing(),
    transports: [TestTransport] = TestTransport.allCases,
    _ body: @Sendable (String, HeadcountApp) async throws -> Void
) async throws {
    for transport in transports {
        var configuration = configuration
        if transport == .http2 {
            configuration.tlsCertificate = TestCertificate.files.certificate
            configuration.tlsKey = TestCertificate.files.key
        }
        var logger = Logger(label: "headcount-test")
        logger.logLevel = configuration.logLevel
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = try buildApplication(configuration, logger: logger, onReady: { portSink.yield($0) })
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TestTimeout() }
            do {
                try await body("\(transport == .http2 ? "https" : "http")://127.0.0.1:\(port)", app)
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

/// Polls until `condition` holds or fails after `timeout`.
func eventually(
    timeout: Duration = .seconds(5),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ what: String = "condition",
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
    throw TestTimeout()
}
