import NIOCore
import NIOHTTP1
import NIOPosix
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

    public init(progress: PoolProgress) {
        self.progress = progress
    }
}

/// The streams of one process: opens them on a SwiftNIO event loop group (one channel per stream,
/// no task per stream), paced by `rate` and `maxPending`, and closes them all at the end.
public final class LocalClientPool: Sendable {
    let plan: BenchPlan
    let clients: Range<Int>
    let group: any EventLoopGroup
    let table: ClientTable
    let maxPending: Int
    let rate: Double?
    private let channels: Locked<[(any Channel)?]>
    private let launcher: Mutex<Task<Void, Never>?>

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
        do {
            address = try StreamConnector.address(plan.server)
            sources = try StreamConnector.sourceAddresses(plan: plan)
        } catch {
            for _ in clients { table.attempted(); table.failed("address: \(error)") }
            return
        }
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
            let setup = BenchStreamHandler.Setup(
                request: StreamConnector.request(url),
                valueKind: plan.valueKind,
                base: plan.convergenceValue(room: room),
                lastThreshold: plan.fanoutThresholds(room: room),
                readyOnHead: plan.target == .nchan
            )
            table.attempted()
            let future = StreamConnector.connect(
                group: group, to: address, source: sources.map { $0[i % $0.count] },
                table: table, slot: slot, setup: setup, connectTimeout: connectTimeout
            )
            let table = self.table
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
        let open = channels.withLock { $0.compactMap { $0 } }
        for channel in open { channel.close(promise: nil) }
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

/// Opens one SSE stream: a TCP connection (optionally bound to a source address) with NIOHTTP1's
/// client codec and a `BenchStreamHandler`.
enum StreamConnector {
    static func request(_ url: LoopbackURL) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.pathAndQuery)
        head.headers.add(name: "Host", value: url.hostHeader)
        head.headers.add(name: "Accept", value: "text/event-stream")
        head.headers.add(name: "Cache-Control", value: "no-cache")
        head.headers.add(name: "User-Agent", value: "headcount-bench")
        return head
    }

    /// IP_BIND_ADDRESS_NO_PORT (Linux): a socket bound to an address with port 0 gets its port at
    /// connect time, unique per 4-tuple, instead of reserving one at bind time.
    static let bindAddressNoPort = ChannelOptions.Types.SocketOption(level: .ip, name: NIOBSDSocket.Option(rawValue: 24))

    static func connect(
        group: any EventLoopGroup, to address: SocketAddress, source: SocketAddress?,
        table: ClientTable, slot: Int, setup: BenchStreamHandler.Setup, connectTimeout: TimeAmount
    ) -> EventLoopFuture<any Channel> {
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(BenchStreamHandler(table: table, slot: slot, setup: setup))
                }
            }
        if let source {
            bootstrap = bootstrap.channelOption(bindAddressNoPort, value: 1).bind(to: source)
        }
        return bootstrap.connect(to: address)
    }

    /// The server's address (no resolver: hosts are IP literals or `localhost`).
    static func address(_ url: LoopbackURL) throws -> SocketAddress {
        try SocketAddress(ipAddress: url.connectHost, port: url.port)
    }

    /// 127.0.0.1 ... 127.0.0.K with port 0, or nil for an IPv6 server.
    static func sourceAddresses(plan: BenchPlan) throws -> [SocketAddress]? {
        guard !plan.server.isIPv6 else { return nil }
        return try (0..<plan.configuration.sourceAddresses).map { try SocketAddress(ipAddress: "127.0.0.\(1 + $0)", port: 0) }
    }

    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        return text.count > 160 ? String(text.prefix(160)) + "…" : text
    }
}
