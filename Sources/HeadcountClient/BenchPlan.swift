/// What the streams of a run are, derived from the configuration: the same in every process.
public struct BenchPlan: Sendable {
    public let configuration: BenchConfiguration
    public let server: LoopbackURL
    public let target: BenchTarget
    public let transport: BenchTransport
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
        self.transport = configuration.transport
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
            let prefix = basePath
            let route = configuration.legacy ? "\(prefix)/api/sse" : "\(prefix)/rooms/\(roomName)/events"
            let query = visitor.map { "visitor=\($0)" } ?? "watch=1"
            return server.with(pathAndQuery: "\(route)?\(query)")
        }
    }

    /// The ordinary request a `--keepalive` connection makes before its stream (nil for the other
    /// transports). Headcount: under the base URL's path; nchan: the path as given.
    public var keepaliveURL: LoopbackURL? {
        guard transport == .http1Keepalive else { return nil }
        let path = configuration.keepalivePath
        switch target {
        case .nchan: return server.with(pathAndQuery: path)
        case .headcount: return server.with(pathAndQuery: basePath + path)
        }
    }

    /// The Headcount base URL's path without trailing slashes (`""` for the root).
    public var basePath: String {
        var prefix = server.splitQuery.path
        while prefix.hasSuffix("/") { prefix.removeLast() }
        return prefix
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
