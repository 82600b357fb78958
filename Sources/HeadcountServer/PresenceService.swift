import Foundation
import HeadcountCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Drives the registry by deadline: one tick timer for grace expiry and coalesced flushes, armed for the
/// moment `tick()` says it next has work; one heartbeat timer while the registry has subscribers; one
/// history sample a second while anything is online. No task or timer per subscriber, and none at all
/// while nothing is pending: an idle server with no streams does not wake.
///
/// The timers are NIO one-shot timers on one event loop, not sleeping tasks: an event loop wakes from its
/// own `epoll_wait`, while `Task.sleep` goes through the dispatch timer thread and a thread hand-off per
/// wake-up. The registry asks for an earlier tick through its `RegistryScheduler` hook (`PresenceDriver`).
struct PresenceService: Service {
    let registry: PresenceRegistry
    let history: HistoryStore
    /// The shortest spacing of two ticks: deadlines that fall closer together (a storm's staggered rooms
    /// and graces) are served by one tick, so a storm never ticks more often than the old fixed ticker did.
    let tickInterval: Duration
    let heartbeatInterval: Duration
    let drain: Duration
    let openStreams: @Sendable () -> Int
    let logger: Logger

    func run() async throws {
        let driver = PresenceDriver(
            eventLoop: MultiThreadedEventLoopGroup.singleton.any(),
            registry: registry,
            history: history,
            tickSpacing: tickInterval,
            heartbeatInterval: heartbeatInterval
        )
        driver.start()
        try? await gracefulShutdown()
        // The HTTP server has stopped accepting. Streams on the NIO path hold no task, so the server
        // does not wait for them: give them the drain window to close at their spread-out moments.
        let deadline = ContinuousClock.now + drain + .seconds(1)
        while openStreams() > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        await driver.stop()
        let open = registry.shutdown()
        if !open.isEmpty {
            logger.info("closed remaining streams at shutdown", metadata: ["headcount.streams": "\(open.count)"])
        }
    }
}

/// The registry's scheduler: its timers and their state live on one event loop. The registry calls
/// `schedule(at:)` and `resume()` from any thread; both hop onto the loop.
final class PresenceDriver: RegistryScheduler, @unchecked Sendable {
    let eventLoop: any EventLoop
    let registry: PresenceRegistry
    let history: HistoryStore
    let tickSpacing: Duration
    let heartbeatInterval: Duration

    // Touched only on `eventLoop`.
    private var tickTask: Scheduled<Void>?
    /// Registry time (`PresenceRegistry.elapsed`) the armed tick is for.
    private var tickAt: Duration?
    private var lastTick: Duration?
    private var heartbeatTask: Scheduled<Void>?
    private var sampleTask: Scheduled<Void>?
    /// A sampling cycle is under way: its timer is armed or its sample is being taken.
    private var sampling = false
    private var stopped = false

    init(eventLoop: any EventLoop, registry: PresenceRegistry, history: HistoryStore, tickSpacing: Duration, heartbeatInterval: Duration) {
        self.eventLoop = eventLoop
        self.registry = registry
        self.history = history
        self.tickSpacing = max(.zero, tickSpacing)
        self.heartbeatInterval = heartbeatInterval
    }

    /// Installs the hook and starts: a first tick, sampling (it parks itself once the site is empty), and
    /// heartbeats if anyone is subscribed.
    func start() {
        registry.setScheduler(self)
        eventLoop.execute {
            self.runTick()
            self.resumeOnLoop()
        }
    }

    /// Cancels every timer and removes the hook.
    func stop() async {
        registry.setScheduler(nil)
        try? await eventLoop.submit {
            self.stopped = true
            self.tickTask?.cancel()
            self.heartbeatTask?.cancel()
            self.sampleTask?.cancel()
            self.tickTask = nil
            self.tickAt = nil
            self.heartbeatTask = nil
            self.sampleTask = nil
            self.sampling = false
        }.get()
    }

    // MARK: RegistryScheduler (any thread)

    func schedule(at deadline: Duration) {
        eventLoop.execute { self.armTick(at: deadline) }
    }

    func resume() {
        eventLoop.execute { self.resumeOnLoop() }
    }

    // MARK: On the loop

    /// Arms the tick for `deadline` unless one is armed no later; a later armed tick is replaced.
    private func armTick(at deadline: Duration) {
        guard !stopped else { return }
        var at = deadline
        if let lastTick { at = max(at, lastTick + tickSpacing) }
        if let armed = tickAt, armed <= at { return }
        tickTask?.cancel()
        tickAt = at
        let delay = at - registry.elapsed
        tickTask = eventLoop.scheduleTask(deadline: .now() + Self.timeAmount(delay)) { [self] in
            tickTask = nil
            tickAt = nil
            runTick()
        }
    }

    private func runTick() {
        guard !stopped else { return }
        lastTick = registry.elapsed
        if let next = registry.tick() { armTick(at: next) }
    }

    /// Starts the periodic work that is not running: sampling always (it stops itself when the site is
    /// empty), heartbeats while there are subscribers.
    private func resumeOnLoop() {
        guard !stopped else { return }
        if !sampling {
            sampling = true
            armSample()
        }
        armHeartbeatIfNeeded()
    }

    private func armHeartbeatIfNeeded() {
        guard !stopped, heartbeatTask == nil, registry.subscriberCount > 0 else { return }
        heartbeatTask = eventLoop.scheduleTask(in: Self.timeAmount(heartbeatInterval)) { [self] in
            heartbeatTask = nil
            // Nobody to beat for: stop until a sample (or a resume) sees a subscriber again.
            guard !stopped, registry.subscriberCount > 0 else { return }
            registry.heartbeat()
            armHeartbeatIfNeeded()
        }
    }

    /// One history sample just after the next wall-clock second begins. The sample itself (it sorts every
    /// room) is taken off the event loop, as before, so that a large registry does not hold up its streams.
    private func armSample() {
        let now = Date().timeIntervalSince1970
        let delay = (now.rounded(.down) + 1 - now) + 0.002
        sampleTask = eventLoop.scheduleTask(in: .nanoseconds(Int64(delay * 1e9))) { [self] in
            sampleTask = nil
            guard !stopped else { return }
            Task.detached {
                let site = self.sampleHistory()
                self.eventLoop.execute { self.sampled(site: site) }
            }
        }
    }

    private func sampled(site: Int) {
        guard !stopped else { return }
        // Empty site, nothing local: stop sampling (HistoryStore counts the skipped seconds as zeros)
        // and heartbeats; the registry calls `resume()` when something joins or changes.
        if site == 0, registry.parkIfIdle() {
            sampling = false
            heartbeatTask?.cancel()
            heartbeatTask = nil
            return
        }
        armHeartbeatIfNeeded()
        armSample()
    }

    /// Records the current second's figures; returns the site's online count.
    @discardableResult
    func sampleHistory() -> Int {
        let second = Int64(Date().timeIntervalSince1970.rounded(.down))
        let site = registry.siteCounts().online
        let rooms = registry.busiestRooms(limit: history.maxRooms).map { ($0.room, $0.online) }
        history.record(second: second, site: site, rooms: rooms)
        return site
    }

    /// A non-negative `TimeAmount`, rounded up to the nanosecond (a tick never runs before its deadline).
    static func timeAmount(_ duration: Duration) -> TimeAmount {
        guard duration > .zero else { return .zero }
        let c = duration.components
        let (ns, overflow) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .nanoseconds(.max) }
        return .nanoseconds(ns &+ (c.attoseconds + 999_999_999) / 1_000_000_000)
    }
}
