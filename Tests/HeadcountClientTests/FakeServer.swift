import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny stand-in for Headcount and nchan on one event loop, so the bench can be tested end to end
/// without the real servers: `/api/stats`, `/widget.js` (keep-alive), `/rooms/{room}/events?visitor=|watch=1` (counts broadcast
/// on every join and leave, no grace, no coalescing), `/sub/{room}` and `POST /pub/{room}`.
/// Events are written in awkward pieces (split mid-line, CRLF and LF mixed) to exercise the client's
/// chunked decoding and SSE parsing.
final class FakeServer: @unchecked Sendable {
    // Everything below is touched only on `loop`.
    final class Stream {
        let context: ChannelHandlerContext
        let room: String
        let visitor: String?
        init(context: ChannelHandlerContext, room: String, visitor: String?) {
            self.context = context
            self.room = room
            self.visitor = visitor
        }
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var loop: any EventLoop { group.next() }
    private var streams: [ObjectIdentifier: Stream] = [:]
    private var version = 0
    private var channel: (any Channel)?
    private var flip = false

    var port: Int { channel?.localAddress?.port ?? 0 }

    func start() async throws {
        let server = self
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeServerHandler(server: server))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    func stop() async throws {
        try await channel?.close()
        try await group.shutdownGracefully()
    }

    func online(room: String) -> (online: Int, connections: Int) {
        let counted = streams.values.filter { $0.room == room && $0.visitor != nil }
        return (Set(counted.compactMap(\.visitor)).count, counted.count)
    }

    func add(_ stream: Stream) {
        streams[ObjectIdentifier(stream.context)] = stream
        stream.context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "retry: 1000\n\n")))), promise: nil)
        if stream.room.hasPrefix("sub:") {
            write(": hi\n\n", to: stream)
        } else {
            broadcast(room: stream.room)
        }
    }

    func remove(_ context: ChannelHandlerContext) {
        guard let stream = streams.removeValue(forKey: ObjectIdentifier(context)) else { return }
        if !stream.room.hasPrefix("sub:") { broadcast(room: stream.room) }
    }

    func broadcast(room: String) {
        version += 1
        let (online, connections) = self.online(room: room)
        let event = "id: \(version)\ndata: {\"room\":\"\(room)\",\"online\":\(online),\"connections\":\(connections)}\n\n"
        for stream in streams.values where stream.room == room { write(event, to: stream) }
    }

    func publish(channel: String, message: String) -> Int {
        version += 1
        let receivers = streams.values.filter { $0.room == "sub:" + channel }
        for stream in receivers { write("id: \(version)\r\ndata: \(message)\r\n\r\n", to: stream) }
        return receivers.count
    }

    /// Writes in two or three pieces, alternating line endings, each piece its own HTTP chunk.
    private func write(_ text: String, to stream: Stream) {
        flip.toggle()
        let bytes = Array((flip ? text.replacing("\n", with: "\r\n") : text).utf8)
        let cuts = [0, bytes.count / 3, bytes.count * 2 / 3 + 1, bytes.count].map { min($0, bytes.count) }
        for (a, b) in zip(cuts, cuts.dropFirst()) where a < b {
            stream.context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: bytes[a..<b])))), promise: nil)
        }
        stream.context.flush()
    }
}

final class FakeServerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: FakeServer
    private var head: HTTPRequestHead?
    private var body = ""

    init(server: FakeServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = ""
        case .body(let buffer):
            body += String(buffer: buffer)
        case .end:
            guard let head else { return }
            respond(context: context, head: head)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let (path, query) = split(head.uri)
        let parts = path.split(separator: "/").map(String.init)
        if path == "/api/stats" {
            reply(context, "{\"online\":0,\"connections\":0,\"rooms\":0}")
        } else if path == "/widget.js" {
            // Keeps the connection open, as Headcount does: a stream may follow on it.
            reply(context, "/* widget */\n", keepAlive: true)
        } else if parts.count == 3, parts[0] == "rooms", parts[2] == "events" {
            let visitor = query["watch"] == nil ? query["visitor"] : nil
            openStream(context, room: parts[1], visitor: visitor)
        } else if parts.count == 2, parts[0] == "sub" {
            openStream(context, room: "sub:" + parts[1], visitor: nil)
        } else if parts.count == 2, parts[0] == "pub", head.method == .POST {
            let n = server.publish(channel: parts[1], message: body)
            reply(context, "subscribers: \(n)", status: n > 0 ? .created : .accepted)
        } else {
            reply(context, "not found", status: .notFound)
        }
    }

    private func openStream(_ context: ChannelHandlerContext, room: String, visitor: String?) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/event-stream")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        server.add(FakeServer.Stream(context: context, room: room, visitor: visitor))
    }

    private func reply(_ context: ChannelHandlerContext, _ text: String, status: HTTPResponseStatus = .ok, keepAlive: Bool = false) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "\(text.utf8.count)")
        if keepAlive {
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.remove(context)
        context.fireChannelInactive()
    }

    private func split(_ uri: String) -> (String, [String: String]) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            query[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        return (String(uri[uri.startIndex..<q]), query)
    }
}
