import ArgumentParser
import Foundation
import HeadcountClient
import HeadcountServer
import NIOCore
import Synchronization

/// `headcount doctor URL`: runs the buffering self-test and says in plain words whether something between
/// this machine and the server buffers or cuts event streams.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check whether proxies between you and a Headcount server buffer or cut streams.")

    @Argument(help: "The server, e.g. https://presence.example.com")
    var url: String

    func run() async throws {
        let base = try StreamClient.Target(url: url)
        let trimmed = base.path.hasSuffix("/") ? String(base.path.dropLast()) : base.path
        let target = base.with(path: "\(trimmed)/selftest/stream")
        print("Checking \(url) …")
        let result = try await SelfTest.run(target)
        let verdict = result.verdict
        print(verdict.text)
        for line in result.details { print("  " + line) }
        if !verdict.ok { throw ExitCode(1) }
    }
}

struct SelfTest {
    struct Result {
        var status: Int?
        var headers: [(String, String)] = []
        var arrivals: [Double] = []  // seconds since the request
        var completed = false
        var elapsed: Double = 0

        var verdict: (ok: Bool, text: String) {
            guard let status else { return (false, "✗ No answer: the server could not be reached or closed the connection before answering.") }
            guard status == 200 else { return (false, "✗ The self-test answered HTTP \(status): is this a Headcount server, and is /selftest/stream reachable through your proxy?") }
            if let encoding = headers.first(where: { $0.0.lowercased() == "content-encoding" })?.1 {
                return (false, "✗ The event stream arrives compressed (\(encoding)): a proxy compresses text/event-stream, which holds events back. Turn compression off for it.")
            }
            if arrivals.count < SelfTest.expected {
                return (false, "✗ The stream was cut after \(arrivals.count) of \(SelfTest.expected) events (\(String(format: "%.1f", elapsed)) s): something between you and the server closes streams early. Raise its read/idle timeout above the heartbeat.")
            }
            let spread = (arrivals.last ?? 0) - (arrivals.first ?? 0)
            if spread < 1.0 {
                return (false, "✗ All \(arrivals.count) events arrived in one lump within \(String(format: "%.2f", spread)) s although they were sent 100 ms apart: something between you and the server is buffering. Turn buffering off for event streams (nginx: proxy_buffering off).")
            }
            let gaps = zip(arrivals.dropFirst(), arrivals).map { $0 - $1 }.sorted()
            let worst = gaps.last ?? 0
            if worst > 1.0 {
                return (false, "✗ Events arrive in bursts (a gap of \(String(format: "%.1f", worst)) s): something buffers part of the stream.")
            }
            return (true, "✓ Events arrive live: nothing between you and the server buffers or cuts the stream.")
        }

        var details: [String] {
            var d: [String] = []
            if let status { d.append("HTTP \(status), \(arrivals.count) events in \(String(format: "%.2f", elapsed)) s") }
            if arrivals.count > 1 {
                let gaps = zip(arrivals.dropFirst(), arrivals).map { ($0 - $1) * 1000 }.sorted()
                d.append(String(format: "gap between events: median %.0f ms, max %.0f ms (sent every 100 ms)", gaps[gaps.count / 2], gaps.last!))
            }
            return d
        }
    }

    static let expected = 30

    static func run(_ target: StreamClient.Target) async throws -> Result {
        let start = ContinuousClock.now
        let state = Mutex(Result())
        let (done, finish) = AsyncStream<Void>.makeStream()
        let channel: any Channel
        do {
            channel = try await StreamClient.stream(target) { item in
                let now = (ContinuousClock.now - start).seconds
                state.withLock { r in
                    switch item {
                    case .head(let status, let headers):
                        r.status = status
                        r.headers = headers
                    case .event(let e) where e.data.hasPrefix("{\"seq\""):
                        r.arrivals.append(now)
                    case .event(let e) where e.type == "end":
                        r.completed = true
                    case .end:
                        r.elapsed = now
                        finish.finish()
                    default:
                        break
                    }
                }
            }
        } catch {
            return Result()
        }
        let timeout = Task {
            try await Task.sleep(for: .seconds(10))
            finish.finish()
        }
        for await _ in done {}
        timeout.cancel()
        try? await channel.close()
        return state.withLock { r in
            if r.elapsed == 0 { r.elapsed = (ContinuousClock.now - start).seconds }
            return r
        }
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
