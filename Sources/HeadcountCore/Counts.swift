/// The figures of one room at one moment.
public struct RoomCounts: Sendable, Hashable {
    /// The room's name.
    public var room: String
    /// Distinct visitors online (including visitors inside their leave grace).
    public var online: Int
    /// Open, counted streams.
    public var connections: Int
    /// Highest `online` seen since the room came into existence.
    public var peak: Int
    /// Version of the room: increases with every change.
    public var version: UInt64
    /// True when the figures are known to miss part of the cluster (backplane unreachable).
    public var partial: Bool

    public init(room: String, online: Int = 0, connections: Int = 0, peak: Int = 0, version: UInt64 = 0, partial: Bool = false) {
        self.room = room
        self.online = online
        self.connections = connections
        self.peak = peak
        self.version = version
        self.partial = partial
    }
}

/// Site-wide totals.
public struct SiteCounts: Sendable, Hashable {
    /// Distinct visitors across all rooms.
    public var online: Int
    /// Open counted streams across all rooms.
    public var connections: Int
    /// Rooms with at least one visitor online.
    public var rooms: Int
    /// Version of the totals: increases with every change.
    public var version: UInt64
    /// True when the figures are known to miss part of the cluster.
    public var partial: Bool

    public init(online: Int = 0, connections: Int = 0, rooms: Int = 0, version: UInt64 = 0, partial: Bool = false) {
        self.online = online
        self.connections = connections
        self.rooms = rooms
        self.version = version
        self.partial = partial
    }
}

/// Totals plus the history an operator asks `/api/stats` for.
public struct SiteStats: Sendable, Hashable {
    public var counts: SiteCounts
    /// Highest site `online` since start.
    public var peakOnline: Int
    /// Wall-clock time of that peak, in seconds since 1970 (nil before anyone came).
    public var peakAt: Double?
    /// Wall-clock start time, seconds since 1970.
    public var startedAt: Double
    /// Seconds since start.
    public var uptime: Double
    /// Subscribers of all kinds (counted streams, watchers, site watchers).
    public var subscribers: Int
}
