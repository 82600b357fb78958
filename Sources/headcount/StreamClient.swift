import Foundation
import HeadcountClient
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One streaming GET over HTTP/1.1 (plain or TLS) for `watch` and `doctor`, parsed with the same
/// `SSEParser` as `headcount bench`.
enum StreamClient {
    struct Target {
        var tls: Bool
        var host: String
        var port: Int
        var path: String

        init(url: String) throws {
            guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host,
                scheme == "http" || scheme == "https"
            else { throw ClientError("not an http(s) URL: \(url)") }
            tls = scheme == "https"
            self.host = host
            port = components.port ?? (tls ? 443 : 80)
            let p = components.percentEncodedPath
            path = (p.isEmpty ? "/" : p) + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
        }

        func with(path: String) -> Target {
            var t = self
            t.path = path
            return t
        }
    }

    struct ClientError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    enum Item: Sendable {
        case head(status: Int, headers: [(String, String)])
        case event(SSEEvent)
        case comment
        case end
    }

    /// Streams `target`, calling `onItem` on the event loop for the head, each event and the end.
    static func stream(_ target: Target, onItem: @escaping @Sendable (Item) -> Void) async throws -> any Channel {
        let group = MultiThreadedEventLoopGroup.singleton
        let sslContext: NIOSSLContext? = target.tls ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        let host = target.host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: host.first?.isNumber == true ? nil : host)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(StreamHandler(onItem: onItem))
                }
            }
        let channel = try await bootstrap.connect(host: target.host, port: target.port).get()
        var headers = HTTPHeaders([("Host", target.port == (target.tls ? 443 : 80) ? target.host : "\(target.host):\(target.port)")])
        headers.add(name: "Accept", value: "text/event-stream")
        headers.add(name: "User-Agent", value: "headcount-cli")
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: headers)), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        return channel
    }

    final class StreamHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let onItem: @Sendable (Item) -> Void
        var parser = SSEParser()
        var ended = false

        init(onItem: @escaping @Sendable (Item) -> Void) { self.onItem = onItem }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                onItem(.head(status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) }))
            case .body(let buffer):
                parser.feed(buffer) { output in
                    switch output {
                    case .event(let e): onItem(.event(e))
                    case .comment: onItem(.comment)
                    default: break
                    }
                }
            case .end:
                finish()
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            finish()
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }

        private func finish() {
            guard !ended else { return }
            ended = true
            onItem(.end)
        }
    }
}
