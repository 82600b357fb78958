import ArgumentParser
import Foundation
import HeadcountClient

/// `headcount bench`: a SwiftNIO load generator for Headcount (and nginx + nchan as a baseline).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open many SSE streams to a loopback server and measure connect storm, join convergence, fan-out latency and server cost.",
        discussion: """
            Stream i joins room `bench-{i mod R}` as visitor `bench-{run}-{i}` (or watches with --watch). \
            After every client has seen its room's full count, the bench joins one more visitor to the \
            first room (nchan: publishes `seq=k` to its channel) and measures how long each client takes to \
            see the change, --fanout-rounds times. With --server-pid it samples the server's RSS and CPU \
            from /proc. Only loopback URLs are accepted. Transports: each stream on a new HTTP/1.1 \
            connection (default); --keepalive: one ordinary request first, then the stream on the same \
            connection; --http2: streams multiplexed over TLS connections (ALPN h2) to an https:// URL. \
            The report names the transport measured.
            """
    )

    @Option(help: "Headcount base URL, or the nchan subscriber URL with {room} (appended if absent).")
    var url: String = "http://127.0.0.1:8080"

    @Option(name: [.customShort("n"), .customLong("subscribers")], help: "Streams to open.")
    var subscribers: Int = 1000

    @Option(help: "Rooms the streams are spread over (stream i in room i mod R).")
    var rooms: Int = 1

    @Option(help: "One room name for every stream (instead of bench-0 … bench-{R-1}).")
    var room: String?

    @Option(name: .customLong("room-prefix"), help: "Room name prefix (default: bench; nchan: bench-{run-id}).")
    var roomPrefix: String?

    @Flag(help: "Use the original /api/sse route (room lobby, {\"onlineUsers\":N}).")
    var legacy = false

    @Flag(help: "Open watch-only streams (?watch=1): they receive counts but are not counted.")
    var watch = false

    @Option(help: "New streams per second (default: as fast as --max-pending allows).")
    var rate: Double?

    @Option(name: .customLong("source-addresses"), help: "Bind stream i to 127.0.0.(1 + i mod K), so one address's ephemeral ports do not cap a run. (default: 1 per 10,000 streams)")
    var sourceAddresses: Int?

    @Option(help: "Client processes (this binary re-executed as workers), each with N/P streams.")
    var processes: Int = 1

    @Option(help: "Event-loop threads per client process. (default: cores ÷ processes)")
    var threads: Int = 0

    @Option(name: .customLong("max-pending"), help: "Most streams opened but not yet answered (keep it below the server's listen backlog).")
    var maxPending: Int = 200

    @Option(name: .customLong("fanout-rounds"), help: "Fan-out measurements after convergence (medians are reported).")
    var fanoutRounds: Int = 5

    @Option(name: .customLong("fanout-gap"), help: "Quiet seconds before each fan-out.")
    var fanoutGap: Double = 1.0

    @Option(name: .customLong("round-timeout"), help: "Longest wait for one fan-out, seconds.")
    var roundTimeout: Double = 15

    @Option(help: "Idle seconds after convergence before reading the server's RSS.")
    var settle: Double = 2

    @Option(name: .customLong("idle-seconds"), help: "Window over which the server's idle CPU is measured.")
    var idleSeconds: Double = 5

    @Option(help: "Bound on the whole run, seconds.")
    var timeout: Double = 120

    @Option(name: .customLong("connect-timeout"), help: "TCP connect timeout per stream, seconds.")
    var connectTimeout: Double = 10

    @Option(name: .customLong("quiet-timeout"), help: "Longest wait for a Headcount server to have nobody online before starting, seconds.")
    var quietTimeout: Double = 15

    @Option(name: .customLong("server-pid"), help: "Server process to sample (repeatable, or comma-separated).")
    var serverPID: [String] = []

    @Flag(name: .customLong("server-children"), help: "Sample the children of --server-pid instead (nginx workers of a master).")
    var serverChildren = false

    @Option(name: .customLong("nchan-publish"), help: "nchan publisher URL with {room}: benchmark nginx + nchan instead of Headcount.")
    var nchanPublish: String?

    @Flag(help: "HTTP/1.1 keep-alive: each connection first makes one ordinary request (--keepalive-path, read to its end), then asks for its stream on the same connection.")
    var keepalive = false

    @Option(name: .customLong("keepalive-path"), help: "The ordinary request of --keepalive (Headcount: under the base URL's path). (default: /widget.js)")
    var keepalivePath: String?

    @Flag(help: "HTTP/2 over TLS with ALPN h2 (certificate not verified; needs an https:// URL): streams multiplexed over connections.")
    var http2 = false

    @Option(name: .customLong("streams-per-connection"), help: "With --http2: streams per connection, 1...10000 (fewer when the server's SETTINGS_MAX_CONCURRENT_STREAMS is lower). (default: 100)")
    var streamsPerConnection: Int?

    @Option(name: .customLong("run-id"), help: "Run id used in visitor ids (default: random).")
    var runID: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Flag(name: .customLong("no-progress"), help: "Do not log progress on stderr.")
    var noProgress = false

    @Flag(help: .hidden)
    var worker = false

    /// A configuration error is one line on stderr and exit status 2 (ArgumentParser's own
    /// ValidationError would add the usage and exit 64).
    func validate() throws {
        if worker { return }
        do {
            _ = try makeConfiguration()
        } catch let error as ValidationError {
            _ = try? FileHandle.standardError.write(contentsOf: Data("headcount bench: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }

    func makeConfiguration() throws -> BenchConfiguration {
        var config = BenchConfiguration(url: url)
        config.nchanPublish = nchanPublish
        config.subscribers = subscribers
        config.rooms = rooms
        config.room = room
        config.roomPrefix = roomPrefix
        config.legacy = legacy
        config.watch = watch
        config.rate = rate
        config.sourceAddresses = sourceAddresses ?? min(254, max(1, (subscribers + 9_999) / 10_000))
        config.processes = processes
        config.threads = threads
        config.maxPending = maxPending
        config.fanoutRounds = fanoutRounds
        config.fanoutGap = fanoutGap
        config.roundTimeout = roundTimeout
        config.settleSeconds = settle
        config.idleSeconds = idleSeconds
        config.timeout = timeout
        config.connectTimeout = connectTimeout
        config.quietTimeout = quietTimeout
        config.serverChildren = serverChildren
        config.runID = runID ?? ""
        config.keepalive = keepalive
        config.keepalivePath = keepalivePath ?? config.keepalivePath
        config.http2 = http2
        config.streamsPerConnection = streamsPerConnection ?? config.streamsPerConnection
        var pids: [Int32] = []
        for text in serverPID.flatMap({ $0.split(separator: ",") }) {
            guard let pid = Int32(text.trimmingCharacters(in: .whitespaces)), pid > 0 else {
                throw ValidationError("--server-pid: '\(text)' is not a process id")
            }
            pids.append(pid)
        }
        config.serverPIDs = pids
        if !config.runID.isEmpty && !config.runID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
            throw ValidationError("--run-id may contain only letters and digits")
        }
        do { _ = try BenchPlan(config) } catch { throw ValidationError(error.description) }
        if streamsPerConnection != nil && !http2 { throw ValidationError("--streams-per-connection applies to --http2 only") }
        if keepalivePath != nil && !keepalive { throw ValidationError("--keepalive-path applies to --keepalive only") }
        return config
    }

    func run() async throws {
        if worker {
            let code = await BenchWorker.run()
            if code != 0 { throw ExitCode(code) }
            return
        }
        let config = try makeConfiguration()
        let quiet = noProgress
        let report = try await BenchRunner.run(config) { message in
            if !quiet { _ = try? FileHandle.standardError.write(contentsOf: Data("bench: \(message)\n".utf8)) }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.table())
        }
        if !report.complete { throw ExitCode(3) }
    }
}
