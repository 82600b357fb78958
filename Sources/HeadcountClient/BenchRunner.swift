#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Runs a benchmark: connect storm, join-storm convergence, fan-out rounds, idle window; samples
/// the server's RSS and CPU; closes everything and reports. Every wait is bounded by the run's
/// timeout (or a shorter per-phase bound).
public enum BenchRunner {
    public static func run(_ input: BenchConfiguration, log: @escaping @Sendable (String) -> Void) async throws -> BenchReport {
        var config = input
        if config.runID.isEmpty { config.runID = makeRunID() }
        let plan = try BenchPlan(config)
        let n = config.subscribers
        let p = config.processes
        let fdLimit = ProcessStats.raiseOpenFilesLimit()
        let perProcess = (n + p - 1) / p
        let socketsPerProcess = plan.transport == .http2
            ? H2Connections.connections(streams: perProcess, perConnection: config.streamsPerConnection) : perProcess
        if socketsPerProcess + 64 > fdLimit {
            let sockets = plan.transport == .http2 ? H2Connections.connections(streams: n, perConnection: config.streamsPerConnection) : n
            let needed = (sockets + max(1, fdLimit - 64) - 1) / max(1, fdLimit - 64)
            let what = plan.transport == .http2 ? "\(socketsPerProcess) connections" : "\(perProcess) streams"
            throw BenchError("\(what) per process exceed the open-files limit \(fdLimit): use --processes \(needed) or more")
        }
        let threads = config.threads > 0 ? config.threads : max(1, System.coreCount / p)
        let wallStart = Date().timeIntervalSince1970
        let runStart = MonotonicClock.nanoseconds()
        let deadline = runStart + Int64(config.timeout * 1e9)
        var problems: [String] = []
        func remaining() -> Double { Double(deadline - MonotonicClock.nanoseconds()) / 1e9 }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: p == 1 ? threads : 1)
        var pools: [any ClientPool] = []
        var triggers: [TriggerStream] = []
        do {
            // Server processes to sample.
            var pids = config.serverPIDs
            if config.serverChildren {
                pids = config.serverPIDs.flatMap { ProcessStats.children(of: $0) }
                if pids.isEmpty && !config.serverPIDs.isEmpty { problems.append("no child processes of \(config.serverPIDs) to sample") }
            }
            let sampler = ServerSampler(pids: pids)

            if plan.target == .headcount {
                try await waitUntilQuiet(group: group, plan: plan, seconds: min(config.quietTimeout, remaining()), log: log)
            }
            let before = sampler.sample()

            // The streams: in this process, or in worker processes.
            if p == 1 {
                pools = [LocalClientPool(plan: plan, clients: 0..<n, group: group, maxPending: config.maxPending, rate: config.rate)]
            } else {
                let executable = try currentExecutable()
                var workers: [WorkerProcessPool] = []
                for w in 0..<p {
                    let spec = WorkerSpec(configuration: config, worker: w, workers: p, threads: threads, lifetimeSeconds: config.timeout + 60)
                    workers.append(try WorkerProcessPool(executable: executable, spec: spec, clients: plan.slice(worker: w, of: p).count))
                }
                pools = workers
                let readyBy = MonotonicClock.nanoseconds() + 30_000_000_000
                while !workers.allSatisfy(\.isReady) {
                    if let gone = workers.first(where: { $0.isGone }) { throw BenchError(gone.failure ?? "worker exited") }
                    guard MonotonicClock.nanoseconds() < readyBy else { throw BenchError("worker processes did not start within 30 s") }
                    try await Task.sleep(for: .milliseconds(5))
                }
            }

            // The client processes' own CPU, to show how much of each fan-out is the load generator's.
            let clientSampler = ServerSampler(pids: p == 1 ? [getpid()] : pools.compactMap { ($0 as? WorkerProcessPool)?.pid })
            let clientBefore = clientSampler.sample()
            let overflowsBefore = ProcessStats.tcpExtCounter("ListenOverflows")
            let epoch = MonotonicClock.nanoseconds()
            for pool in pools { pool.start(epoch: epoch, deadline: deadline) }
            log("opening \(n) streams" + (p > 1 ? " from \(p) processes" : "") + "…")

            func merged() -> PoolProgress {
                var total = PoolProgress(thresholds: config.fanoutRounds + 1)
                total.launched = true
                for pool in pools { total.merge(pool.progress()) }
                return total
            }
            /// Polls until `done` (true) or a bound / a pool failure (false).
            func waitFor(_ what: String, until limit: Int64, poll: Duration = .milliseconds(2), _ done: (PoolProgress) -> Bool) async -> Bool {
                var lastLog = MonotonicClock.nanoseconds()
                while true {
                    let progress = merged()
                    if done(progress) { return true }
                    let now = MonotonicClock.nanoseconds()
                    if now >= min(limit, deadline) { return false }
                    if let failure = pools.lazy.compactMap(\.failure).first {
                        problems.append(failure)
                        return false
                    }
                    if now - lastLog > 1_000_000_000 {
                        lastLog = now
                        log("\(what): connected \(progress.answered)/\(n), ready \(progress.ready), converged \(progress.thresholdSeen[0]), errors \(progress.failed)")
                    }
                    try? await Task.sleep(for: poll)
                }
            }

            // 1. Connect storm: every stream answered and given its first event (or failed).
            let allReady = await waitFor("connect storm", until: deadline) { $0.ready == n || $0.ready + $0.failed >= n || $0.closedEarly > 0 }
            var progress = merged()
            var healthy = allReady && progress.failed == 0 && progress.closedEarly == 0
            if !allReady { problems.append("timed out with \(progress.ready) of \(n) streams ready") }
            if progress.failed > 0 { problems.append("\(progress.failed) streams failed to open: convergence and fan-out need every stream, so they were not measured") }

            // 2. Join convergence: every client has seen its room's full count.
            var convergedCPU: ProcessSample?
            if healthy {
                let converged = await waitFor("join storm", until: deadline) { $0.thresholdSeen[0] == n || $0.closedEarly > 0 }
                convergedCPU = sampler.sample()
                progress = merged()
                if !converged || progress.thresholdSeen[0] < n {
                    healthy = false
                    problems.append("join storm did not converge: \(progress.thresholdSeen[0]) of \(n) clients saw their room's full count")
                } else {
                    log("converged after \(format(MonotonicClock.seconds(since: epoch), 2)) s")
                }
            }

            // 3. Settle, then read the server's memory.
            var after: ProcessSample?
            if healthy {
                try? await Task.sleep(for: .nanoseconds(Int64(min(config.settleSeconds, max(0, remaining())) * 1e9)))
                after = sampler.sample()
            }

            // 4. Fan-out rounds.
            var rounds: [(round: Int, t0: Int64, cpu: Double?, clientCPU: Double, trigger: String)] = []
            let receivers = plan.roomSizes[plan.fanoutRoom]
            if healthy {
                for k in 1...max(1, config.fanoutRounds) where k <= config.fanoutRounds {
                    guard remaining() > config.fanoutGap + 1 else {
                        problems.append("timeout before fan-out round \(k)")
                        break
                    }
                    try? await Task.sleep(for: .nanoseconds(Int64(config.fanoutGap * 1e9)))
                    let fire: @Sendable () -> Void
                    let describe: @Sendable () async -> String
                    do {
                        (fire, describe) = try await prepareTrigger(group: group, plan: plan, round: k, triggers: &triggers)
                    } catch {
                        problems.append("fan-out \(k): could not prepare the trigger: \(error)")
                        break
                    }
                    let cpu0 = sampler.sample()
                    let clientCPU0 = clientSampler.sample()
                    let t0 = MonotonicClock.nanoseconds()
                    fire()
                    let limit = t0 + Int64(config.roundTimeout * 1e9)
                    let done = await waitFor("fan-out \(k)", until: limit, poll: .milliseconds(1)) { $0.thresholdSeen[k] >= receivers || $0.closedEarly > 0 }
                    let cpu1 = sampler.sample()
                    let clientCPU1 = clientSampler.sample()
                    let triggerText = await describe()
                    rounds.append((k, t0, sampler.isEmpty ? nil : cpu1.cpuSeconds - cpu0.cpuSeconds, clientCPU1.cpuSeconds - clientCPU0.cpuSeconds, triggerText))
                    if !done {
                        problems.append("fan-out \(k): \(merged().thresholdSeen[k]) of \(receivers) clients saw the change within \(format(config.roundTimeout, 0)) s (\(triggerText))")
                        if MonotonicClock.nanoseconds() >= deadline { break }
                    }
                }
            }

            // 5. Idle CPU.
            var idle: (seconds: Double, cpu: Double)?
            if healthy && !sampler.isEmpty && config.idleSeconds > 0 {
                let window = min(config.idleSeconds, max(0, remaining() - 1))
                if window > 0.5 {
                    let a = sampler.sample()
                    let ta = MonotonicClock.nanoseconds()
                    try? await Task.sleep(for: .nanoseconds(Int64(window * 1e9)))
                    let b = sampler.sample()
                    idle = (Double(MonotonicClock.nanoseconds() - ta) / 1e9, b.cpuSeconds - a.cpuSeconds)
                } else {
                    problems.append("no time left for the idle window")
                }
            }
            let end = sampler.sample()
            let clientEnd = clientSampler.sample()
            let overflows = ProcessStats.tcpExtCounter("ListenOverflows").flatMap { after in overflowsBefore.map { after - $0 } }

            // 6. Close everything and collect.
            log("closing \(n) streams…")
            let results = await withTaskGroup(of: (Int, PoolResult?).self) { tasks in
                for (i, pool) in pools.enumerated() {
                    tasks.addTask { (i, await pool.finish(epoch: epoch)) }
                }
                var collected: [PoolResult?] = Array(repeating: nil, count: pools.count)
                for await (i, r) in tasks { collected[i] = r }
                return collected
            }
            for trigger in triggers { trigger.close() }
            triggers.removeAll()
            pools.removeAll()
            try? await group.shutdownGracefully()

            // 7. Report.
            let record = RunRecord(
                plan: plan, threads: threads, openFilesLimit: fdLimit, wallStart: wallStart, runStart: runStart, epoch: epoch,
                sampler: sampler, before: before, after: after, convergedCPU: convergedCPU, end: end,
                rounds: rounds.map { FanoutRecord(round: $0.round, t0: $0.t0, cpu: $0.cpu, clientCPU: $0.clientCPU, trigger: $0.trigger) },
                clientCPUSeconds: clientEnd.cpuSeconds - clientBefore.cpuSeconds,
                listenOverflows: overflows,
                idle: idle, results: results, healthy: healthy, problems: problems
            )
            return record.report()
        } catch {
            // Leave nothing open behind an error.
            for trigger in triggers { trigger.close() }
            for pool in pools { _ = await pool.finish(epoch: runStart) }
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Connects the fan-out trigger of round `k` in advance; returns how to fire it and how to
    /// describe its outcome afterwards.
    static func prepareTrigger(
        group: any EventLoopGroup, plan: BenchPlan, round k: Int, triggers: inout [TriggerStream]
    ) async throws -> (fire: @Sendable () -> Void, describe: @Sendable () async -> String) {
        let config = plan.configuration
        switch plan.target {
        case .headcount:
            let trigger = try await TriggerStream.prepare(group: group, plan: plan, round: k, connectTimeout: config.connectTimeout)
            triggers.append(trigger)
            return ({ trigger.send() }, { trigger.describe() })
        case .nchan:
            guard let url = plan.publishURL(room: plan.fanoutRoom) else { throw BenchError("no publish URL") }
            let prepared = try await SimpleHTTP.prepare(group: group, url: url)
            let message = "seq=\(k) run=\(config.runID)"
            return (
                { prepared.send(method: .POST, url: url, body: message) },
                {
                    do {
                        let response = try await prepared.response(within: 5)
                        return "POST \(response.status)"
                    } catch {
                        return "POST failed: \(error)"
                    }
                }
            )
        }
    }

    static func makeRunID() -> String {
        var rng = SystemRandomNumberGenerator()
        let v = rng.next() as UInt32
        let hex = String(v, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The path of this executable (worker processes re-execute it).
    static func currentExecutable() throws -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        let arg0 = CommandLine.arguments[0]
        if arg0.hasPrefix("/") { return arg0 }
        throw BenchError("cannot find this executable to start worker processes")
    }

    /// Waits until a Headcount server has nobody online (a previous run's visitors leave after the
    /// leave grace); throws if it stays busy.
    static func waitUntilQuiet(group: any EventLoopGroup, plan: BenchPlan, seconds: Double, log: @Sendable (String) -> Void) async throws {
        let url = plan.server.with(pathAndQuery: plan.basePath + "/api/stats")
        let limit = MonotonicClock.nanoseconds() + Int64(seconds * 1e9)
        var logged = false
        while true {
            let response: SimpleResponse
            do {
                response = try await SimpleHTTP.request(group: group, url: url, timeout: 5)
            } catch {
                throw BenchError("cannot reach \(url): \(error)")
            }
            guard response.status == 200,
                  let online = EventValue.jsonInteger("online", in: response.body),
                  let connections = EventValue.jsonInteger("connections", in: response.body) else {
                throw BenchError("\(url) answered \(response.status) without Headcount stats (is this a Headcount server?)")
            }
            if online == 0 && connections == 0 { return }
            if MonotonicClock.nanoseconds() >= limit {
                throw BenchError("server not idle: \(online) online, \(connections) connections (a run needs an otherwise idle server; earlier visitors leave after the leave grace)")
            }
            if !logged {
                log("waiting for the server to be idle (\(online) online)…")
                logged = true
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
