import ArgumentParser
import Foundation
import HeadcountClient
import HeadcountServer
import NIOCore
import Synchronization

/// `headcount watch URL [--room R]`: the live count in a terminal, redrawn in place, with a sparkline
/// of the last minute.
struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a room's (or the site's) live count in the terminal.")

    @Argument(help: "The server, e.g. http://127.0.0.1:8080")
    var url: String

    @Option(help: "Room to watch (default: the site totals).")
    var room: String?

    @Option(help: "Stop after this many seconds (default: run until Ctrl-C).")
    var duration: Double?

    @Flag(help: "Print each update on its own line instead of redrawing (for logs and pipes).")
    var lines = false

    func run() async throws {
        if let room, let problem = roomProblem(room) { throw ValidationError("--room: \(problem)") }
        let base = try StreamClient.Target(url: url)
        let trimmed = base.path.hasSuffix("/") ? String(base.path.dropLast()) : base.path
        let target = base.with(path: room.map { "\(trimmed)/rooms/\($0)/events?watch=1" } ?? "\(trimmed)/events")
        let display = WatchDisplay(label: room ?? "site", redraw: !lines && isatty(STDOUT_FILENO) == 1)
        let done = AsyncStream<Void>.makeStream()
        let channel = try await StreamClient.stream(target) { item in
            switch item {
            case .head(let status, _):
                if status != 200 {
                    display.message("HTTP \(status) from \(target.path)")
                    done.continuation.finish()
                }
            case .event(let e):
                guard let json = try? JSONSerialization.jsonObject(with: Data(e.data.utf8)) as? [String: Any], let online = json["online"] as? Int else { return }
                display.update(online: online, connections: json["connections"] as? Int, partial: json["partial"] as? Bool ?? false)
            case .comment:
                break
            case .end:
                display.message("stream ended")
                done.continuation.finish()
            }
        }
        let ticker = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                display.tick()
            }
        }
        let timer = Task {
            if let duration { try await Task.sleep(for: .seconds(duration)) } else { try await Task.sleep(for: .seconds(1e9)) }
            done.continuation.finish()
        }
        for await _ in done.stream {}
        ticker.cancel()
        timer.cancel()
        try? await channel.close()
        display.finish()
    }
}

/// The line a `watch` shows: count, connections and a one-minute sparkline of `online`.
final class WatchDisplay: Sendable {
    struct State {
        var online = 0
        var connections: Int?
        var partial = false
        var samples: [Int] = []
        var seen = false
    }
    let label: String
    let redraw: Bool
    let state = Mutex(State())
    static let bars = Array("▁▂▃▄▅▆▇█")

    init(label: String, redraw: Bool) {
        self.label = label
        self.redraw = redraw
    }

    func update(online: Int, connections: Int?, partial: Bool) {
        let line: String = state.withLock { s in
            s.online = online
            s.connections = connections
            s.partial = partial
            if !s.seen {
                s.seen = true
                s.samples = [online]
            }
            return render(s)
        }
        show(line)
    }

    func tick() {
        let line: String? = state.withLock { s in
            guard s.seen else { return nil }
            s.samples.append(s.online)
            if s.samples.count > 60 { s.samples.removeFirst(s.samples.count - 60) }
            return redraw ? render(s) : nil
        }
        if let line { show(line) }
    }

    func render(_ s: State) -> String {
        let high = max(1, s.samples.max() ?? 1)
        let spark = String(s.samples.map { Self.bars[min(Self.bars.count - 1, $0 * (Self.bars.count - 1) / high)] })
        var text = "\(label)  ● \(s.online) online"
        if let c = s.connections { text += "  (\(c) connection\(c == 1 ? "" : "s"))" }
        if s.partial { text += "  [partial]" }
        return text + "  " + spark
    }

    func show(_ line: String) {
        if redraw {
            _ = try? FileHandle.standardOutput.write(contentsOf: Data("\r\u{1B}[2K\(line)".utf8))
        } else {
            _ = try? FileHandle.standardOutput.write(contentsOf: Data((line + "\n").utf8))
        }
    }

    func message(_ text: String) {
        if redraw { _ = try? FileHandle.standardOutput.write(contentsOf: Data("\n".utf8)) }
        print(text)
    }

    func finish() {
        if redraw { _ = try? FileHandle.standardOutput.write(contentsOf: Data("\n".utf8)) }
    }
}
