import Foundation
import HeadcountCore
@testable import HeadcountServer
import NIOCore
import NIOPosix
import Testing

/// A client that connects, sends an SSE request, and then never reads: its receive window fills up.
final class FrozenReader: Sendable {
    let channel: any Channel

    init(port: Int, path: String) async throws {
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: 4096)
            .channelOption(ChannelOptions.autoRead, value: false)
            .connect(host: "127.0.0.1", port: port)
            .get()
        try await channel.writeAndFlush(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n"))
    }

    var isActive: Bool { channel.isActive }
    func close() { channel.close(promise: nil) }
}

@Suite("Slow and frozen readers", .serialized)
struct SlowReaderTests {
    @Test("a reader that stops reading is dropped after --write-timeout and counted out; readers that read are unaffected")
    func frozenReadersAreDropped() async throws {
        var c = HeadcountConfiguration.testing(updateInterval: .milliseconds(1))
        c.writeTimeout = .seconds(1)
        try await withServer(c, transports: [.http1]) { base, app in
            let port = Int(base.split(separator: ":").last!)!
            let live = LiveStream.open("\(base)/rooms/frozen/events?watch=1")
            var frozen: [FrozenReader] = []
            for i in 0..<20 { frozen.append(try await FrozenReader(port: port, path: "/rooms/frozen/events?visitor=f\(i)")) }
            try await live.waitForLatest { $0.int("connections") == 20 }
            // Churn the room fast so the frozen readers' buffers fill up.
            let churn = Task {
                // Joins and leaves on raw sockets: each one changes the count, bounded to 30 s.
                let deadline = ContinuousClock.now + .seconds(30)
                while !Task.isCancelled && ContinuousClock.now < deadline {
                    if let c = try? await FrozenReader(port: port, path: "/rooms/frozen/events") {
                        try? await Task.sleep(for: .milliseconds(3))
                        c.close()
                    }
                }
            }
            try await eventually(timeout: .seconds(30), "all 20 frozen readers dropped as slow readers") {
                let metrics = try await TestHTTP.get("\(base)/metrics").body
                return (metricValue(metrics, "headcount_leaves_total{reason=\"slow_reader\"}") ?? 0) >= 20
            }
            churn.cancel()
            // The reading client is still there and current.
            #expect(!live.ended)
            try await eventually("room empties") { app.registry.localCounts(room: "frozen").connections == 0 }
            live.close()
            for f in frozen { f.close() }
        }
    }
}

@Suite("Dead-peer detection")
struct DeadPeerTests {
    @Test("TCP_USER_TIMEOUT leaves one heartbeat of room, so a vanished peer is out within --dead-peer-timeout")
    func userTimeoutLeavesAHeartbeat() {
        // Defaults: 30 s timeout, a heartbeat every 15 s → 13.5 s user timeout (15 + 13.5 ≤ 30, with margin).
        #expect(DeadPeerDetection.userTimeoutMilliseconds(timeout: .seconds(30), heartbeat: .seconds(15)) == 13_500)
        #expect(DeadPeerDetection.userTimeoutMilliseconds(timeout: .seconds(6), heartbeat: .seconds(2)) == 3_600)
        #expect(DeadPeerDetection.userTimeoutMilliseconds(timeout: .seconds(60), heartbeat: .seconds(15)) == 40_500)
        // A heartbeat longer than half the timeout cannot fit: 90 % of half the timeout, the bound becomes heartbeat + that.
        #expect(DeadPeerDetection.userTimeoutMilliseconds(timeout: .seconds(30), heartbeat: .seconds(60)) == 13_500)
        #expect(DeadPeerDetection.userTimeoutMilliseconds(timeout: .milliseconds(200), heartbeat: .seconds(15)) == 500)
    }

    @Test("accepted streams carry keepalive and TCP_USER_TIMEOUT (inherited from the listening socket)")
    func acceptedSocketsInheritOptions() async throws {
        var c = HeadcountConfiguration.testing()
        c.deadPeerTimeout = .seconds(6)
        c.heartbeat = .seconds(2)
        try await withServer(c, transports: [.http1]) { base, app in
            let streams = (0..<4).map { LiveStream.open("\(base)/rooms/opts/events?visitor=v\($0)") }
            try await streams[0].waitForLatest { $0.int("online") == 4 }
            var channels: [any Channel] = []
            for loop in app.hub.allLoopStreams {
                channels += try await loop.eventLoop.submit { loop.openChannels() }.get()
            }
            #expect(channels.count == 4)
            let tcp = NIOBSDSocket.OptionLevel(rawValue: CInt(IPPROTO_TCP))
            func option(_ name: CInt) -> ChannelOptions.Types.SocketOption {
                ChannelOptions.Types.SocketOption(level: tcp, name: NIOBSDSocket.Option(rawValue: name))
            }
            for channel in channels {
                #expect(try await channel.getOption(ChannelOptions.socketOption(.so_keepalive)) != 0)
                #expect(try await channel.getOption(option(CInt(TCP_USER_TIMEOUT))) == 3_600)
                #expect(try await channel.getOption(option(CInt(TCP_KEEPIDLE))) == 2)
                #expect(try await channel.getOption(option(CInt(TCP_KEEPCNT))) == 4)
            }
            for s in streams { s.close() }
        }
    }
}
