import CoreMetrics
import HeadcountCore
import Metrics
import NIOCore
import Prometheus
import Synchronization

/// Why a stream left. Each is a label value of `headcount_leaves_total`.
enum LeaveReason: String, Sendable, CaseIterable {
    case closed
    case writeFailure = "write_failure"
    case deadPeer = "dead_peer"
    case slowReader = "slow_reader"
    case shutdown
}

/// Why a request was refused. Each is a label value of `headcount_requests_rejected_total`.
enum RejectReason: String, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case notFound = "not_found"
    case unauthorized
    case forbidden
    case tooManyStreamsPerIP = "too_many_streams_per_ip"
    case tooManyStreams = "too_many_streams"
    case tooManyRooms = "too_many_rooms"
    case headerTooLarge = "header_too_large"
    case uriTooLong = "uri_too_long"
    case shuttingDown = "shutting_down"
    case other
}

/// Headcount's Prometheus metrics, through swift-metrics with a per-application swift-prometheus
/// registry (no global bootstrap, so tests can run several servers in one process). No room or visitor
/// ids are ever used as labels.
final class HeadcountMetrics: RegistryObserver, Sendable {
    let prometheus = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory

    let joins: CoreMetrics.Counter
    let leaves: [LeaveReason: CoreMetrics.Counter]
    let rejections: [RejectReason: CoreMetrics.Counter]
    let eventsSent: CoreMetrics.Counter
    let bytesSent: CoreMetrics.Counter
    let heartbeats: CoreMetrics.Counter
    let fanoutDuration: CoreMetrics.Timer
    let loopFanoutDuration: CoreMetrics.Timer

    // Scraped from the registry at collection time.
    /// Open streams by what carries them (`transport`: http1, http2).
    let streamsOpen: [StreamTransport: CoreMetrics.Gauge]
    let visitorsOnline: CoreMetrics.Gauge
    let connections: CoreMetrics.Gauge
    let rooms: CoreMetrics.Gauge
    let subscribers: CoreMetrics.Gauge
    let coalesced: CoreMetrics.Counter
    private let lastCoalesced = Mutex(0)
    let uptime: CoreMetrics.Gauge
    /// The cost of one delivery that coalescing uses (measured on the NIO path, else the estimate).
    let fanoutCost: CoreMetrics.Gauge

    static let version = "0.1.0"

    init() {
        var factory = PrometheusMetricsFactory(registry: prometheus)
        let buckets: [Duration] = [
            .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        ]
        factory.defaultDurationHistogramBuckets = buckets
        self.factory = factory
        joins = CoreMetrics.Counter(label: "headcount_joins_total", factory: factory)
        leaves = Dictionary(uniqueKeysWithValues: LeaveReason.allCases.map { ($0, CoreMetrics.Counter(label: "headcount_leaves_total", dimensions: [("reason", $0.rawValue)], factory: factory)) })
        rejections = Dictionary(uniqueKeysWithValues: RejectReason.allCases.map { ($0, CoreMetrics.Counter(label: "headcount_requests_rejected_total", dimensions: [("reason", $0.rawValue)], factory: factory)) })
        eventsSent = CoreMetrics.Counter(label: "headcount_events_sent_total", factory: factory)
        bytesSent = CoreMetrics.Counter(label: "headcount_bytes_sent_total", factory: factory)
        heartbeats = CoreMetrics.Counter(label: "headcount_heartbeats_total", factory: factory)
        fanoutDuration = CoreMetrics.Timer(label: "headcount_fanout_duration_seconds", factory: factory)
        loopFanoutDuration = CoreMetrics.Timer(label: "headcount_loop_fanout_duration_seconds", factory: factory)
        streamsOpen = Dictionary(uniqueKeysWithValues: StreamTransport.allCases.map { ($0, CoreMetrics.Gauge(label: "headcount_streams_open", dimensions: [("transport", $0.rawValue)], factory: factory)) })
        visitorsOnline = CoreMetrics.Gauge(label: "headcount_visitors_online", factory: factory)
        connections = CoreMetrics.Gauge(label: "headcount_connections", factory: factory)
        rooms = CoreMetrics.Gauge(label: "headcount_rooms", factory: factory)
        subscribers = CoreMetrics.Gauge(label: "headcount_subscribers", factory: factory)
        coalesced = CoreMetrics.Counter(label: "headcount_coalesced_updates_total", factory: factory)
        uptime = CoreMetrics.Gauge(label: "headcount_uptime_seconds", factory: factory)
        fanoutCost = CoreMetrics.Gauge(label: "headcount_fanout_cost_per_delivery_seconds", factory: factory)
        CoreMetrics.Gauge(label: "headcount_build_info", dimensions: [("version", Self.version)], factory: factory).record(1)
    }

    func fanout(subscribers: Int, duration: Duration) {
        fanoutDuration.recordNanoseconds(Int64(duration.seconds * 1e9))
    }

    func left(_ reason: LeaveReason) { leaves[reason]?.increment() }
    func rejected(_ reason: RejectReason) { rejections[reason]?.increment() }

    func sent(events: Int, bytes: Int) {
        eventsSent.increment(by: Int64(events))
        bytesSent.increment(by: Int64(events * bytes))
    }

    /// The text exposition, with gauges refreshed from the registry.
    func render(registry: PresenceRegistry, openStreams: [StreamTransport: Int], uptimeSeconds: Double) -> ByteBuffer {
        let site = registry.siteCounts()
        for (transport, gauge) in streamsOpen { gauge.record(openStreams[transport] ?? 0) }
        visitorsOnline.record(site.online)
        connections.record(site.connections)
        rooms.record(registry.roomCount)
        subscribers.record(registry.subscriberCount)
        let total = registry.coalescedChanges
        let delta = lastCoalesced.withLock { last in
            defer { last = max(last, total) }
            return max(0, total - last)
        }
        if delta > 0 { coalesced.increment(by: Int64(delta)) }
        uptime.record(uptimeSeconds)
        fanoutCost.record(registry.fanoutCostPerDelivery.seconds)
        var buffer = ByteBuffer()
        var bytes: [UInt8] = []
        prometheus.emit(into: &bytes)
        buffer.writeBytes(bytes)
        return buffer
    }
}
