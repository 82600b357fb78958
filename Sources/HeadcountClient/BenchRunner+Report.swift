/// One fan-out round as the coordinator saw it.
struct FanoutRecord: Sendable {
    var round: Int
    /// Trigger instant (monotonic ns).
    var t0: Int64
    /// Server CPU seconds from the trigger until every receiver saw the change.
    var cpu: Double?
    /// CPU seconds of the bench's own client processes in the same window.
    var clientCPU: Double
    var trigger: String
}

/// Everything a run measured, before it is turned into a report.
struct RunRecord {
    var plan: BenchPlan
    var threads: Int
    var openFilesLimit: Int
    var wallStart: Double
    var runStart: Int64
    /// Start of the connect storm (monotonic ns); pool timestamps are relative to it.
    var epoch: Int64
    var sampler: ServerSampler
    var before: ProcessSample
    var after: ProcessSample?
    var convergedCPU: ProcessSample?
    var end: ProcessSample
    var rounds: [FanoutRecord]
    /// CPU seconds of the client processes from the start of the connect storm to the end.
    var clientCPUSeconds: Double
    /// Host-wide `ListenOverflows` during the run.
    var listenOverflows: Int?
    var idle: (seconds: Double, cpu: Double)?
    var results: [PoolResult?]
    var healthy: Bool
    var problems: [String]

    func report() -> BenchReport {
        let config = plan.configuration
        let n = config.subscribers
        var problems = self.problems
        var total = PoolResult(progress: PoolProgress(thresholds: config.fanoutRounds + 1))
        var ready: [Int64] = []
        var converged: [Int64] = []
        var roundTimes: [[Int64]] = Array(repeating: [], count: config.fanoutRounds)
        var connections = 0
        var serverLimit: Int?
        var perConnection: Int?
        for (i, r) in results.enumerated() {
            guard let r else {
                problems.append("client process \(i) reported no result")
                continue
            }
            total.progress.merge(r.progress)
            total.events += r.events
            total.bytes += r.bytes
            total.comments += r.comments
            for (k, v) in r.errorSamples { total.errorSamples[k, default: 0] += v }
            ready.append(contentsOf: r.readyMicros)
            converged.append(contentsOf: r.convergedMicros)
            for (k, times) in r.roundMicros.enumerated() where k < roundTimes.count { roundTimes[k].append(contentsOf: times) }
            connections += r.connections
            if let limit = r.serverMaxConcurrentStreams, limit != Int.max { serverLimit = min(serverLimit ?? limit, limit) }
            if let used = r.streamsPerConnection { perConnection = max(perConnection ?? used, used) }
        }
        let readySeconds = ready.filter { $0 >= 0 }.map { Double($0) / 1e6 }.sorted()
        let convergedSeconds = converged.filter { $0 >= 0 }.map { Double($0) / 1e6 }.sorted()
        let receivers = plan.roomSizes[plan.fanoutRoom]

        var fanout: [FanoutRound] = []
        for r in rounds {
            let t0Micros = (r.t0 - epoch) / 1000
            let latencies = roundTimes[r.round - 1].filter { $0 >= 0 }.map { Double($0 - t0Micros) / 1000 }
            fanout.append(
                FanoutRound(
                    round: r.round, triggeredAtSeconds: Double(t0Micros) / 1e6, receivers: receivers,
                    seen: latencies.count, latency: LatencySummary(milliseconds: latencies),
                    serverCPUSeconds: r.cpu, clientCPUSeconds: r.clientCPU, trigger: r.trigger
                )
            )
        }
        let fanoutMedian = LatencySummary.medians(fanout.filter { $0.seen == $0.receivers }.compactMap(\.latency))

        var server: ServerFigures?
        if !sampler.isEmpty {
            var figures = ServerFigures(pids: sampler.pids, rssBeforeKB: before.rssKB, missingPIDs: sampler.missing())
            if let after {
                figures.rssAfterKB = after.rssKB
                figures.rssPerSubscriberKB = Double(after.rssKB - before.rssKB) / Double(n)
            }
            figures.joinCPUSeconds = convergedCPU.map { $0.cpuSeconds - before.cpuSeconds }
            figures.fanoutCPUSecondsMedian = Statistics.median(rounds.map(\.cpu))
            let cpus = rounds.compactMap(\.cpu)
            figures.fanoutCPUSecondsMean = cpus.isEmpty ? nil : cpus.reduce(0, +) / Double(cpus.count)
            if let idle {
                figures.idleSeconds = idle.seconds
                figures.idleCPUPercent = idle.cpu / idle.seconds * 100
            }
            figures.runCPUSeconds = end.cpuSeconds - before.cpuSeconds
            if !figures.missingPIDs.isEmpty { problems.append("server processes gone: \(figures.missingPIDs)") }
            server = figures
        }
        if total.progress.closedEarly > 0 && !problems.contains(where: { $0.contains("closed by the server") }) {
            problems.append("\(total.progress.closedEarly) streams were closed by the server")
        }
        var warnings: [String] = []
        if let listenOverflows, listenOverflows > 0 {
            warnings.append("\(listenOverflows) connection attempts overflowed a listen queue (host-wide ListenOverflows): those streams waited for a SYN retransmit (1 s or more); lower --max-pending or raise the server's backlog")
        }
        let allConverged = convergedSeconds.count == n
        let complete = healthy && problems.isEmpty && fanout.count == config.fanoutRounds && fanout.allSatisfy { $0.seen == $0.receivers }

        return BenchReport(
            target: plan.target, transport: plan.transport, connections: connections,
            keepaliveRequest: plan.keepaliveURL?.pathAndQuery,
            streamsPerConnectionRequested: plan.transport == .http2 ? config.streamsPerConnection : nil,
            streamsPerConnection: perConnection, serverMaxConcurrentStreams: serverLimit,
            url: plan.server.description,
            publishURL: plan.publishURL(room: plan.fanoutRoom)?.description,
            runID: config.runID, startedAt: wallStart,
            subscribers: n, rooms: plan.roomCount, fanoutRoom: plan.roomNames[plan.fanoutRoom], fanoutReceivers: receivers,
            watch: config.watch, legacy: config.legacy,
            processes: config.processes, threadsPerProcess: threads,
            sourceAddresses: plan.server.isIPv6 ? 1 : config.sourceAddresses,
            rate: config.rate, maxPending: config.maxPending, fanoutRounds: config.fanoutRounds, openFilesLimit: openFilesLimit,
            connected: total.progress.answered, ready: total.progress.ready,
            connectErrors: total.progress.failed, closedEarly: total.progress.closedEarly, errors: total.errorSamples,
            connectStormSeconds: readySeconds.count == n ? readySeconds.last : nil,
            connectP50Seconds: Statistics.percentile(sorted: readySeconds, 50),
            convergenceSeconds: allConverged ? convergedSeconds.last : nil,
            convergenceP50Seconds: Statistics.percentile(sorted: convergedSeconds, 50),
            convergedClients: convergedSeconds.count,
            fanout: fanout, fanoutMedian: fanoutMedian,
            listenOverflows: listenOverflows,
            events: total.events, bytes: total.bytes, comments: total.comments,
            server: server,
            client: ClientFigures(
                cpuSeconds: clientCPUSeconds,
                fanoutCPUSecondsMean: rounds.isEmpty ? nil : rounds.map(\.clientCPU).reduce(0, +) / Double(rounds.count),
                fanoutCPUMicrosPerEvent: rounds.isEmpty
                    ? nil : rounds.map(\.clientCPU).reduce(0, +) / Double(rounds.count) / Double(max(1, receivers)) * 1e6
            ),
            complete: complete,
            problems: problems,
            warnings: warnings,
            durationSeconds: MonotonicClock.seconds(since: runStart)
        )
    }
}
