import HeadcountCore
import Logging
import PostgresNIO
public import ServiceLifecycle
import Synchronization

extension PostgresBackplane: Service {
    /// Keeps the node in the cluster until graceful shutdown, then withdraws it (the other nodes drop its
    /// counts at once). Never throws for database trouble: it serves degraded and reconnects with backoff.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.sweepLoop() }
                await self.connectionLoop()
                group.cancelAll()
            }
        }
        await withdraw()
        try? await eventLoopGroup.shutdownGracefully()
    }

    // MARK: Connection lifecycle

    /// Connects, runs a session until the connection fails, waits, and again; until cancelled.
    func connectionLoop() async {
        var failures = 0
        while !Task.isCancelled {
            let raw: PostgresConnection
            if let initial = initialConnection.withLock({ c -> PostgresConnection? in
                defer { c = nil }
                return c
            }) {
                raw = initial
            } else {
                do {
                    raw = try await connect()
                    count { $0.reconnects += 1 }
                } catch {
                    failures += 1
                    if failures == 1 || failures % 10 == 0 {
                        logger.warning(
                            "\(ClusterError.connecting(error, target: url.target)); retrying",
                            metadata: ["headcount.attempts": "\(failures)"]
                        )
                    }
                    await pause(failures: failures)
                    continue
                }
            }
            let connection = ClusterLink(raw)
            current.withLock { $0 = connection }
            var reachedHealthy = false
            do {
                try await session(connection) { reachedHealthy = true }
            } catch {
                if !Task.isCancelled {
                    logger.warning("lost PostgreSQL: \(ClusterError.describe(error))")
                }
            }
            if Task.isCancelled { return }  // keep the connection for the withdrawal
            current.withLock { $0 = nil }
            setDegraded(true)
            await connection.close()
            failures = reachedHealthy ? 1 : failures + 1
            await pause(failures: failures)
        }
    }

    func pause(failures: Int) async {
        let base = configuration.backoff(failures: failures)
        try? await Task.sleep(for: base * Double.random(in: 0.8...1.2))
    }

    /// A new connection, within `connectTimeout` for TCP, TLS and authentication together.
    func connect() async throws -> PostgresConnection {
        let configuration = connectionConfiguration
        let limit = self.configuration.connectTimeout
        let logger = self.logger
        let eventLoop = eventLoopGroup.any()
        return try await withThrowingTaskGroup(of: PostgresConnection?.self) { group in
            group.addTask {
                try await PostgresConnection.connect(on: eventLoop, configuration: configuration, id: 1, logger: logger)
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            if let first { return first }
            while let late = try? await group.next() {
                if let late { try? await late.close() }
            }
            throw ClusterError(.timeout, "PostgreSQL at \(url.target) did not answer within \(limit)")
        }
    }

    /// One connection's life in the cluster: register, listen, rewrite this node's rows, resync, then
    /// publish, fetch, renew and resync until something fails.
    func session(_ connection: ClusterLink, healthy: () -> Void) async throws {
        try await execute(
            connection,
            ClusterSQL.register(node: nodeID, ttl: configuration.nodeTTL / .seconds(1), info: configuration.nodeInfo),
            "register this node"
        )
        let (listening, listeningContinuation) = AsyncStream.makeStream(of: Void.self)
        let (publisherWake, publisherContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let (fetcherWake, fetcherContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        wakeups.withLock {
            $0.publisher = publisherContinuation
            $0.fetcher = fetcherContinuation
        }
        defer {
            wakeups.withLock { $0 = Wakeups() }
            publisherContinuation.finish()
            fetcherContinuation.finish()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { listeningContinuation.finish() }
                try await connection.connection.listen(on: ClusterSQL.channel) { notifications in
                    listeningContinuation.yield()
                    for try await notification in notifications {
                        self.receive(notification.payload)
                    }
                }
                try Task.checkCancellation()
                throw ClusterError(.connectionLost, "the notification stream of PostgreSQL ended")
            }
            var isListening = false
            for await _ in listening {
                isListening = true
                break
            }
            if !isListening {
                try await group.next()
                throw ClusterError(.connectionLost, "LISTEN failed")
            }
            try await publish(connection, replaceAll: true)
            try await pollLeases(connection)
            try await resync(connection)
            setDegraded(false)
            healthy()
            group.addTask { try await self.publishLoop(connection, wake: publisherWake) }
            group.addTask { try await self.fetchLoop(connection, wake: fetcherWake) }
            group.addTask {
                while true {
                    try await Task.sleep(for: self.configuration.leaseRenewal)
                    try await self.pollLeases(connection)
                }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: self.configuration.resyncInterval)
                    try await self.resync(connection)
                }
            }
            try await group.next()
            try Task.checkCancellation()
            throw ClusterError(.connectionLost, "a cluster task ended")
        }
    }

    /// Clean stop: delete this node's registration and rows, and say goodbye.
    func withdraw() async {
        guard let connection = current.withLock({ $0 }), !connection.isClosed else { return }
        let bye = ClusterMessage.pack([.bye(node: nodeID)])[0]
        do {
            try await execute(connection, ClusterSQL.withdraw(node: nodeID, payload: bye), "withdraw this node")
            logger.info("withdrew from the cluster")
        } catch {
            logger.info(
                "could not withdraw from the cluster (\(ClusterError.describe(error))): the other nodes drop this node when its lease runs out"
            )
        }
        await connection.close()
        current.withLock { $0 = nil }
    }

    // MARK: Loops

    /// Drops nodes whose lease ran out (SIGKILL, partition), every `sweepInterval`, connected or not.
    func sweepLoop() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: configuration.sweepInterval) } catch { return }
            let now = time.now
            let changed = state.withLock { $0.expire(now: now) }
            if !changed.isEmpty {
                logger.info("a node's lease ran out: its counts are dropped", metadata: ["headcount.rooms": "\(changed.count)"])
                announce(changed)
            }
        }
    }

    func publishLoop(_ connection: ClusterLink, wake: AsyncStream<Void>) async throws {
        var iterator = wake.makeAsyncIterator()
        while !Task.isCancelled {
            let hasWork = state.withLock { $0.hasPending }
            if !hasWork {
                guard await iterator.next() != nil else { return }
                continue
            }
            try await publish(connection, replaceAll: false)
        }
    }

    func fetchLoop(_ connection: ClusterLink, wake: AsyncStream<Void>) async throws {
        var iterator = wake.makeAsyncIterator()
        while !Task.isCancelled {
            let (rooms, nodes) = state.withLock { $0.takeFetches() }
            if rooms.isEmpty && nodes.isEmpty {
                guard await iterator.next() != nil else { return }
                continue
            }
            var changed: [String] = []
            if !nodes.isEmpty {
                let mark = state.withLock { $0.applySequence }
                let rows = try await fetch(connection, ClusterSQL.fetch(nodes: nodes))
                let now = time.now
                changed += state.withLock { s in
                    var changed: [String] = []
                    for node in nodes {
                        let listing = rows.filter { $0.node == node }.map { (node: $0.node, room: $0.room, version: $0.contribution.version) }
                        changed += s.reconcile(rows: listing, mark: mark, onlyNode: node).changed
                    }
                    for row in rows
                    where s.apply(node: row.node, room: row.room, version: row.contribution.version, contribution: row.contribution, now: now) {
                        changed.append(row.room)
                    }
                    return changed
                }
            }
            if !rooms.isEmpty {
                changed += try await fetchAndApply(connection, rooms)
            }
            if !changed.isEmpty { announce(changed) }
        }
    }
}
