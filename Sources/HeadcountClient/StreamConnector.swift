import NIOCore
import NIOHTTP1
import NIOPosix

/// Opens one SSE stream: a TCP connection (optionally bound to a source address) with NIOHTTP1's
/// client codec and a `BenchStreamHandler`.
enum StreamConnector {
    static func request(_ url: LoopbackURL) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.pathAndQuery)
        head.headers.add(name: "Host", value: url.hostHeader)
        head.headers.add(name: "Accept", value: "text/event-stream")
        head.headers.add(name: "Cache-Control", value: "no-cache")
        head.headers.add(name: "User-Agent", value: "headcount-bench")
        return head
    }

    /// The ordinary request a `--keepalive` connection makes before its stream (HTTP/1.1 keeps the
    /// connection open by default).
    static func warmupRequest(_ url: LoopbackURL) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.pathAndQuery)
        head.headers.add(name: "Host", value: url.hostHeader)
        head.headers.add(name: "Accept", value: "*/*")
        head.headers.add(name: "User-Agent", value: "headcount-bench")
        return head
    }

    /// IP_BIND_ADDRESS_NO_PORT (Linux): a socket bound to an address with port 0 gets its port at
    /// connect time, unique per 4-tuple, instead of reserving one at bind time.
    static let bindAddressNoPort = ChannelOptions.Types.SocketOption(level: .ip, name: NIOBSDSocket.Option(rawValue: 24))

    static func connect(
        group: any EventLoopGroup, to address: SocketAddress, source: SocketAddress?,
        table: ClientTable, slot: Int, setup: BenchStreamHandler.Setup, connectTimeout: TimeAmount
    ) -> EventLoopFuture<any Channel> {
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(BenchStreamHandler(table: table, slot: slot, setup: setup))
                }
            }
        if let source {
            bootstrap = bootstrap.channelOption(bindAddressNoPort, value: 1).bind(to: source)
        }
        return bootstrap.connect(to: address)
    }

    /// The server's address (no resolver: hosts are IP literals or `localhost`).
    static func address(_ url: LoopbackURL) throws -> SocketAddress {
        try SocketAddress(ipAddress: url.connectHost, port: url.port)
    }

    /// 127.0.0.1 ... 127.0.0.K with port 0, or nil for an IPv6 server.
    static func sourceAddresses(plan: BenchPlan) throws -> [SocketAddress]? {
        guard !plan.server.isIPv6 else { return nil }
        return try (0..<plan.configuration.sourceAddresses).map { try SocketAddress(ipAddress: "127.0.0.\(1 + $0)", port: 0) }
    }

    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        return text.count > 160 ? String(text.prefix(160)) + "…" : text
    }
}
