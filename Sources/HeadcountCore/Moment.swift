/// A time on the registry's monotonic clock: nanoseconds since the registry started.
///
/// The registry reads its `TimeSource` once per operation and keeps every time it stores (grace
/// deadlines, last broadcasts, the budget's refill) as a `Moment`. `ContinuousClock.Instant` is a
/// resilient standard-library type: storing it, comparing it or wrapping it in an Optional goes through
/// value-witness calls, which a profile of join+leave showed among its top costs. A plain integer has none.
struct Moment: Comparable, Hashable, Sendable {
    var nanoseconds: Int64

    /// `now` measured from `start` (clamped to the range of `Int64` nanoseconds, about 292 years).
    init(_ now: ContinuousClock.Instant, since start: ContinuousClock.Instant) {
        nanoseconds = (now - start).nanosecondsClamped
    }

    init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// Seconds since the registry started.
    var seconds: Double { Double(nanoseconds) / 1e9 }

    static func < (a: Moment, b: Moment) -> Bool { a.nanoseconds < b.nanoseconds }

    /// The moment `duration` later, saturating (a leave grace of `.seconds(.max)` never expires).
    static func + (a: Moment, duration: Duration) -> Moment {
        let (sum, overflow) = a.nanoseconds.addingReportingOverflow(duration.nanosecondsClamped)
        return Moment(nanoseconds: overflow ? (duration < .zero ? .min : .max) : sum)
    }

    static func - (a: Moment, b: Moment) -> Duration {
        let (difference, overflow) = a.nanoseconds.subtractingReportingOverflow(b.nanoseconds)
        if overflow { return .nanoseconds(a.nanoseconds < b.nanoseconds ? Int64.min : Int64.max) }
        return .nanoseconds(difference)
    }
}
