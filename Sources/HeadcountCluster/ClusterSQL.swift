import PostgresNIO

/// Every statement a node sends. Tables are UNLOGGED (presence is ephemeral: no WAL, and a crashed
/// server's empty tables are refilled by the nodes as they reconnect), except the visitor-hash key.
enum ClusterSQL {
    /// The notification channel.
    static let channel = "headcount"
    /// Advisory lock taken while creating the tables, so that nodes starting together do not race.
    static let schemaLock: Int64 = 0x4863_436c_7573_7472

    static let schema: [String] = [
        """
        CREATE UNLOGGED TABLE IF NOT EXISTS headcount_nodes (
            node_id text PRIMARY KEY,
            started_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            info text NOT NULL DEFAULT ''
        )
        """,
        """
        CREATE UNLOGGED TABLE IF NOT EXISTS headcount_rooms (
            node_id text NOT NULL,
            room text NOT NULL,
            version bigint NOT NULL,
            connections integer NOT NULL,
            visitors integer NOT NULL,
            kind smallint NOT NULL,
            data bytea NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (node_id, room)
        ) WITH (fillfactor = 70)
        """,
        """
        CREATE TABLE IF NOT EXISTS headcount_meta (
            key text PRIMARY KEY,
            value bytea NOT NULL
        )
        """,
    ]

    static func lockSchema() -> PostgresQuery { "SELECT pg_advisory_xact_lock(\(schemaLock))" }

    static func insertKey(_ key: ByteBuffer) -> PostgresQuery {
        "INSERT INTO headcount_meta (key, value) VALUES ('visitor_hash_key', \(key)) ON CONFLICT (key) DO NOTHING"
    }

    static func selectKey() -> PostgresQuery { "SELECT value FROM headcount_meta WHERE key = 'visitor_hash_key'" }

    static func register(node: String, ttl: Double, info: String) -> PostgresQuery {
        """
        INSERT INTO headcount_nodes (node_id, started_at, expires_at, info)
        VALUES (\(node), now(), now() + make_interval(secs => \(ttl)), \(info))
        ON CONFLICT (node_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, info = EXCLUDED.info
        """
    }

    /// Renews this node's lease, reaps expired nodes and their rows, and lists the other nodes with the
    /// seconds left on their leases. The last row, with an empty node id, says whether the renewal found
    /// this node's registration (1) or not (0: it was reaped; register and republish).
    static func lease(node: String, ttl: Double) -> PostgresQuery {
        """
        WITH renew AS (
            UPDATE headcount_nodes SET expires_at = now() + make_interval(secs => \(ttl)) WHERE node_id = \(node) RETURNING node_id
        ), reap AS (
            DELETE FROM headcount_nodes WHERE expires_at < now() AND node_id <> \(node) RETURNING node_id
        ), reap_rooms AS (
            DELETE FROM headcount_rooms WHERE node_id IN (SELECT node_id FROM reap)
        )
        SELECT node_id, extract(epoch FROM expires_at - now())::float8 FROM headcount_nodes WHERE node_id <> \(node)
        UNION ALL SELECT '', (SELECT count(*) FROM renew)::float8
        """
    }

    /// Writes a batch of this node's changes and announces them, in one statement (one transaction: the
    /// notifications go out when the rows are visible). With `replaceAll`, every other row of the node is
    /// deleted (a node that reconnects rewrites its whole state).
    static func publish(node: String, upserts: [(room: String, contribution: Contribution)], removals: [String], replaceAll: Bool, payloads: [String])
        -> PostgresQuery
    {
        var binds = PostgresBindings()
        func bind<T: PostgresDynamicTypeEncodable>(_ value: T) -> String {
            binds.append(value)
            return "$\(binds.count)"
        }
        let me = bind(node)
        let rooms = bind(upserts.map(\.room))
        let versions = bind(upserts.map { Int64($0.contribution.version) })
        let connections = bind(upserts.map { Int32(clamping: $0.contribution.connections) })
        let visitors = bind(upserts.map { Int32(clamping: $0.contribution.visitors) })
        let kinds = bind(upserts.map(\.contribution.kind))
        let data = bind(upserts.map { ByteBuffer(bytes: $0.contribution.data) })
        let deletion = replaceAll ? "room <> ALL(\(rooms)::text[])" : "room = ANY(\(bind(removals))::text[])"
        let notes = bind(payloads)
        let sql = """
            WITH up AS (
                INSERT INTO headcount_rooms AS r (node_id, room, version, connections, visitors, kind, data, updated_at)
                SELECT \(me), t.room, t.version, t.connections, t.visitors, t.kind, t.data, now()
                FROM unnest(\(rooms)::text[], \(versions)::int8[], \(connections)::int4[], \(visitors)::int4[], \(kinds)::int2[], \(data)::bytea[])
                    AS t(room, version, connections, visitors, kind, data)
                ON CONFLICT (node_id, room) DO UPDATE SET
                    version = EXCLUDED.version, connections = EXCLUDED.connections, visitors = EXCLUDED.visitors,
                    kind = EXCLUDED.kind, data = EXCLUDED.data, updated_at = EXCLUDED.updated_at
                WHERE r.version < EXCLUDED.version
            ), del AS (
                DELETE FROM headcount_rooms WHERE node_id = \(me) AND \(deletion)
            )
            SELECT pg_notify('\(channel)', p) FROM unnest(\(notes)::text[]) AS p
            """
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    /// Rows of some rooms of some nodes.
    static func fetch(_ keys: [ClusterState.RoomKey]) -> PostgresQuery {
        let nodes = keys.map(\.node)
        let rooms = keys.map(\.room)
        return """
            SELECT node_id, room, version, connections, visitors, kind, data FROM headcount_rooms
            WHERE (node_id, room) IN (SELECT * FROM unnest(\(nodes)::text[], \(rooms)::text[]))
            """
    }

    /// Every row of some nodes.
    static func fetch(nodes: [String]) -> PostgresQuery {
        "SELECT node_id, room, version, connections, visitors, kind, data FROM headcount_rooms WHERE node_id = ANY(\(nodes)::text[])"
    }

    /// Versions of every row of the other live nodes (resync).
    static func listing(node: String) -> PostgresQuery {
        """
        SELECT r.node_id, r.room, r.version FROM headcount_rooms r JOIN headcount_nodes n ON n.node_id = r.node_id
        WHERE r.node_id <> \(node) AND n.expires_at > now()
        """
    }

    /// A clean stop: this node's registration and rows go, and the others hear of it at once.
    static func withdraw(node: String, payload: String) -> PostgresQuery {
        """
        WITH n AS (DELETE FROM headcount_nodes WHERE node_id = \(node)), r AS (DELETE FROM headcount_rooms WHERE node_id = \(node))
        SELECT pg_notify('\(unescaped: channel)', \(payload))
        """
    }
}
