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
    /// Streams open in the route shape.
    let routeStreams = Atomic<Int>(0)

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

    /// Streams open in either shape (each loop's counter plus the route streams).
    var streamCount: Int {
        loops.withLock { $0.values.reduce(0) { $0 + $1.count.load(ordering: .relaxed) } } + routeStreams.load(ordering: .relaxed)
    }

    func randomRetryMilliseconds() -> Int {
        let low = Int(configuration.retryMin.seconds * 1000)
        let high = max(low, Int(configuration.retryMax.seconds * 1000))
        return Int.random(in: low...high)
    }
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
