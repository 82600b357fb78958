import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Everything a pool reports at the end: counters and raw timestamps (microseconds after the run's
/// epoch, -1 when never reached), so that percentiles can be merged across processes.
public struct PoolResult: Codable, Sendable {
    public var progress: PoolProgress
    public var events = 0
    public var bytes = 0
    public var comments = 0
    public var errorSamples: [String: Int] = [:]
    /// Per client: first event (nchan: response head).
    public var readyMicros: [Int64] = []
    /// Per client: first value at or above its convergence value.
    public var convergedMicros: [Int64] = []
    /// Per fan-out round k (index k-1): per client of the fan-out room, when it saw the new value.
    public var roundMicros: [[Int64]] = []
    /// TCP connections opened for the streams (HTTP/1.1: one per stream).
    public var connections = 0
    /// HTTP/2: the server's SETTINGS_MAX_CONCURRENT_STREAMS (nil: not learnt, or not HTTP/2;
    /// Int.max: the server set no limit).
    public var serverMaxConcurrentStreams: Int?
    /// HTTP/2: streams per connection actually used.
    public var streamsPerConnection: Int?

    public init(progress: PoolProgress) {
        self.progress = progress
    }
}

/// The streams of one process: opens them on a SwiftNIO event loop group (one channel per stream,
/// no task per stream), paced by `rate` and `maxPending`, and closes them all at the end. HTTP/1.1:
/// a connection per stream (`--keepalive`: after one ordinary request on it); HTTP/2: streams
/// multiplexed over `H2Connections`.
public final class LocalClientPool: Sendable {
    let plan: BenchPlan
    let clients: Range<Int>
    let group: any EventLoopGroup
    let table: ClientTable
    let maxPending: Int
    let rate: Double?
    private let channels: Locked<[(any Channel)?]>
    private let launcher: Mutex<Task<Void, Never>?>
    private let h2: Mutex<H2Connections?>

    /// - Parameters:
    ///   - clients: the global indices of this process's streams.
    ///   - maxPending: most unanswered attempts of this process.
    ///   - rate: streams per second of this process (nil: as fast as `maxPending` allows).
    public init(plan: BenchPlan, clients: Range<Int>, group: any EventLoopGroup, maxPending: Int, rate: Double?) {
        self.plan = plan
        self.clients = clients
        self.group = group
        self.maxPending = max(1, maxPending)
        self.rate = rate
        self.table = ClientTable(count: clients.count, thresholds: plan.configuration.fanoutRounds + 1)
        self.channels = Locked(Array(repeating: nil, count: clients.count))
        self.launcher = Mutex(nil)
        self.h2 = Mutex(nil)
    }

    public func progress() -> PoolProgress {
        var p = table.progress()
        p.launched = launcher.withLock { $0 == nil ? false : true } && p.attempted == clients.count
        return p
    }

    /// Starts opening the streams (returns at once). Attempts are spread from `epoch` on.
    public func start(epoch: Int64, deadline: Int64) {
        let task = Task { [self] in
            await launch(epoch: epoch, deadline: deadline)
        }
        launcher.withLock { $0 = task }
    }

    private func launch(epoch: Int64, deadline: Int64) async {
        let connectTimeout = TimeAmount.nanoseconds(Int64(plan.configuration.connectTimeout * 1e9))
        let address: SocketAddress
        let sources: [SocketAddress]?
        var h2: H2Connections?
        do {
            address = try StreamConnector.address(plan.server)
            sources = try StreamConnector.sourceAddresses(plan: plan)
            if plan.transport == .http2 {
                h2 = H2Connections(
                    group: group, address: address, sources: sources, sslContext: try H2Connection.makeSSLContext(),
                    timeout: connectTimeout, streamsPerConnection: plan.configuration.streamsPerConnection
                )
                self.h2.withLock { [h2] in $0 = h2 }
            }
        } catch {
            for _ in clients { table.attempted(); table.failed("setup: \(error)") }
            return
        }
        let warmup = plan.keepaliveURL.map(StreamConnector.warmupRequest)
        for (slot, i) in clients.enumerated() {
            if let rate {
                // Sleep only when more than 2 ms ahead: a timer wakes up late, so sleeping before every
                // stream would fall behind the rate; streams due within 2 ms go out together.
                let due = epoch + Int64(Double(slot) / rate * 1e9)
                let wait = due - MonotonicClock.nanoseconds()
                if wait > 2_000_000 { try? await Task.sleep(for: .nanoseconds(wait)) }
            }
            while table.progress().pending >= maxPending {
                if MonotonicClock.nanoseconds() > deadline || Task.isCancelled { return }
                try? await Task.sleep(for: .microseconds(500))
            }
            if MonotonicClock.nanoseconds() > deadline || Task.isCancelled { return }
            let room = plan.roomIndex(client: i)
            let url = plan.streamURL(client: i)
            let recorder = StreamRecorder.Setup(
                valueKind: plan.valueKind,
                base: plan.convergenceValue(room: room),
                lastThreshold: plan.fanoutThresholds(room: room),
                readyOnHead: plan.target == .nchan
            )
            table.attempted()
            let table = self.table
            let future: EventLoopFuture<any Channel>
            if let h2 {
                let headers = H2StreamHandler.requestHeaders(url)
                future = await h2.openStream { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandler(H2StreamHandler(table: table, slot: slot, request: headers, setup: recorder))
                    }
                }
            } else {
                let setup = BenchStreamHandler.Setup(request: StreamConnector.request(url), warmup: warmup, recorder: recorder)
                future = StreamConnector.connect(
                    group: group, to: address, source: sources.map { $0[i % $0.count] },
                    table: table, slot: slot, setup: setup, connectTimeout: connectTimeout
                )
            }
            let channels = self.channels
            future.whenComplete { result in
                switch result {
                case .success(let channel):
                    let closing = table.totals.withLock { $0.closing }
                    channels.withLock { $0[slot] = channel }
                    if closing { channel.close(promise: nil) }
                case .failure(let error):
                    table.failed("connect: \(StreamConnector.describe(error))")
                }
            }
            // Let the event loops breathe during a storm without a rate.
            if slot % 256 == 255 { await Task.yield() }
        }
    }

    /// Closes every stream and returns the measurements (timestamps relative to `epoch`).
    public func closeAll(epoch: Int64) async -> PoolResult {
        if let task = launcher.withLock({ $0 }) {
            task.cancel()
            await task.value
        }
        table.beginClosing()
        if let h2 = h2.withLock({ $0 }) {
            // Closing the connections ends their streams (no RST_STREAM for each).
            h2.closeAll()
        } else {
            let open = channels.withLock { $0.compactMap { $0 } }
            for channel in open { channel.close(promise: nil) }
        }
        // Wait (bounded) until every opened channel has gone inactive.
        let closeDeadline = MonotonicClock.nanoseconds() + 15_000_000_000
        while MonotonicClock.nanoseconds() < closeDeadline {
            let p = table.progress()
            let connected = channels.withLock { $0.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }
            if p.inactive >= connected { break }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return collect(epoch: epoch)
    }

    func collect(epoch: Int64) -> PoolResult {
        let t = table.totals.withLock { $0 }
        var result = PoolResult(progress: t.progress)
        result.progress.launched = true
        result.events = t.events
        result.bytes = t.bytes
        result.comments = t.comments
        result.errorSamples = t.errorSamples
        if let h2 = h2.withLock({ $0 }) {
            result.connections = h2.connectionCount
            result.serverMaxConcurrentStreams = h2.serverLimit
            result.streamsPerConnection = h2.perConnection
        } else {
            result.connections = t.progress.attempted
        }
        func micros(_ ns: Int64?) -> Int64 { ns.map { ($0 - epoch) / 1000 } ?? -1 }
        result.readyMicros = (0..<clients.count).map { micros(table.readyTime($0)) }
        result.convergedMicros = (0..<clients.count).map { micros(table.seenTime($0, threshold: 0)) }
        let fanoutSlots = clients.enumerated().filter { plan.roomIndex(client: $0.element) == plan.fanoutRoom }.map(\.offset)
        result.roundMicros = (0..<plan.configuration.fanoutRounds).map { k in
            fanoutSlots.map { micros(table.seenTime($0, threshold: k + 1)) }
        }
        return result
    }
}
