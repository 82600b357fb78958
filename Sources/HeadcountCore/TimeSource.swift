import Synchronization

/// Monotonic time for the presence model, injectable so that grace and coalescing can be tested
/// without sleeping.
public protocol TimeSource: Sendable {
    var now: ContinuousClock.Instant { get }
}

/// The process's continuous clock.
public struct SystemTimeSource: TimeSource {
    public init() {}
    public var now: ContinuousClock.Instant { ContinuousClock.now }
}

/// A clock that moves only when told to; for tests and simulations.
public final class ManualTimeSource: TimeSource {
    private let current: Mutex<ContinuousClock.Instant>

    public init(start: ContinuousClock.Instant = ContinuousClock.now) {
        self.current = Mutex(start)
    }

    public var now: ContinuousClock.Instant { current.withLock { $0 } }

    public func advance(by duration: Duration) {
        current.withLock { $0 = $0.advanced(by: duration) }
    }
}
