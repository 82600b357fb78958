import ArgumentParser
import Foundation
import HeadcountClient
import HeadcountCore
import HeadcountServer
import Logging

/// `headcount serve`: every option also reads `HEADCOUNT_<NAME>` from the environment; a flag wins.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Headcount server (in-memory by default).")

    @Option(help: "Address to listen on. [env: HEADCOUNT_HOST] (default: 127.0.0.1)")
    var host: String?

    @Option(help: "Port to listen on; 0 picks a free one. [env: HEADCOUNT_PORT] (default: 8080)")
    var port: Int?

    @Option(help: "Seconds between `: heartbeat` comments. [env: HEADCOUNT_HEARTBEAT] (default: 15)")
    var heartbeat: String?

    @Option(name: .customLong("leave-grace"), help: "Seconds an identified visitor stays online after their last stream. [env: HEADCOUNT_LEAVE_GRACE] (default: 3)")
    var leaveGrace: String?

    @Option(name: .customLong("update-interval"), help: "Minimum seconds between two events of a room. [env: HEADCOUNT_UPDATE_INTERVAL] (default: 0.1)")
    var updateInterval: String?

    @Option(name: .customLong("allow-origin"), help: "CORS: `*` or comma-separated origins. [env: HEADCOUNT_ALLOW_ORIGIN] (default: *)")
    var allowOrigin: String?

    @Option(name: .customLong("retry-min"), help: "Lowest randomised `retry:` in seconds. [env: HEADCOUNT_RETRY_MIN] (default: 1)")
    var retryMin: String?

    @Option(name: .customLong("retry-max"), help: "Highest randomised `retry:` in seconds. [env: HEADCOUNT_RETRY_MAX] (default: 6)")
    var retryMax: String?

    @Option(name: .customLong("max-rooms"), help: "Most rooms in existence at once. [env: HEADCOUNT_MAX_ROOMS] (default: 100000)")
    var maxRooms: Int?

    @Option(help: "PostgreSQL URL: join a cluster of nodes sharing counts. [env: HEADCOUNT_POSTGRES] (default: none, in-memory)")
    var postgres: String?

    @Option(name: .customLong("node-ttl"), help: "Cluster node lease in seconds. [env: HEADCOUNT_NODE_TTL] (default: 10)")
    var nodeTTL: String?

    @Option(name: .customLong("exact-visitors"), help: "Rooms up to this many visitors count exactly across nodes. [env: HEADCOUNT_EXACT_VISITORS] (default: 1000)")
    var exactVisitors: Int?

    @Option(name: .customLong("first-request-timeout"), help: "A connection must complete its first request head (TLS handshake included) within this many seconds. [env: HEADCOUNT_FIRST_REQUEST_TIMEOUT] (default: 10)")
    var firstRequestTimeout: String?

    @Option(name: .customLong("idle-timeout"), help: "A keep-alive connection with no request in flight is closed after this many seconds. [env: HEADCOUNT_IDLE_TIMEOUT] (default: 75)")
    var idleTimeout: String?

    @Option(name: .customLong("max-streams-per-ip"), help: "Most streams one client address may hold; more get 429. [env: HEADCOUNT_MAX_STREAMS_PER_IP] (default: 16)")
    var maxStreamsPerIP: Int?

    @Option(name: .customLong("max-streams"), help: "Most streams in all; more get 503. [env: HEADCOUNT_MAX_STREAMS] (default: 100000)")
    var maxStreams: Int?

    @Option(name: .customLong("trusted-proxy"), help: "Comma-separated addresses or CIDRs whose X-Forwarded-For is believed. [env: HEADCOUNT_TRUSTED_PROXY]")
    var trustedProxy: String?

    @Option(name: .customLong("dead-peer-timeout"), help: "A vanished peer leaves within this many seconds. [env: HEADCOUNT_DEAD_PEER_TIMEOUT] (default: 30)")
    var deadPeerTimeout: String?

    @Option(name: .customLong("write-timeout"), help: "A stream with no write progress this long is dropped. [env: HEADCOUNT_WRITE_TIMEOUT] (default: 30)")
    var writeTimeout: String?

    @Option(help: "On shutdown, streams close spread over this many seconds. [env: HEADCOUNT_DRAIN] (default: 5)")
    var drain: String?

    @Option(help: "Secret for signed join tokens (prefer the environment variable). [env: HEADCOUNT_SECRET]")
    var secret: String?

    @Option(name: .customLong("private-rooms"), help: "Comma-separated globs of rooms that need a join token, e.g. priv-*. [env: HEADCOUNT_PRIVATE_ROOMS]")
    var privateRooms: String?

    @Option(name: .customLong("admin-token"), help: "Bearer token required by /api/rooms, /api/stats, /api/history. [env: HEADCOUNT_ADMIN_TOKEN]")
    var adminToken: String?

    @Option(name: .customLong("history-rooms"), help: "Rooms that keep an hour of history for /api/history. [env: HEADCOUNT_HISTORY_ROOMS] (default: 1000)")
    var historyRooms: Int?

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve HTTPS with HTTP/2. [env: HEADCOUNT_TLS_CERT]")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert. [env: HEADCOUNT_TLS_KEY]")
    var tlsKey: String?

    @Option(name: .customLong("log-format"), help: "text or json (one JSON object per line). [env: HEADCOUNT_LOG_FORMAT] (default: text)")
    var logFormat: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. [env: HEADCOUNT_LOG_LEVEL] (default: info)")
    var logLevel: String?

    func run() async throws {
        var env = EnvironmentOptions(ProcessInfo.processInfo.environment)
        let config = try makeConfiguration(&env)
        let format = env.string(logFormat, "LOG_FORMAT") ?? "text"
        guard format == "text" || format == "json" else { throw ValidationError("--log-format must be text or json") }
        LoggingSystem.bootstrap { label in
            if format == "json" {
                var handler = JSONLogHandler(label: label)
                handler.logLevel = config.logLevel
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = config.logLevel
            return handler
        }
        var logger = Logger(label: "headcount")
        logger.logLevel = config.logLevel
        // One file descriptor per stream: take the whole hard limit (a soft limit of 1,024 is common and
        // would refuse the 1,000th stream), as nginx's worker_rlimit_nofile and Go's runtime do.
        let openFiles = ProcessStats.raiseOpenFilesLimit()
        if openFiles < config.maxStreams {
            logger.notice("the open-files limit is below --max-streams: streams beyond it will be refused", metadata: ["headcount.open_files": "\(openFiles)", "headcount.max_streams": "\(config.maxStreams)"])
        }
        let app = try buildApplication(config, logger: logger)
        try await app.runService()
    }

    func makeConfiguration(_ env: inout EnvironmentOptions) throws -> HeadcountConfiguration {
        var c = HeadcountConfiguration()
        c.host = env.string(host, "HOST") ?? c.host
        c.port = try env.int(port, "PORT", range: 0...65535) ?? c.port
        c.heartbeat = try env.duration(heartbeat, "HEARTBEAT", positive: true) ?? c.heartbeat
        c.leaveGrace = try env.duration(leaveGrace, "LEAVE_GRACE") ?? c.leaveGrace
        c.updateInterval = try env.duration(updateInterval, "UPDATE_INTERVAL") ?? c.updateInterval
        if let origins = env.string(allowOrigin, "ALLOW_ORIGIN") {
            c.allowOrigins = origins.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        c.retryMin = try env.duration(retryMin, "RETRY_MIN") ?? c.retryMin
        c.retryMax = try env.duration(retryMax, "RETRY_MAX") ?? c.retryMax
        guard c.retryMax >= c.retryMin else { throw ValidationError("--retry-max must not be below --retry-min") }
        c.maxRooms = try env.int(maxRooms, "MAX_ROOMS", range: 1...10_000_000) ?? c.maxRooms
        c.maxStreamsPerIP = try env.int(maxStreamsPerIP, "MAX_STREAMS_PER_IP", range: 1...1_000_000) ?? c.maxStreamsPerIP
        c.maxStreams = try env.int(maxStreams, "MAX_STREAMS", range: 1...10_000_000) ?? c.maxStreams
        if let proxies = env.string(trustedProxy, "TRUSTED_PROXY") {
            c.trustedProxies = proxies.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for p in c.trustedProxies where !HeadcountConfiguration.isValidProxy(p) {
                throw ValidationError("--trusted-proxy: '\(p)' is not an IP address or CIDR")
            }
        }
        c.deadPeerTimeout = try env.duration(deadPeerTimeout, "DEAD_PEER_TIMEOUT", positive: true) ?? c.deadPeerTimeout
        c.writeTimeout = try env.duration(writeTimeout, "WRITE_TIMEOUT", positive: true) ?? c.writeTimeout
        c.drain = try env.duration(drain, "DRAIN") ?? c.drain
        c.secret = env.string(secret, "SECRET")
        if let patterns = env.string(privateRooms, "PRIVATE_ROOMS") {
            c.privateRooms = patterns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if !c.privateRooms.isEmpty && c.secret == nil {
            throw ValidationError("--private-rooms needs --secret (or HEADCOUNT_SECRET) to check join tokens")
        }
        c.adminToken = env.string(adminToken, "ADMIN_TOKEN")
        c.historyRooms = try env.int(historyRooms, "HISTORY_ROOMS", range: 0...100_000) ?? c.historyRooms
        c.tlsCertificate = env.string(tlsCert, "TLS_CERT")
        c.tlsKey = env.string(tlsKey, "TLS_KEY")
        if (c.tlsCertificate == nil) != (c.tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        c.postgresURL = env.string(postgres, "POSTGRES")
        if c.postgresURL != nil && !HeadcountConfiguration.clusterAvailable {
            throw ValidationError("--postgres: the PostgreSQL cluster backplane is not in this build yet; run without it (in memory)")
        }
        c.nodeTTL = try env.duration(nodeTTL, "NODE_TTL", positive: true) ?? c.nodeTTL
        c.exactVisitors = try env.int(exactVisitors, "EXACT_VISITORS", range: 0...1_000_000) ?? c.exactVisitors
        c.firstRequestTimeout = try env.duration(firstRequestTimeout, "FIRST_REQUEST_TIMEOUT", positive: true) ?? c.firstRequestTimeout
        c.idleTimeout = try env.duration(idleTimeout, "IDLE_TIMEOUT", positive: true) ?? c.idleTimeout
        if let level = env.string(logLevel, "LOG_LEVEL") {
            guard let parsed = Logger.Level(rawValue: level.lowercased()) else { throw ValidationError("unknown log level \(level)") }
            c.logLevel = parsed
        }
        return c
    }
}

/// Resolves an option from its flag, else from `HEADCOUNT_<NAME>`, with clear errors.
struct EnvironmentOptions {
    let environment: [String: String]
    init(_ environment: [String: String]) { self.environment = environment }

    func raw(_ flag: String?, _ name: String) -> (value: String, source: String)? {
        if let flag { return (flag, "--" + name.lowercased().replacingOccurrences(of: "_", with: "-")) }
        if let value = environment["HEADCOUNT_" + name], !value.isEmpty { return (value, "HEADCOUNT_" + name) }
        return nil
    }

    func string(_ flag: String?, _ name: String) -> String? { raw(flag, name)?.value }

    func int(_ flag: Int?, _ name: String, range: ClosedRange<Int>) throws -> Int? {
        let resolved: (Int, String)?
        if let flag {
            resolved = (flag, "--" + name.lowercased().replacingOccurrences(of: "_", with: "-"))
        } else if let (text, source) = raw(nil, name) {
            guard let n = Int(text) else { throw ValidationError("\(source): '\(text)' is not a whole number") }
            resolved = (n, source)
        } else {
            resolved = nil
        }
        guard let (n, source) = resolved else { return nil }
        guard range.contains(n) else { throw ValidationError("\(source): \(n) is outside \(range.lowerBound)...\(range.upperBound)") }
        return n
    }

    func duration(_ flag: String?, _ name: String, positive: Bool = false) throws -> Duration? {
        guard let (text, source) = raw(flag, name) else { return nil }
        guard let d = DurationParser.parse(text) else {
            throw ValidationError("\(source): '\(text)' is not a duration (seconds such as 3 or 0.1, or 100ms, 2m, 1h)")
        }
        if positive && d <= .zero { throw ValidationError("\(source) must be above zero") }
        return d
    }
}
