import Logging
import PostgresNIO
import Synchronization

/// A session's connection and the statements waiting on it.
///
/// Every statement has a deadline (`statementTimeout`): past it the connection is closed, the database
/// treated as gone, and the session replaced. When the connection closes, every waiting statement fails at
/// once: a statement written to a connection that is already closing might otherwise never be answered,
/// and the session would wait forever.
final class ClusterLink: Sendable {
    let connection: PostgresConnection
    private let waiting = Mutex<Waiting>(Waiting())

    private struct Waiting {
        var next: UInt64 = 0
        var closed = false
        var promises: [UInt64: EventLoopPromise<[PostgresRow]>] = [:]
    }

    init(_ connection: PostgresConnection) {
        self.connection = connection
        connection.closeFuture.whenComplete { _ in self.failAll() }
    }

    var isClosed: Bool { connection.isClosed || waiting.withLock { $0.closed } }

    func close() async {
        try? await connection.close()
    }

    /// Runs one statement and collects its rows.
    func run(_ query: PostgresQuery, timeout: Duration, logger: Logger, what: String) async throws -> [PostgresRow] {
        let connection = self.connection
        let promise = connection.eventLoop.makePromise(of: [PostgresRow].self)
        let id: UInt64? = waiting.withLock { w in
            if w.closed { return nil }
            w.next += 1
            w.promises[w.next] = promise
            return w.next
        }
        guard let id else { throw ClusterError(.connectionLost, "the connection was closed") }
        let timer = connection.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout / .nanoseconds(1)))) {
            logger.warning("PostgreSQL did not answer within \(timeout): closing the connection", metadata: ["headcount.statement": "\(what)"])
            promise.fail(ClusterError(.timeout, "PostgreSQL did not answer within \(timeout)"))
            let _: EventLoopFuture<Void> = connection.close()
        }
        defer {
            timer.cancel()
            waiting.withLock { _ = $0.promises.removeValue(forKey: id) }
        }
        connection.query(query, logger: logger).map(\.rows).cascade(to: promise)
        return try await promise.futureResult.get()
    }

    private func failAll() {
        let promises = waiting.withLock { w in
            w.closed = true
            defer { w.promises = [:] }
            return Array(w.promises.values)
        }
        for promise in promises { promise.fail(ClusterError(.connectionLost, "the connection was closed")) }
    }
}
