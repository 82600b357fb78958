import Logging
import Synchronization

/// Keeps rejection and drop logs readable under floods: per reason, at most `perSecond` lines a second
/// at the given level; the rest are counted and reported once, in the next second's first line.
final class LogLimiter: Sendable {
    let perSecond: Int
    private let state = Mutex<[String: (second: Int64, lines: Int, suppressed: Int)]>([:])

    init(perSecond: Int = 10) {
        self.perSecond = perSecond
    }

    /// Logs unless this reason already logged `perSecond` lines this second.
    func log(_ logger: Logger, level: Logger.Level, _ message: Logger.Message, reason: String, metadata: Logger.Metadata) {
        let second = Self.epoch()
        let (emit, suppressedBefore): (Bool, Int) = state.withLock { s in
            var entry = s[reason] ?? (second, 0, 0)
            var carried = 0
            if entry.second != second {
                carried = entry.suppressed
                entry = (second, 0, 0)
            }
            if entry.lines < perSecond {
                entry.lines += 1
                s[reason] = entry
                return (true, carried)
            }
            entry.suppressed += 1
            s[reason] = entry
            return (false, 0)
        }
        guard emit else { return }
        var metadata = metadata
        if suppressedBefore > 0 { metadata["headcount.suppressed"] = "\(suppressedBefore)" }
        logger.log(level: level, message, metadata: metadata)
    }

    private static let start = ContinuousClock.now
    private static func epoch() -> Int64 { (ContinuousClock.now - start).components.seconds }
}
