import HeadcountCore
import Logging
import PostgresNIO
import Synchronization

/// The statements of a session, and what is done with their results.
extension PostgresBackplane {
    /// Writes this node's pending changes (or, with `replaceAll`, its whole state) and announces them.
    func publish(_ connection: ClusterLink, replaceAll: Bool) async throws {
        let batch = state.withLock { replaceAll ? $0.takeAll() : $0.takePending() }
        if batch.isEmpty && !replaceAll { return }
        var upserts: [(room: String, contribution: Contribution)] = []
        var removals: [String] = []
        var messages: [ClusterMessage] = []
        for publication in batch {
            switch publication {
            case .upsert(let room, let contribution):
                upserts.append((room, contribution))
                if !replaceAll { messages.append(.announcing(node: nodeID, room: room, contribution)) }
            case .remove(let room, let version):
                removals.append(room)
                if !replaceAll { messages.append(.removed(node: nodeID, room: room, version: version)) }
            }
        }
        if replaceAll { messages = [.hello(node: nodeID)] }
        let payloads = ClusterMessage.pack(messages)
        let query = ClusterSQL.publish(node: nodeID, upserts: upserts, removals: removals, replaceAll: replaceAll, payloads: payloads)
        // On failure, whatever was taken is rewritten whole when the next session starts.
        try await execute(connection, query, "publish this node's counts")
        count { $0.notificationsSent += payloads.count }
    }

    /// Renews this node's lease and learns everyone else's; re-registers if this node was reaped.
    func pollLeases(_ connection: ClusterLink) async throws {
        let mark = state.withLock { $0.applySequence }
        let rows = try await execute(connection, ClusterSQL.lease(node: nodeID, ttl: configuration.nodeTTL / .seconds(1)), "renew this node's lease")
        var leases: [(node: String, remaining: Double)] = []
        var renewed = true
        for row in rows {
            let (node, remaining) = try row.decode((String, Double).self)
            if node.isEmpty { renewed = remaining >= 1 } else { leases.append((node, remaining)) }
        }
        if !renewed {
            logger.warning("this node's registration had lapsed (the database was out of reach for longer than the TTL): registering again")
            try await execute(
                connection,
                ClusterSQL.register(node: nodeID, ttl: configuration.nodeTTL / .seconds(1), info: configuration.nodeInfo),
                "register this node"
            )
            try await publish(connection, replaceAll: true)
        }
        let now = time.now
        let changed = state.withLock { $0.updateLeases(leases, mark: mark, now: now) }
        if !changed.isEmpty { announce(changed) }
    }

    /// Re-reads the versions of every live row, drops what the database no longer has and reads what
    /// changed: repairs notifications missed while away or lost.
    func resync(_ connection: ClusterLink) async throws {
        let mark = state.withLock { $0.applySequence }
        let rows = try await execute(connection, ClusterSQL.listing(node: nodeID), "list the cluster's rows")
        var listing: [(node: String, room: String, version: UInt64)] = []
        listing.reserveCapacity(rows.count)
        for row in rows {
            let (node, room, version) = try row.decode((String, String, Int64).self)
            listing.append((node, room, UInt64(max(0, version))))
        }
        let (stale, removed) = state.withLock { $0.reconcile(rows: listing, mark: mark) }
        var changed = removed
        if !stale.isEmpty {
            changed += try await fetchAndApply(connection, stale)
        }
        if !changed.isEmpty {
            logger.debug("resync repaired rooms", metadata: ["headcount.rooms": "\(Set(changed).count)"])
            announce(changed)
        }
    }

    func fetchAndApply(_ connection: ClusterLink, _ keys: [ClusterState.RoomKey]) async throws -> [String] {
        var changed: [String] = []
        var start = 0
        while start < keys.count {
            let chunk = Array(keys[start..<min(keys.count, start + 500)])
            start += 500
            let rows = try await fetch(connection, ClusterSQL.fetch(chunk))
            let now = time.now
            changed += state.withLock { s in
                rows.compactMap { row in
                    s.apply(node: row.node, room: row.room, version: row.contribution.version, contribution: row.contribution, now: now)
                        ? row.room : nil
                }
            }
        }
        return changed
    }

    struct FetchedRow {
        var node: String
        var room: String
        var contribution: Contribution
    }

    func fetch(_ connection: ClusterLink, _ query: PostgresQuery) async throws -> [FetchedRow] {
        let rows = try await execute(connection, query, "read other nodes' counts")
        var result: [FetchedRow] = []
        result.reserveCapacity(rows.count)
        for row in rows {
            let (node, room, version, connections, visitors, kind, data) = try row.decode(
                (String, String, Int64, Int32, Int32, Int16, ByteBuffer).self
            )
            guard
                let contribution = Contribution(
                    version: version,
                    connections: connections,
                    visitors: visitors,
                    kind: kind,
                    data: Array(data.readableBytesView)
                )
            else {
                logger.warning(
                    "ignoring a malformed row of headcount_rooms",
                    metadata: ["headcount.node.remote": "\(node)", "headcount.room": "\(room)"]
                )
                continue
            }
            result.append(FetchedRow(node: node, room: room, contribution: contribution))
        }
        count { $0.rowsFetched += result.count }
        return result
    }

    /// Runs one statement and collects its rows (see `ClusterLink` for deadlines and closed connections).
    @discardableResult
    func execute(_ connection: ClusterLink, _ query: PostgresQuery, _ what: String) async throws -> [PostgresRow] {
        count { $0.statements += 1 }
        do {
            return try await connection.run(query, timeout: configuration.statementTimeout, logger: logger, what: what)
        } catch {
            throw ClusterError.statement(error, what)
        }
    }

    /// Handles one notification payload.
    func receive(_ payload: String) {
        count { $0.notificationsReceived += 1 }
        let messages = ClusterMessage.unpack(payload)
        guard !messages.isEmpty else { return }
        let now = time.now
        let (changed, fetch) = state.withLock { s -> ([String], Bool) in
            var changed: [String] = []
            for message in messages { changed += s.receive(message, now: now) }
            return (changed, s.hasFetches)
        }
        if fetch { wakeups.withLock { _ = $0.fetcher?.yield() } }
        if !changed.isEmpty { announce(changed) }
    }
}
