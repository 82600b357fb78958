/// What kind of server a bench run talks to.
public enum BenchTarget: String, Codable, Sendable {
    /// Headcount: clients count as visitors; a fan-out is triggered by one more visitor joining.
    case headcount
    /// nginx + nchan: clients subscribe to EventSource channels; a fan-out is one published message.
    case nchan
}

/// How the bench's streams reach the server.
public enum BenchTransport: String, Codable, Sendable, CaseIterable {
    /// Each stream is the first request of a fresh plaintext HTTP/1.1 connection.
    case http1
    /// Each connection first makes one ordinary request (`keepalivePath`, read to its end), then asks
    /// for the stream on the same keep-alive connection.
    case http1Keepalive = "http1-keepalive"
    /// Streams multiplexed over TLS connections with ALPN `h2`, `streamsPerConnection` per connection
    /// (fewer when the server's SETTINGS_MAX_CONCURRENT_STREAMS is lower).
    case http2
}

/// Everything `headcount bench` was told. Also the spec handed to worker processes.
public struct BenchConfiguration: Codable, Sendable {
    /// Server URL. Headcount: its base (a path, if any, is used as a prefix). nchan: the subscriber
    /// URL, with `{room}` where the channel id goes (appended when absent).
    public var url: String
    /// nchan publisher URL (`{room}` as above). Setting it selects the nchan target.
    public var nchanPublish: String?
    /// Streams to open.
    public var subscribers: Int = 1000
    /// Rooms the streams are spread over: stream i goes to room `i mod rooms`.
    public var rooms: Int = 1
    /// A single room name (instead of `{prefix}-{i mod rooms}`).
    public var room: String?
    /// Room name prefix; nil means `bench` for Headcount and `bench-{runID}` for nchan (fresh channels).
    public var roomPrefix: String?
    /// Use the original `/api/sse` route (room `lobby`, `{"onlineUsers":N}`).
    public var legacy: Bool = false
    /// Open watch-only streams (`?watch=1`): they receive counts but are not counted.
    public var watch: Bool = false
    /// New streams per second over the whole run; nil: as fast as `maxPending` allows.
    public var rate: Double?
    /// Source addresses 127.0.0.1 ... 127.0.0.K; client i binds to 127.0.0.(1 + i mod K).
    public var sourceAddresses: Int = 1
    /// Client processes (1: everything in this process).
    public var processes: Int = 1
    /// Event-loop threads per client process (0: cores ÷ processes, at least 1).
    public var threads: Int = 0
    /// Most streams opened but not yet answered, over the whole run. Keep it below the server's
    /// listen backlog (Hummingbird: 256), or a full accept queue drops SYNs and a connect costs a
    /// one-second retransmit.
    public var maxPending: Int = 200
    /// Fan-out measurements after convergence.
    public var fanoutRounds: Int = 5
    /// Quiet seconds before each fan-out (lets the room's coalescing window pass).
    public var fanoutGap: Double = 1.0
    /// Longest wait for one fan-out to reach every client.
    public var roundTimeout: Double = 15
    /// Idle seconds after convergence before reading the server's RSS.
    public var settleSeconds: Double = 2
    /// Window over which the idle CPU is measured.
    public var idleSeconds: Double = 5
    /// Whole-run bound in seconds.
    public var timeout: Double = 120
    /// TCP connect timeout per stream, seconds.
    public var connectTimeout: Double = 10
    /// Longest wait for the server to be idle before starting (Headcount: no visitor online).
    public var quietTimeout: Double = 15
    /// Server processes to sample (RSS, CPU).
    public var serverPIDs: [Int32] = []
    /// Sample the children of `serverPIDs` instead of the processes themselves (nginx workers).
    public var serverChildren: Bool = false
    /// Identifies this run in visitor ids (`bench-{runID}-{i}`).
    public var runID: String = ""
    /// `--keepalive`: an ordinary request first, then the stream, on the same connection.
    public var keepalive: Bool = false
    /// The ordinary request of `--keepalive` (Headcount: under the base URL's path).
    public var keepalivePath: String = "/widget.js"
    /// `--http2`: streams over TLS connections with ALPN h2 (needs an `https://` URL).
    public var http2: Bool = false
    /// HTTP/2 streams per connection (at most the server's SETTINGS_MAX_CONCURRENT_STREAMS).
    public var streamsPerConnection: Int = 100

    public init(url: String) {
        self.url = url
    }

    public var target: BenchTarget { nchanPublish == nil ? .headcount : .nchan }

    public var transport: BenchTransport { http2 ? .http2 : (keepalive ? .http1Keepalive : .http1) }

    /// Checks ranges and URLs; returns the parsed server URL.
    public func validate() throws(BenchError) -> LoopbackURL {
        if keepalive && http2 { throw BenchError("--keepalive and --http2 cannot be combined (an HTTP/2 connection already carries many streams)") }
        guard (1...10_000).contains(streamsPerConnection) else { throw BenchError("--streams-per-connection must be 1...10000") }
        let https = url.trimmingSpaces.lowercased().hasPrefix("https://")
        if http2 {
            // nchan: the subscriber streams use HTTP/2; the publisher (--nchan-publish) stays plain http://.
            guard https else { throw BenchError("--http2 requires an https:// URL (TLS with ALPN h2), not \(url)") }
        } else if https {
            throw BenchError("\(url): https:// URLs need --http2 (the HTTP/1.1 transports are plaintext)")
        }
        if keepalive && !Self.isValidPath(keepalivePath) {
            throw BenchError("--keepalive-path must be an absolute path such as /widget.js")
        }
        let parsed: LoopbackURL
        do { parsed = try LoopbackURL(parsing: url, allowTLS: http2) } catch { throw BenchError(error.description) }
        if let nchanPublish {
            do { _ = try LoopbackURL(parsing: nchanPublish) } catch { throw BenchError("--nchan-publish: \(error.description)") }
            if legacy || watch { throw BenchError("--legacy and --watch apply to Headcount, not to nchan") }
        }
        guard subscribers >= 1 && subscribers <= 1_000_000 else { throw BenchError("--subscribers must be 1...1000000") }
        guard rooms >= 1 && rooms <= subscribers else { throw BenchError("--rooms must be 1...subscribers") }
        if room != nil && rooms != 1 { throw BenchError("--room and --rooms cannot be combined") }
        if legacy && (room != nil || rooms != 1) { throw BenchError("--legacy uses the single room `lobby`") }
        if let rate, !(rate > 0) { throw BenchError("--rate must be above zero") }
        guard (1...254).contains(sourceAddresses) else { throw BenchError("--source-addresses must be 1...254") }
        guard (1...64).contains(processes) else { throw BenchError("--processes must be 1...64") }
        guard processes <= subscribers else { throw BenchError("--processes must not exceed --subscribers") }
        guard (0...64).contains(threads) else { throw BenchError("--threads must be 0...64") }
        guard maxPending >= 1 else { throw BenchError("--max-pending must be at least 1") }
        guard (0...1000).contains(fanoutRounds) else { throw BenchError("--fanout-rounds must be 0...1000") }
        guard timeout > 0, roundTimeout > 0, fanoutGap >= 0, settleSeconds >= 0, idleSeconds >= 0, connectTimeout > 0, quietTimeout >= 0 else {
            throw BenchError("durations must be positive")
        }
        if let room, !Self.isValidName(room) { throw BenchError("--room may contain only letters, digits and -_.~:") }
        if let roomPrefix, !Self.isValidName(roomPrefix) { throw BenchError("--room-prefix may contain only letters, digits and -_.~:") }
        return parsed
    }

    /// `/` and then printable ASCII without spaces or `#` (a query is allowed).
    static func isValidPath(_ s: String) -> Bool {
        s.hasPrefix("/") && s.utf8.count <= 2000 && s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != 0x23 }
    }

    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 100 && s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E || b == 0x7E || b == 0x3A
        }
    }
}

public struct BenchError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
