import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The streams of a run as the coordinator sees them: in this process or in a worker process.
protocol ClientPool: Sendable {
    func start(epoch: Int64, deadline: Int64)
    func progress() -> PoolProgress
    /// Closes the streams and returns their measurements (nil if the pool was lost).
    func finish(epoch: Int64) async -> PoolResult?
    /// Why the pool failed, if it did.
    var failure: String? { get }
}

extension LocalClientPool: ClientPool {
    func finish(epoch: Int64) async -> PoolResult? {
        await closeAll(epoch: epoch)
    }
    var failure: String? { nil }
}

/// The spec a worker reads from the first line of its stdin.
struct WorkerSpec: Codable {
    var configuration: BenchConfiguration
    var worker: Int
    var workers: Int
    var threads: Int
    /// The worker gives up (closes everything, reports, exits) after this many seconds.
    var lifetimeSeconds: Double
}

/// One line a worker writes to its stdout.
struct WorkerMessage: Codable {
    var type: String  // "ready", "progress", "result", "error"
    var progress: PoolProgress?
    var result: PoolResult?
    var error: String?
}

/// A worker process running `headcount bench --worker`, driven over its stdin and stdout:
/// parent → worker: the spec (JSON line), `start <epochNs> <deadlineNs>`, `finish`;
/// worker → parent: JSON lines (`ready`, `progress` every 20 ms while it changes, `result`).
final class WorkerProcessPool: ClientPool, @unchecked Sendable {
    private struct State {
        var ready = false
        var progress: PoolProgress
        var result: PoolResult?
        var error: String?
        var eof = false
    }

    let index: Int
    private let process: Process
    private let input: FileHandle
    private let state: Locked<State>
    private let inputLock = Mutex(())

    /// Launches the worker and hands it its spec.
    init(executable: String, spec: WorkerSpec, clients: Int) throws {
        index = spec.worker
        state = Locked(State(progress: PoolProgress(thresholds: spec.configuration.fanoutRounds + 1)))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["bench", "--worker"]
        let stdinPipe = Pipe()
        let stdoutPipe = Pipe()
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = FileHandle.standardError
        try process.run()
        self.process = process
        self.input = stdinPipe.fileHandleForWriting
        let reader = stdoutPipe.fileHandleForReading
        let thread = Thread { [state] in
            var pending = Data()
            let decoder = JSONDecoder()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[pending.startIndex..<newline]
                    pending = Data(pending[pending.index(after: newline)...])
                    guard !line.isEmpty else { continue }
                    guard let message = try? decoder.decode(WorkerMessage.self, from: line) else {
                        _ = try? FileHandle.standardError.write(contentsOf: Data("bench: unreadable line from worker: \(String(decoding: line.prefix(200), as: UTF8.self))\n".utf8))
                        continue
                    }
                    state.withLock { s in
                        switch message.type {
                        case "ready": s.ready = true
                        case "progress": if let p = message.progress { s.progress = p }
                        case "result": if let r = message.result { s.result = r; s.progress = r.progress }
                        default: s.error = message.error ?? "worker error"
                        }
                    }
                }
            }
            state.withLock { $0.eof = true }
        }
        thread.start()
        let encoded = try JSONEncoder().encode(spec)
        send(String(decoding: encoded, as: UTF8.self))
    }

    private func send(_ line: String) {
        inputLock.withLock { _ in
            // A worker that died closes the pipe: ignore write errors.
            try? input.write(contentsOf: Data((line + "\n").utf8))
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isReady: Bool { state.withLock { $0.ready } }
    var isGone: Bool { state.withLock { $0.eof } }
    var failure: String? { state.withLock { $0.error ?? ($0.eof && $0.result == nil ? "worker \(index) exited early" : nil) } }

    func start(epoch: Int64, deadline: Int64) {
        send("start \(epoch) \(deadline)")
    }

    func progress() -> PoolProgress { state.withLock { $0.progress } }

    func finish(epoch: Int64) async -> PoolResult? {
        send("finish")
        let deadline = MonotonicClock.nanoseconds() + 30_000_000_000
        while MonotonicClock.nanoseconds() < deadline {
            let (result, eof) = state.withLock { ($0.result, $0.eof) }
            if result != nil || eof { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        try? input.close()
        // Reap the worker (bounded); a worker that does not exit is terminated.
        let exitDeadline = MonotonicClock.nanoseconds() + 10_000_000_000
        while process.isRunning && MonotonicClock.nanoseconds() < exitDeadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if process.isRunning { process.terminate() }
        return state.withLock { $0.result }
    }
}

/// The worker side: `headcount bench --worker`.
public enum BenchWorker {
    /// Runs one worker: reads its spec from stdin, opens its streams, reports on stdout, and exits
    /// after `finish` (or stdin closing, or its lifetime passing).
    public static func run() async -> Int32 {
        ProcessStats.raiseOpenFilesLimit()
        let commands = Locked<[String]>([])
        let thread = Thread {
            while let line = readLine() {
                commands.withLock { $0.append(line) }
            }
            commands.withLock { $0.append("eof") }
        }
        thread.start()
        func nextCommand(until deadline: Int64) async -> String? {
            while MonotonicClock.nanoseconds() < deadline {
                if let c = commands.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return c }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return nil
        }
        func emit(_ message: WorkerMessage) {
            let encoder = JSONEncoder()
            guard var data = try? encoder.encode(message) else { return }
            data.append(UInt8(ascii: "\n"))
            _ = try? FileHandle.standardOutput.write(contentsOf: data)
        }

        guard let specLine = await nextCommand(until: MonotonicClock.nanoseconds() + 30_000_000_000),
              let spec = try? JSONDecoder().decode(WorkerSpec.self, from: Data(specLine.utf8)) else {
            emit(WorkerMessage(type: "error", error: "worker: no valid spec on stdin"))
            return 2
        }
        let plan: BenchPlan
        do { plan = try BenchPlan(spec.configuration) } catch {
            emit(WorkerMessage(type: "error", error: "worker: \(error.description)"))
            return 2
        }
        let lifetimeEnd = MonotonicClock.nanoseconds() + Int64(spec.lifetimeSeconds * 1e9)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, spec.threads))
        let slice = plan.slice(worker: spec.worker, of: spec.workers)
        let share = Double(slice.count) / Double(plan.configuration.subscribers)
        let pool = LocalClientPool(
            plan: plan, clients: slice, group: group,
            maxPending: max(1, plan.configuration.maxPending / spec.workers),
            rate: plan.configuration.rate.map { $0 * share }
        )
        emit(WorkerMessage(type: "ready"))

        var epoch = MonotonicClock.nanoseconds()
        var started = false
        var lastProgress: PoolProgress?
        loop: while MonotonicClock.nanoseconds() < lifetimeEnd {
            if let command = commands.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                let parts = command.split(separator: " ")
                switch parts.first {
                case "start"?:
                    if parts.count >= 3, let e = Int64(parts[1]), let d = Int64(parts[2]) {
                        epoch = e
                        pool.start(epoch: e, deadline: min(d, lifetimeEnd))
                        started = true
                    }
                case "finish"?, "eof"?:
                    break loop
                default:
                    break
                }
            }
            if started {
                let p = pool.progress()
                if p != lastProgress {
                    emit(WorkerMessage(type: "progress", progress: p))
                    lastProgress = p
                }
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let result = await pool.closeAll(epoch: epoch)
        emit(WorkerMessage(type: "result", result: result))
        try? await group.shutdownGracefully()
        return 0
    }
}
