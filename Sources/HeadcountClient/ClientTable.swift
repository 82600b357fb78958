import Synchronization

/// Progress of the streams of one client process (or of all of them, merged).
public struct PoolProgress: Codable, Sendable, Hashable {
    /// Connection attempts started.
    public var attempted = 0
    /// Streams answered with `200 OK`.
    public var answered = 0
    /// Streams that received their first event (nchan: the response head).
    public var ready = 0
    /// Streams that failed before being answered (connect error, HTTP error, early close).
    public var failed = 0
    /// Answered streams that ended before the bench closed them.
    public var closedEarly = 0
    /// Streams closed (channel inactive) after opening.
    public var inactive = 0
    /// For each threshold j (0 = convergence, k = fan-out round k), clients that have seen it.
    public var thresholdSeen: [Int] = []
    /// All connection attempts of the process have been started.
    public var launched = false

    public init(thresholds: Int = 0) {
        thresholdSeen = Array(repeating: 0, count: thresholds)
    }

    /// Attempts neither answered nor failed yet.
    public var pending: Int { attempted - answered - failed }

    public mutating func merge(_ other: PoolProgress) {
        attempted += other.attempted
        answered += other.answered
        ready += other.ready
        failed += other.failed
        closedEarly += other.closedEarly
        inactive += other.inactive
        if thresholdSeen.count < other.thresholdSeen.count {
            thresholdSeen.append(contentsOf: Array(repeating: 0, count: other.thresholdSeen.count - thresholdSeen.count))
        }
        for (j, n) in other.thresholdSeen.enumerated() { thresholdSeen[j] += n }
        launched = launched && other.launched
    }
}

/// Measurements of the streams of one client process. Each stream's slots are written only by its
/// channel's event loop; counters are under a mutex (touched a few times per stream, not per event).
final class ClientTable: @unchecked Sendable {
    struct Totals {
        var progress: PoolProgress
        var events = 0
        var bytes = 0
        var comments = 0
        var errorSamples: [String: Int] = [:]
        var closing = false
    }

    let count: Int
    /// Thresholds per client: 0 (convergence) ... fanoutRounds.
    let thresholds: Int
    private let seen: UnsafeMutablePointer<Int64>
    private let ready: UnsafeMutablePointer<Int64>
    let totals: Mutex<Totals>

    init(count: Int, thresholds: Int) {
        self.count = count
        self.thresholds = thresholds
        seen = .allocate(capacity: max(1, count * thresholds))
        seen.initialize(repeating: 0, count: max(1, count * thresholds))
        ready = .allocate(capacity: max(1, count))
        ready.initialize(repeating: 0, count: max(1, count))
        totals = Mutex(Totals(progress: PoolProgress(thresholds: thresholds)))
    }

    deinit {
        seen.deallocate()
        ready.deallocate()
    }

    // MARK: Written from event loops

    func attempted() {
        totals.withLock { $0.progress.attempted += 1 }
    }

    func answered() {
        totals.withLock { $0.progress.answered += 1 }
    }

    func markReady(_ slot: Int, at now: Int64) {
        ready[slot] = now
        totals.withLock { $0.progress.ready += 1 }
    }

    /// Records that `slot` saw thresholds `from..<to` at `now`.
    func markSeen(_ slot: Int, from: Int, to: Int, at now: Int64) {
        guard from < to else { return }
        for j in from..<to { seen[slot * thresholds + j] = now }
        totals.withLock { t in
            for j in from..<to { t.progress.thresholdSeen[j] += 1 }
        }
    }

    func failed(_ reason: String) {
        totals.withLock { t in
            t.progress.failed += 1
            Self.sample(reason, into: &t.errorSamples)
        }
    }

    /// A stream ended: adds its traffic, and counts an early close unless the bench is closing.
    func ended(answeredBefore: Bool, failedBefore: Bool, reason: String?, events: Int, bytes: Int, comments: Int) {
        totals.withLock { t in
            t.events += events
            t.bytes += bytes
            t.comments += comments
            t.progress.inactive += 1
            if failedBefore || t.closing { return }
            if answeredBefore {
                t.progress.closedEarly += 1
                Self.sample(reason ?? "stream closed by the server", into: &t.errorSamples)
            } else {
                t.progress.failed += 1
                Self.sample(reason ?? "closed before the response", into: &t.errorSamples)
            }
        }
    }

    static func sample(_ reason: String, into samples: inout [String: Int]) {
        if samples[reason] != nil || samples.count < 12 {
            samples[reason, default: 0] += 1
        } else {
            samples["(other errors)", default: 0] += 1
        }
    }

    // MARK: Read by the coordinator

    func progress() -> PoolProgress { totals.withLock { $0.progress } }

    func beginClosing() { totals.withLock { $0.closing = true } }

    /// Ready time of `slot`, or nil. Safe once the progress shows it (the mutex orders the write).
    func readyTime(_ slot: Int) -> Int64? {
        let v = ready[slot]
        return v == 0 ? nil : v
    }

    func seenTime(_ slot: Int, threshold j: Int) -> Int64? {
        let v = seen[slot * thresholds + j]
        return v == 0 ? nil : v
    }
}

/// A mutex in a class, so closures and threads can share it.
final class Locked<Value: Sendable>: Sendable {
    let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout sending Value) throws -> sending R) rethrows -> sending R {
        try mutex.withLock(body)
    }
}
