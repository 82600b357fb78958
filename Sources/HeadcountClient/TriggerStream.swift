import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Synchronization

/// RSS and CPU of the sampled server processes.
struct ServerSampler: Sendable {
    let pids: [Int32]
    var isEmpty: Bool { pids.isEmpty }

    func sample() -> ProcessSample { ProcessStats.sample(pids: pids).total }
    func missing() -> [Int32] { ProcessStats.sample(pids: pids).missing }
}

/// The stream that triggers a Headcount fan-out: connected in advance over the run's transport
/// (`--keepalive`: its ordinary request already answered; HTTP/2: a stream of its own connection,
/// not yet started), its request written at T0.
struct TriggerStream: Sendable {
    /// HTTP/1.1: the connection; HTTP/2: the stream channel.
    let channel: any Channel
    /// HTTP/2: the connection the stream belongs to.
    let connection: (any Channel)?
    let table: ClientTable
    let url: LoopbackURL

    static func prepare(group: any EventLoopGroup, plan: BenchPlan, round k: Int, connectTimeout: Double) async throws -> TriggerStream {
        let url = plan.streamURL(room: plan.fanoutRoom, visitor: plan.triggerVisitorID(round: k))
        let table = ClientTable(count: 1, thresholds: 1)
        let recorder = StreamRecorder.Setup(valueKind: plan.valueKind, base: 0, lastThreshold: -1, readyOnHead: false)
        let timeout = TimeAmount.nanoseconds(Int64(connectTimeout * 1e9))
        let address = try StreamConnector.address(plan.server)
        if plan.transport == .http2 {
            let connection = try await H2Connection.connect(
                group: group, to: address, source: nil, sslContext: try H2Connection.makeSSLContext(), timeout: timeout
            ).get()
            do {
                let stream = try await connection.openStream { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandler(H2StreamHandler(table: table, slot: 0, request: nil, setup: recorder))
                    }
                }.get()
                return TriggerStream(channel: stream, connection: connection.channel, table: table, url: url)
            } catch {
                connection.channel.close(promise: nil)
                throw error
            }
        }
        let loop = group.next()
        let warmupDone = plan.keepaliveURL == nil ? nil : loop.makePromise(of: Void.self)
        let setup = BenchStreamHandler.Setup(request: nil, warmup: plan.keepaliveURL.map(StreamConnector.warmupRequest), recorder: recorder, warmupDone: warmupDone)
        let channel: any Channel
        do {
            channel = try await StreamConnector.connect(
                group: loop, to: address, source: nil, table: table, slot: 0, setup: setup, connectTimeout: timeout
            ).get()
        } catch {
            warmupDone?.fail(error)
            throw error
        }
        if let warmupDone {
            let timer = loop.scheduleTask(in: timeout) { channel.close(promise: nil) }
            defer { timer.cancel() }
            do { try await warmupDone.futureResult.get() } catch {
                channel.close(promise: nil)
                throw error
            }
        }
        return TriggerStream(channel: channel, connection: nil, table: table, url: url)
    }

    func send() {
        if connection != nil {
            channel.writeAndFlush(H2StreamHandler.requestFrame(H2StreamHandler.requestHeaders(url)), promise: nil)
        } else {
            channel.write(HTTPClientRequestPart.head(StreamConnector.request(url)), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
    }

    func describe() -> String {
        let p = table.progress()
        return p.answered == 1 ? "join \(url.pathAndQuery)" : "join \(url.pathAndQuery) not answered (\(table.totals.withLock { $0.errorSamples.keys.joined(separator: ", ") }))"
    }

    func close() {
        table.beginClosing()
        (connection ?? channel).close(promise: nil)
    }
}
