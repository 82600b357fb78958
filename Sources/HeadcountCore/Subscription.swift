/// Who a stream counts as.
public enum VisitorIdentity: Sendable, Hashable {
    /// A visitor who told us who they are (`?visitor=` or the `hc_vid` cookie): several streams count
    /// once, and the visitor stays online for the leave grace after their last stream.
    case identified(String)
    /// A stream that carried no identity: its own visitor, gone as soon as it closes.
    case ephemeral(String)

    public var id: String {
        switch self {
        case .identified(let id), .ephemeral(let id): return id
        }
    }
    var hasGrace: Bool {
        if case .identified = self { return true }
        return false
    }
}

/// What a subscriber receives.
public enum SubscriptionTarget: Sendable, Hashable {
    /// A room's counts, in a room or legacy format.
    case room(String, EventFormat)
    /// Site-wide totals.
    case site
}

/// One subscriber's membership in the registry. Returned by `join`, handed back to `leave`.
///
/// Its mutable fields are touched only under the registry's lock.
public final class Subscription: @unchecked Sendable {
    public let id: UInt64
    public let target: SubscriptionTarget
    /// nil for watchers (`?watch=1`, site streams): they receive counts without being counted.
    public let visitor: VisitorIdentity?
    /// Where the registry delivers this subscriber's events; nil when delivery is someone else's job
    /// (a stream whose events reach it through a shared per-event-loop group).
    public let sink: (any EventSink)?
    // The fields below are guarded by the registry's lock, which already makes every access exclusive:
    // `@exclusivity(unchecked)` drops the runtime check that a class's stored property costs (see `Room`).

    /// Position in the room's subscriber array (swap-remove).
    @exclusivity(unchecked) var index: Int = -1
    /// False once left.
    @exclusivity(unchecked) var active: Bool = true
    /// The room joined (nil for the site, and once left).
    @exclusivity(unchecked) var roomState: Room?
    /// The visitor's slot in the registry (`VisitorSlot`) while joined to a room as a counted visitor.
    @exclusivity(unchecked) var visitorSlot: Int = -1
    /// 1 when this subscription is one stream that receives events (itself, or through a relay), 0 for
    /// a relay: what it adds to its room's audience.
    let audience: Int
    /// Whether the visitor stays online for the leave grace after this stream (identified visitors),
    /// kept apart so that a leave need not copy `visitor`.
    let hasGrace: Bool

    init(id: UInt64, target: SubscriptionTarget, visitor: VisitorIdentity?, sink: (any EventSink)?) {
        self.id = id
        self.target = target
        self.visitor = visitor
        self.sink = sink
        self.audience = sink?.isRelay == true ? 0 : 1
        self.hasGrace = visitor?.hasGrace ?? false
    }

    public var room: String? {
        if case .room(let name, _) = target { return name }
        return nil
    }
}

/// Why a join was refused.
public enum JoinRefusal: Error, Sendable, Hashable {
    /// `maxRooms` rooms exist already.
    case tooManyRooms
    /// The registry is shutting down.
    case shuttingDown
}
