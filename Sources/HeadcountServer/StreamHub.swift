import HTTPTypes
import HeadcountCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// What the NIO stream path shares: the registry, the configuration, and one `LoopStreams` per event loop.
final class StreamHub: Sendable {
    let registry: PresenceRegistry
    let configuration: HeadcountConfiguration
    let cors: CORSPolicy
    let logger: Logger
    let history: HistoryStore
    let metrics: HeadcountMetrics
    let policy: AccessPolicy
    /// Rejections and drops are logged at info, at most 10 lines a second per reason (the rest counted).
    let logLimiter = LogLimiter(perSecond: 10)
    let startedAt = ContinuousClock.now
    private let loops = Mutex<[ObjectIdentifier: LoopStreams]>([:])
    private let draining = Atomic<Bool>(false)

    /// Whether shutdown has begun: `/readyz` says `draining` and no new stream is accepted from then on.
    var isDraining: Bool { draining.load(ordering: .relaxed) }
    func beginDrain() { draining.store(true, ordering: .relaxed) }

    init(registry: PresenceRegistry, configuration: HeadcountConfiguration, metrics: HeadcountMetrics, logger: Logger) {
        self.metrics = metrics
        self.policy = AccessPolicy(configuration: configuration)
        self.registry = registry
        self.configuration = configuration
        self.cors = CORSPolicy(allowOrigins: configuration.allowOrigins)
        self.logger = logger
        self.history = HistoryStore(capacity: 3600, maxRooms: configuration.historyRooms)
    }

    /// The streams of `eventLoop`, created on first use. Call on that loop.
    func streams(on eventLoop: any EventLoop) -> LoopStreams {
        loops.withLock { loops in
            if let existing = loops[ObjectIdentifier(eventLoop)] { return existing }
            let created = LoopStreams(eventLoop: eventLoop, hub: self)
            loops[ObjectIdentifier(eventLoop)] = created
            return created
        }
    }

    /// Every loop's streams (for tests).
    var allLoopStreams: [LoopStreams] { loops.withLock { Array($0.values) } }

    /// Streams open on every loop.
    var streamCount: Int {
        loops.withLock { $0.values.reduce(0) { $0 + $1.count } }
    }

    /// Streams open on every loop that `transport` carries.
    func streamCount(_ transport: StreamTransport) -> Int {
        loops.withLock { $0.values.reduce(0) { $0 + $1.count(transport) } }
    }

    /// Open streams of each transport.
    var openStreamsByTransport: [StreamTransport: Int] {
        Dictionary(uniqueKeysWithValues: StreamTransport.allCases.map { ($0, streamCount($0)) })
    }

    /// Shutdown, every transport alike: each loop closes its streams spread over `--drain`.
    func drainStreams() {
        let window = configuration.drain.timeAmount
        for loop in allLoopStreams { loop.eventLoop.execute { loop.drain(window: window) } }
    }

    /// The end of the drain window: whatever is still open closes now.
    func closeAllStreams() {
        for loop in allLoopStreams { loop.eventLoop.execute { loop.closeAll() } }
    }

    func randomRetryMilliseconds() -> Int {
        let low = Int(configuration.retryMin.seconds * 1000)
        let high = max(low, Int(configuration.retryMax.seconds * 1000))
        return low + Int(jitter.next() % UInt64(high - low + 1))
    }

    /// Spreads reconnect delays. Not `Int.random`: the system generator costs a `getrandom` system call
    /// per stream, one of the ~20 a connection took in a connect storm.
    let jitter = Jitter()
}

/// CORS decisions shared by the middleware and the NIO stream path.
struct CORSPolicy: Sendable {
    let allowAll: Bool
    let origins: Set<String>

    init(allowOrigins: [String]) {
        self.allowAll = allowOrigins.contains("*")
        self.origins = Set(allowOrigins.filter { $0 != "*" })
    }

    /// Header fields to add for a request from `origin`.
    func fields(origin: String?) -> [(String, String)] {
        if allowAll { return [("Access-Control-Allow-Origin", "*")] }
        if let origin, origins.contains(origin) {
            return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
        }
        return []
    }
}

/// A lock-free SplitMix64 sequence seeded from the system generator: cheap jitter, not for secrets.
final class Jitter: Sendable {
    private let state = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    func next() -> UInt64 {
        var z = state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
