import HeapModule

/// The driver of a registry: what runs `tick()` when something is due, and the periodic work
/// (heartbeats, history samples) while the registry is not idle. Set with `PresenceRegistry.setScheduler`.
///
/// The registry owns no timer. `tick()` returns when it next needs to run; between two ticks an operation
/// that creates an earlier deadline (a grace, a held change, a budget wait) calls `schedule(at:)`, and
/// only then: a storm of joins into a room already held calls it at most once. Both methods are called
/// outside the registry's lock, from whatever thread did the operation; they must not block (hop to the
/// driver's own thread or event loop).
public protocol RegistryScheduler: Sendable {
    /// Run `tick()` no later than `deadline` (time since the registry's start, on its clock: compare with
    /// `PresenceRegistry.elapsed`). Earlier than any deadline the registry has given the driver since its last
    /// `tick()`; it may be in the past (run the tick at once).
    func schedule(at deadline: Duration)

    /// The registry was parked (`PresenceRegistry.parkIfIdle()` returned true) and has something again: a
    /// subscriber joined or a remote change arrived. Start the periodic work again. Called once per park.
    func resume()
}

extension State {
    /// The earliest moment `tick()` has something to do: the first grace expiry in the heap (a stale entry
    /// included: that tick then finds nothing) and the first moment a held flush can go out. nil when
    /// nothing is pending. It may be `now` or earlier when something is due already.
    func nextDeadline(configuration: PresenceConfiguration) -> Moment? {
        let grace = graces.min?.deadline
        guard let flush = nextFlushDeadline(configuration: configuration) else { return grace }
        guard let grace else { return flush }
        return min(grace, flush)
    }

    /// The first moment a dirty room or the dirty site can be flushed by `flushDue`, under the same rules:
    /// a room at the end of its (stretched) coalescing interval or, sooner, when its burst ends
    /// (`Room.burstEnded`); the site at the end of its interval; either no earlier than the fan-out budget has
    /// refilled above zero, when it has something to deliver (`spend`).
    ///
    /// Exact as long as the measured fan-out cost does not change; `recordFanout` re-checks the deadline when
    /// it does. Changes after this is computed only delay a room (a later change pushes its burst end back).
    func nextFlushDeadline(configuration: PresenceConfiguration) -> Moment? {
        guard !dirtyRooms.isEmpty || siteDirty else { return nil }
        let cost = fanoutCost(configuration)
        var next: Moment?
        for name in dirtyRooms {
            guard let room = rooms[name], room.dirty else { continue }
            let due = flushDeadline(of: room, cost: cost, configuration: configuration)
            if next.map({ due < $0 }) ?? true { next = due }
        }
        if siteDirty {
            let due = siteFlushDeadline(cost: cost, configuration: configuration)
            if next.map({ due < $0 }) ?? true { next = due }
        }
        return next
    }

    /// When the held change of dirty `room` can go out (see `flushDue`).
    func flushDeadline(of room: Room, cost: Duration, configuration: PresenceConfiguration) -> Moment {
        var due = Moment(offset: .zero)  // no interval to wait for: any time
        if let last = room.lastBroadcast {
            let intervalEnd = last + configuration.coalescingInterval(subscribers: room.audience, cost: cost)
            if let changed = room.lastChange {
                // `burstEnded`: quiet for the plain interval since both the last event and the last change.
                let burstEnd = max(last, changed) + configuration.updateInterval
                due = min(intervalEnd, burstEnd)
            } else {
                due = last  // `burstEnded` is true for a room that never changed
            }
        }
        if let refill = budgetDeadline(deliveries: room.audience, cost: cost, configuration: configuration) { due = max(due, refill) }
        return due
    }

    /// When the dirty site can be flushed (see `flushDue`).
    func siteFlushDeadline(cost: Duration, configuration: PresenceConfiguration) -> Moment {
        var due = Moment(offset: .zero)
        if let last = siteLastBroadcast { due = last + configuration.coalescingInterval(subscribers: siteAudience, cost: cost) }
        if let refill = budgetDeadline(deliveries: siteAudience, cost: cost, configuration: configuration) { due = max(due, refill) }
        return due
    }

    /// The first moment `spend(deliveries)` can succeed, when it cannot now: the bucket is at or below zero
    /// and refills at `perSecond`. nil when nothing stops it (no budget, nothing to deliver, tokens left).
    func budgetDeadline(deliveries: Int, cost: Duration, configuration: PresenceConfiguration) -> Moment? {
        guard deliveries > 0, budgetTokens <= 0, let refilledAt = budgetRefilledAt,
              let budget = configuration.fanoutBudget(cost: cost) else { return nil }
        // `spend` needs budgetTokens + perSecond × elapsed > 0; a microsecond more absorbs rounding.
        let microseconds = (-budgetTokens / budget.perSecond * 1e6).rounded(.up) + 1
        return refilledAt + .microseconds(Int64(min(microseconds, 86_400e6)))
    }

    /// Notes work due at `deadline`. When that is earlier than what the driver will wake for, it becomes the
    /// scheduled deadline and the operation tells the scheduler after releasing the lock (`Work.wake`). Without
    /// a scheduler this is one comparison.
    @inline(__always)
    mutating func due(at deadline: Moment, work: inout Work) {
        guard scheduler != nil else { return }
        if let scheduled = scheduledDeadline, scheduled <= deadline { return }
        scheduledDeadline = deadline
        work.wake = deadline
    }

    /// A held room: its flush deadline may be earlier than the scheduled one.
    mutating func roomHeld(_ room: Room, configuration: PresenceConfiguration, work: inout Work) {
        guard scheduler != nil else { return }
        let deadline = flushDeadline(of: room, cost: fanoutCost(configuration), configuration: configuration)
        due(at: deadline, work: &work)
    }

    /// The held site: its flush deadline may be earlier than the scheduled one.
    mutating func siteHeld(configuration: PresenceConfiguration, work: inout Work) {
        guard scheduler != nil else { return }
        let deadline = siteFlushDeadline(cost: fanoutCost(configuration), configuration: configuration)
        due(at: deadline, work: &work)
    }

    /// The registry has something, and the driver parked: tell it to resume (once).
    @inline(__always)
    mutating func unpark(work: inout Work) {
        guard driverParked else { return }
        driverParked = false
        work.resume = true
    }
}
