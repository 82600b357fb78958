/// A time on the registry's monotonic clock: how long after the registry's start.
///
/// The registry reads its `TimeSource` once per operation and keeps every time it stores (grace
/// deadlines, last broadcasts, the budget's refill) as a `Moment`. `ContinuousClock.Instant` is a
/// resilient standard-library type: storing it, comparing it or wrapping it in an Optional goes through
/// value-witness calls, which a profile of join+leave showed among its top costs. `Duration` is a frozen
/// pair of integers, so a `Moment` is stored, compared and added inline.
struct Moment: Comparable, Hashable, Sendable {
    /// Time since the registry started.
    var offset: Duration

    init(_ now: ContinuousClock.Instant, since start: ContinuousClock.Instant) {
        offset = now - start
    }

    init(offset: Duration) { self.offset = offset }

    /// Seconds since the registry started.
    var seconds: Double { offset.seconds }

    static func < (a: Moment, b: Moment) -> Bool { a.offset < b.offset }

    static func + (a: Moment, duration: Duration) -> Moment { Moment(offset: a.offset + duration) }

    static func - (a: Moment, b: Moment) -> Duration { a.offset - b.offset }
}
