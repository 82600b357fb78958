public import HeadcountCore
public import Logging
import PostgresNIO
import Synchronization

extension PostgresBackplane {
    /// Validates the URL, connects, creates the tables if missing and reads the cluster's visitor-hash key,
    /// all within `connectTimeout + 2 × statementTimeout`. Blocks the calling thread (start-up only; the
    /// work runs on a NIO event loop, never on the caller's executor).
    ///
    /// - Throws: `ClusterError` with a message fit for an operator: a bad URL, a refused or unreachable
    ///   server (with the server's own words), a timeout, or missing privileges.
    public static func start(configuration: ClusterConfiguration, logger: Logger, time: any TimeSource = SystemTimeSource()) throws
        -> PostgresBackplane
    {
        let url = try PostgresURL(configuration.postgresURL)
        let connectionConfiguration = try url.connectionConfiguration(connectTimeout: configuration.connectTimeout)
        let limit = configuration.connectTimeout + configuration.statementTimeout * 2
        let eventLoopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let eventLoop = eventLoopGroup.any()
        let promise = eventLoop.makePromise(of: Prepared.self)
        let settled = Settled()
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(limit / .nanoseconds(1)))) {
            if settled.settle() {
                let seconds = Int((limit / .seconds(1)).rounded())
                promise.fail(
                    ClusterError(.timeout, "PostgreSQL at \(url.target) did not answer within \(seconds) s (is something else listening there?)")
                )
            }
        }
        prepare(url: url, configuration: connectionConfiguration, eventLoop: eventLoop, logger: logger).whenComplete { result in
            timer.cancel()
            guard settled.settle() else {
                if case .success(let prepared) = result { let _: EventLoopFuture<Void> = prepared.connection.close() }
                return
            }
            promise.completeWith(result)
        }
        let prepared: Prepared
        do {
            prepared = try promise.futureResult.wait()
        } catch {
            try? eventLoopGroup.syncShutdownGracefully()
            throw ClusterError.connecting(error, target: url.target)
        }
        let nodeID = String(UInt64.random(in: .min ... .max) | (1 << 63), radix: 16)
        let backplane = PostgresBackplane(
            configuration: configuration,
            url: url,
            connectionConfiguration: connectionConfiguration,
            eventLoopGroup: eventLoopGroup,
            nodeID: nodeID,
            hasher: prepared.hasher,
            connection: prepared.connection,
            logger: logger,
            time: time
        )
        backplane.logger.info("joined cluster", metadata: ["headcount.postgres": "\(url.redacted)"])
        return backplane
    }

    struct Prepared: Sendable {
        var connection: PostgresConnection
        var hasher: VisitorHasher
    }

    /// Completes once: whichever of the work and the timer comes first wins.
    final class Settled: Sendable {
        private let done = Atomic<Bool>(false)
        func settle() -> Bool { !done.exchange(true, ordering: .acquiringAndReleasing) }
    }

    static func prepare(url: PostgresURL, configuration: PostgresConnection.Configuration, eventLoop: any EventLoop, logger: Logger)
        -> EventLoopFuture<Prepared>
    {
        PostgresConnection.connect(on: eventLoop, configuration: configuration, id: 1, logger: logger).flatMap { connection in
            migrate(connection, logger: logger)
                .map { Prepared(connection: connection, hasher: $0) }
                .flatMapError { error in
                    connection.close().flatMapThrowing { throw ClusterError.statement(error, "create the cluster tables") }
                }
        }
    }

    /// Creates the tables (under an advisory lock) and reads or creates the visitor-hash key.
    static func migrate(_ connection: PostgresConnection, logger: Logger) -> EventLoopFuture<VisitorHasher> {
        var key = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in key.indices { key[i] = UInt8.random(in: 0...255, using: &rng) }
        let steps: [PostgresQuery] =
            ["BEGIN", ClusterSQL.lockSchema()] + ClusterSQL.schema.map { PostgresQuery(unsafeSQL: $0) } + [
                ClusterSQL.insertKey(ByteBuffer(bytes: key)), "COMMIT",
            ]
        var chain = connection.eventLoop.makeSucceededVoidFuture()
        for step in steps {
            chain = chain.flatMap { connection.query(step, logger: logger).map { _ in } }
        }
        return chain.flatMap {
            connection.query(ClusterSQL.selectKey(), logger: logger)
        }.flatMapThrowing { result in
            guard let row = result.rows.first, let buffer = try? row.decode(ByteBuffer.self),
                let hasher = VisitorHasher(key: Array(buffer.readableBytesView))
            else {
                throw ClusterError(.schema, "headcount_meta holds no valid visitor_hash_key (16 bytes); delete that row to have a new one made")
            }
            return hasher
        }
    }
}
