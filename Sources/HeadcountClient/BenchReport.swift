/// The result of one `headcount bench` run (`--json` prints it).
public struct BenchReport: Codable, Sendable {
    public var tool = "headcount bench"
    public var formatVersion = 1
    public var target: BenchTarget
    /// How the streams reached the server: `http1`, `http1-keepalive` or `http2`.
    public var transport: BenchTransport
    /// TCP connections that carried the streams (HTTP/1.1: one per stream).
    public var connections: Int
    /// `--keepalive`: the ordinary request each connection made before its stream.
    public var keepaliveRequest: String?
    /// HTTP/2: `--streams-per-connection`.
    public var streamsPerConnectionRequested: Int?
    /// HTTP/2: streams per connection used (the request, capped by the server's limit).
    public var streamsPerConnection: Int?
    /// HTTP/2: the server's SETTINGS_MAX_CONCURRENT_STREAMS (nil: not learnt, or no limit set).
    public var serverMaxConcurrentStreams: Int?
    public var url: String
    public var publishURL: String?
    public var runID: String
    /// Wall-clock start, seconds since 1970.
    public var startedAt: Double

    // The shape of the run.
    public var subscribers: Int
    public var rooms: Int
    public var fanoutRoom: String
    public var fanoutReceivers: Int
    public var watch: Bool
    public var legacy: Bool
    public var processes: Int
    public var threadsPerProcess: Int
    public var sourceAddresses: Int
    public var rate: Double?
    public var maxPending: Int
    public var fanoutRounds: Int
    public var openFilesLimit: Int

    // Connections.
    /// Streams answered with 200.
    public var connected: Int
    /// Streams that received their first event (nchan: the response head).
    public var ready: Int
    /// Streams that failed before being answered (connect errors, HTTP errors).
    public var connectErrors: Int
    /// Answered streams that the server closed before the end.
    public var closedEarly: Int
    /// Error messages and how often each occurred.
    public var errors: [String: Int]

    // Storms.
    /// Seconds from start until every stream was connected and had its first event.
    public var connectStormSeconds: Double?
    /// Median stream's time to connect and get its first event.
    public var connectP50Seconds: Double?
    /// Seconds from start until every client had seen the full count of its room (Headcount;
    /// nchan and watch-only runs: equal to the connect storm).
    public var convergenceSeconds: Double?
    /// Median client's time to see the full count of its room.
    public var convergenceP50Seconds: Double?
    public var convergedClients: Int

    // Fan-out of one change after convergence.
    public var fanout: [FanoutRound]
    /// Field-wise medians of the rounds' latency summaries.
    public var fanoutMedian: LatencySummary?

    /// Host-wide TCP `ListenOverflows` during the run (SYNs dropped by a full accept queue).
    public var listenOverflows: Int?

    // Traffic received by all clients over the whole run.
    public var events: Int
    public var bytes: Int
    /// SSE comments received (`: heartbeat`, nchan's `: hi`).
    public var comments: Int

    public var server: ServerFigures?
    /// The load generator's own CPU (it shares the machine with the server).
    public var client: ClientFigures

    /// Every phase finished and no stream failed.
    public var complete: Bool
    public var problems: [String]
    /// Things that make figures less trustworthy without failing the run.
    public var warnings: [String]
    public var durationSeconds: Double
}

public struct FanoutRound: Codable, Sendable {
    public var round: Int
    /// Trigger time, seconds after the run's start.
    public var triggeredAtSeconds: Double
    /// Clients that should see the change.
    public var receivers: Int
    /// Clients that saw it.
    public var seen: Int
    public var latency: LatencySummary?
    /// Server CPU seconds between the trigger and the last client seeing the change.
    public var serverCPUSeconds: Double?
    /// CPU seconds of the bench's client processes in the same window.
    public var clientCPUSeconds: Double
    /// Headcount: the joining stream; nchan: the publish response status.
    public var trigger: String
}

public struct ClientFigures: Codable, Sendable {
    /// CPU seconds of all client processes from the connect storm to the end of the idle window.
    public var cpuSeconds: Double
    /// Mean CPU seconds of the client processes during one fan-out.
    public var fanoutCPUSecondsMean: Double?
    /// The same, per receiving client: the load generator's cost of one event, in microseconds.
    public var fanoutCPUMicrosPerEvent: Double?
}

public struct ServerFigures: Codable, Sendable {
    /// Sampled processes (for nginx: the workers).
    public var pids: [Int32]
    public var rssBeforeKB: Int
    /// RSS with every stream open and idle for `settleSeconds`.
    public var rssAfterKB: Int?
    /// (rssAfter - rssBefore) / subscribers.
    public var rssPerSubscriberKB: Double?
    /// CPU seconds from the start until convergence.
    public var joinCPUSeconds: Double?
    /// Median CPU seconds of one fan-out (each round is quantised to clock ticks, usually 10 ms).
    public var fanoutCPUSecondsMedian: Double?
    /// CPU seconds of all fan-out windows divided by the rounds: finer than the median for small rooms.
    public var fanoutCPUSecondsMean: Double?
    /// Idle window, seconds, and the CPU used in it as a percentage of one core.
    public var idleSeconds: Double?
    public var idleCPUPercent: Double?
    /// CPU seconds of the server over the whole run.
    public var runCPUSeconds: Double?
    public var missingPIDs: [Int32]
}

extension BenchReport {
    /// A human-readable summary.
    public func table() -> String {
        var lines: [String] = []
        func row(_ label: String, _ value: String) {
            lines.append(label.padded(to: 28) + value)
        }
        func s(_ v: Double?, _ digits: Int = 3) -> String { v.map { format($0, digits) + " s" } ?? "—" }
        func ms(_ v: Double?) -> String { v.map { format($0, 1) + " ms" } ?? "—" }
        let shape = watch ? "watch-only" : (target == .nchan ? "nchan subscribers" : "visitors")
        lines.append("headcount bench — \(target.rawValue) at \(url)" + (publishURL.map { " (publish \($0))" } ?? ""))
        row("transport", transportDescription)
        row("streams", "\(subscribers) \(shape) in \(rooms) room\(rooms == 1 ? "" : "s"); \(processes) process\(processes == 1 ? "" : "es") × \(threadsPerProcess) thread\(threadsPerProcess == 1 ? "" : "s"), \(sourceAddresses) source address\(sourceAddresses == 1 ? "" : "es")" + (rate.map { ", \(format($0, 0))/s" } ?? ""))
        row("connected / ready", "\(connected) / \(ready)   errors \(connectErrors), closed early \(closedEarly)")
        row("connect storm (all / p50)", "\(s(connectStormSeconds)) / \(s(connectP50Seconds))")
        row("join convergence (all / p50)", "\(s(convergenceSeconds)) / \(s(convergenceP50Seconds))   (\(convergedClients) clients)")
        for r in fanout {
            if let l = r.latency {
                row("fan-out #\(r.round) (\(r.seen)/\(r.receivers))", "p50 \(ms(l.p50Ms))  p90 \(ms(l.p90Ms))  p99 \(ms(l.p99Ms))  max \(ms(l.maxMs))" + (r.serverCPUSeconds.map { "   server CPU \(format($0, 2)) s" } ?? ""))
            } else {
                row("fan-out #\(r.round)", "not seen (\(r.trigger))")
            }
        }
        if let m = fanoutMedian {
            row("fan-out median of rounds", "p50 \(ms(m.p50Ms))  p90 \(ms(m.p90Ms))  p99 \(ms(m.p99Ms))  max \(ms(m.maxMs))")
        }
        row("received", "\(events) events, \(format(Double(bytes) / 1_048_576, 2)) MiB, \(comments) comments")
        if let server {
            row("server pids", server.pids.map(String.init).joined(separator: ","))
            row("server RSS before / after", "\(server.rssBeforeKB) KB / " + (server.rssAfterKB.map { "\($0) KB" } ?? "—"))
            row("server RSS per subscriber", server.rssPerSubscriberKB.map { format($0, 2) + " KB" } ?? "—")
            row("server CPU join storm", s(server.joinCPUSeconds, 2))
            row("server CPU per fan-out", s(server.fanoutCPUSecondsMean, 3) + " (mean; median " + s(server.fanoutCPUSecondsMedian, 3) + ")")
            row("server idle CPU", server.idleCPUPercent.map { format($0, 2) + " % of a core over " + format(server.idleSeconds ?? 0, 0) + " s" } ?? "—")
        }
        row("bench CPU per fan-out", s(client.fanoutCPUSecondsMean, 3) + (client.fanoutCPUMicrosPerEvent.map { " (" + format($0, 1) + " µs per event)" } ?? ""))
        row("duration", s(durationSeconds, 1))
        if !errors.isEmpty {
            lines.append("errors:")
            for (message, count) in errors.sorted(by: { $0.value > $1.value }) { lines.append("  \(count)× \(message)") }
        }
        if !problems.isEmpty {
            lines.append("problems:")
            for p in problems { lines.append("  - \(p)") }
        }
        if !warnings.isEmpty {
            lines.append("warnings:")
            for w in warnings { lines.append("  - \(w)") }
        }
        lines.append(complete ? "complete" : "INCOMPLETE")
        return lines.joined(separator: "\n")
    }
}

extension BenchReport {
    /// The transport line of the table.
    var transportDescription: String {
        switch transport {
        case .http1:
            return "http1 (a new connection per stream)"
        case .http1Keepalive:
            return "http1-keepalive (GET \(keepaliveRequest ?? "?"), then the stream on the same connection)"
        case .http2:
            let used = streamsPerConnection.map(String.init) ?? "?"
            let limit = serverMaxConcurrentStreams.map(String.init) ?? "none known"
            return "http2 (TLS, ALPN h2): \(used) streams per connection (asked \(streamsPerConnectionRequested ?? 0), server allows \(limit)), \(connections) connections"
        }
    }
}

/// Fixed-point formatting without Foundation.
func format(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (abs(value) * scale).rounded()
    let whole = Int(rounded / scale)
    let frac = Int(rounded - Double(whole) * scale)
    let sign = value < 0 && rounded != 0 ? "-" : ""
    if digits == 0 { return sign + "\(whole)" }
    let f = String(frac)
    return sign + "\(whole)." + String(repeating: "0", count: max(0, digits - f.count)) + f
}

extension String {
    func padded(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
