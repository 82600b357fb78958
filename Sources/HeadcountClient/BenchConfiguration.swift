/// What kind of server a bench run talks to.
public enum BenchTarget: String, Codable, Sendable {
    /// Headcount: clients count as visitors; a fan-out is triggered by one more visitor joining.
    case headcount
    /// nginx + nchan: clients subscribe to EventSource channels; a fan-out is one published message.
    case nchan
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

    public init(url: String) {
        self.url = url
    }

    public var target: BenchTarget { nchanPublish == nil ? .headcount : .nchan }

    /// Checks ranges and URLs; returns the parsed server URL.
    public func validate() throws(BenchError) -> LoopbackURL {
        let parsed: LoopbackURL
        do { parsed = try LoopbackURL(parsing: url) } catch { throw BenchError(error.description) }
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

/// What the streams of a run are, derived from the configuration: the same in every process.
public struct BenchPlan: Sendable {
    public let configuration: BenchConfiguration
    public let server: LoopbackURL
    public let target: BenchTarget
    public let roomCount: Int
    /// Room names by room index.
    public let roomNames: [String]
    /// Streams per room.
    public let roomSizes: [Int]
    /// The fan-out room (index 0).
    public let fanoutRoom: Int = 0

    public init(_ configuration: BenchConfiguration) throws(BenchError) {
        self.configuration = configuration
        self.server = try configuration.validate()
        self.target = configuration.target
        if configuration.legacy {
            roomNames = ["lobby"]
        } else if let room = configuration.room {
            roomNames = [room]
        } else {
            let prefix = configuration.roomPrefix ?? (target == .nchan ? "bench-\(configuration.runID)" : "bench")
            roomNames = (0..<configuration.rooms).map { "\(prefix)-\($0)" }
        }
        let rooms = roomNames.count
        roomCount = rooms
        let n = configuration.subscribers
        roomSizes = (0..<rooms).map { r in n / rooms + (r < n % rooms ? 1 : 0) }
    }

    public func roomIndex(client i: Int) -> Int { i % roomCount }

    /// The value a client of room `r` must see to count as converged (and the base of fan-out
    /// thresholds): the room's online count for counted Headcount streams, else 0.
    public func convergenceValue(room r: Int) -> Int {
        target == .headcount && !configuration.watch ? roomSizes[r] : 0
    }

    /// Fan-out thresholds a client of room `r` waits for (beyond convergence).
    public func fanoutThresholds(room r: Int) -> Int { r == fanoutRoom ? configuration.fanoutRounds : 0 }

    public func visitorID(client i: Int) -> String { "bench-\(configuration.runID)-\(i)" }

    /// Visitor id of the stream that triggers Headcount fan-out round `k` (1-based).
    public func triggerVisitorID(round k: Int) -> String { "bench-\(configuration.runID)-x\(k)" }

    /// The request URL of client `i`'s stream.
    public func streamURL(client i: Int) -> LoopbackURL {
        streamURL(room: roomIndex(client: i), visitor: configuration.watch ? nil : visitorID(client: i))
    }

    /// The request URL of a stream into room `r` for `visitor` (nil: watch-only).
    public func streamURL(room r: Int, visitor: String?) -> LoopbackURL {
        let roomName = roomNames[r]
        switch target {
        case .nchan:
            return server.substitutingRoom(roomName)
        case .headcount:
            var prefix = server.splitQuery.path
            while prefix.hasSuffix("/") { prefix.removeLast() }
            let route = configuration.legacy ? "\(prefix)/api/sse" : "\(prefix)/rooms/\(roomName)/events"
            let query = visitor.map { "visitor=\($0)" } ?? "watch=1"
            return server.with(pathAndQuery: "\(route)?\(query)")
        }
    }

    /// The nchan publisher URL of room `r`.
    public func publishURL(room r: Int) -> LoopbackURL? {
        guard let publish = configuration.nchanPublish, let url = try? LoopbackURL(parsing: publish) else { return nil }
        return url.substitutingRoom(roomNames[r])
    }

    /// How event data is turned into the value compared with the thresholds.
    public var valueKind: ValueKind {
        switch target {
        case .nchan: .sequence
        case .headcount: configuration.legacy ? .onlineUsers : .online
        }
    }

    /// Source address of client i: 127.0.0.(1 + i mod K).
    public func sourceAddress(client i: Int) -> String {
        "127.0.0.\(1 + i % configuration.sourceAddresses)"
    }

    /// The clients of process `w` of `p`: a contiguous slice of 0..<N.
    public func slice(worker w: Int, of p: Int) -> Range<Int> {
        let n = configuration.subscribers
        return (n * w / p)..<(n * (w + 1) / p)
    }
}

/// The number a client extracts from each event.
public enum ValueKind: String, Codable, Sendable {
    /// `"online"` of a room event.
    case online
    /// `"onlineUsers"` of a legacy event.
    case onlineUsers
    /// `seq=N` of a message the bench published to nchan.
    case sequence

    public func value(of data: String) -> Int? {
        switch self {
        case .online: EventValue.jsonInteger("online", in: data)
        case .onlineUsers: EventValue.jsonInteger("onlineUsers", in: data)
        case .sequence: EventValue.sequence(in: data)
        }
    }
}
