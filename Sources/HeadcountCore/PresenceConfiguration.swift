/// Tunables of the presence model. Every default is named and documented in the README.
public struct PresenceConfiguration: Sendable {
    /// Default leave grace: an identified visitor whose last stream closed stays online this long.
    public static let defaultLeaveGrace: Duration = .seconds(3)
    /// Default minimum spacing of two events of one room.
    public static let defaultUpdateInterval: Duration = .milliseconds(100)

    /// How long an identified visitor stays online after their last stream closed, so that a reload
    /// never makes the count flicker.
    public var leaveGrace: Duration
    /// Minimum spacing of two events of one room (the first change after a quiet period goes out at once).
    public var updateInterval: Duration
    /// Estimated CPU cost of delivering one event to one subscriber, used to stretch the coalescing
    /// interval of large rooms (see `coalescingInterval(subscribers:)`) until the server has measured the
    /// real cost (`PresenceRegistry.recordFanout`). Zero turns coalescing by size and the budget off.
    public var fanoutCostPerSubscriber: Duration
    /// Share of one core that fan-out may take on average, per room and over all rooms (0 < share ≤ 1).
    public var fanoutCoreShare: Double
    /// Most rooms that may exist at once (rooms with a subscriber or a visitor in grace).
    public var maxRooms: Int
    /// Wall-clock time at start, seconds since 1970: anchors peak times and uptime without a wall clock in Core.
    public var startWallTime: Double
    /// First event id minus one. Seeding it from the wall clock keeps ids increasing across restarts.
    public var initialSequence: UInt64

    public init(
        leaveGrace: Duration = PresenceConfiguration.defaultLeaveGrace,
        updateInterval: Duration = PresenceConfiguration.defaultUpdateInterval,
        fanoutCostPerSubscriber: Duration = .nanoseconds(4_000),
        fanoutCoreShare: Double = 0.25,
        maxRooms: Int = 100_000,
        startWallTime: Double = 0,
        initialSequence: UInt64 = 0
    ) {
        self.leaveGrace = leaveGrace
        self.updateInterval = updateInterval
        self.fanoutCostPerSubscriber = fanoutCostPerSubscriber
        self.fanoutCoreShare = fanoutCoreShare
        self.maxRooms = maxRooms
        self.startWallTime = startWallTime
        self.initialSequence = initialSequence
    }

    /// The global fan-out budget: deliveries per second that all rooms together may use, and the burst
    /// (one second's worth, so that one change to the largest room after a quiet second goes out at once;
    /// a flush may take the bucket below zero, and later flushes wait for the refill). nil when the cost
    /// is zero (no limit).
    ///
    /// Rule: `perSecond = fanoutCoreShare ÷ fanoutCostPerSubscriber`. With the defaults (4 µs, 0.25) that is
    /// 62,500 deliveries a second, however many rooms are busy: 100 rooms of 150 get an event each about
    /// every 240 ms during a storm instead of every 100 ms. A change after a quiet period still goes out
    /// at once while the bucket has tokens.
    public var fanoutBudget: (perSecond: Double, burst: Double)? { fanoutBudget(cost: fanoutCostPerSubscriber) }

    /// The budget for a measured cost per delivery (nil when coalescing by size is off).
    public func fanoutBudget(cost measured: Duration) -> (perSecond: Double, burst: Double)? {
        guard fanoutCostPerSubscriber > .zero else { return nil }
        let cost = measured.seconds
        guard cost > 0, fanoutCoreShare > 0 else { return nil }
        let perSecond = min(fanoutCoreShare, 1) / cost
        return (perSecond, max(1, perSecond))
    }

    /// The coalescing interval of a room with `subscribers` subscribers.
    ///
    /// Rule: `max(updateInterval, subscribers × fanoutCostPerSubscriber ÷ fanoutCoreShare)`. A room's
    /// fan-out therefore never takes more than `fanoutCoreShare` of a core on average, however fast its
    /// count changes; small rooms keep the plain `updateInterval`.
    public func coalescingInterval(subscribers: Int) -> Duration {
        coalescingInterval(subscribers: subscribers, cost: fanoutCostPerSubscriber)
    }

    /// The coalescing interval for a measured cost per delivery.
    public func coalescingInterval(subscribers: Int, cost: Duration) -> Duration {
        guard fanoutCostPerSubscriber > .zero else { return updateInterval }
        let share = fanoutCoreShare > 0 ? min(fanoutCoreShare, 1) : 1
        let nanoseconds = Double(cost.nanosecondsClamped) * Double(subscribers) / share
        // Clamp to a day so that extreme settings cannot overflow.
        let stretched = Duration.nanoseconds(Int64(min(max(nanoseconds, 0), 86_400e9)))
        return max(updateInterval, stretched)
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let c = components
        let (ns, overflow) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return c.seconds < 0 ? .min : .max }
        return ns &+ c.attoseconds / 1_000_000_000
    }
}
