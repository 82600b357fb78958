import NIOCore
import NIOHTTP1
import NIOPosix

/// A complete HTTP response.
public struct SimpleResponse: Sendable {
    public var status: Int
    public var body: String
}

/// Collects one response and completes a promise with it.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<SimpleResponse>
    private var status = 0
    private var body: [UInt8] = []
    private var done = false

    init(promise: EventLoopPromise<SimpleResponse>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(let buffer):
            if body.count < 1 << 20 { body.append(contentsOf: buffer.readableBytesView) }
        case .end:
            complete(.success(SimpleResponse(status: status, body: String(decoding: body, as: UTF8.self))))
            context.close(promise: nil)
        }
    }

    private func complete(_ result: Result<SimpleResponse, any Error>) {
        guard !done else { return }
        done = true
        promise.completeWith(result)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(.failure(error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.failure(BenchError("connection closed before the response ended")))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        complete(.failure(BenchError("connection closed before the response ended")))
    }
}

/// A connected HTTP/1.1 connection with one request still to send: connect first, then `send` at
/// the moment that matters (the fan-out trigger), so that connection setup is not measured.
public struct PreparedRequest: Sendable {
    let channel: any Channel
    public let response: EventLoopFuture<SimpleResponse>

    /// Writes the request (with `Connection: close`); returns at once.
    public func send(method: HTTPMethod, url: LoopbackURL, body: String? = nil, contentType: String = "text/plain") {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: url.pathAndQuery)
        head.headers.add(name: "Host", value: url.hostHeader)
        head.headers.add(name: "User-Agent", value: "headcount-bench")
        head.headers.add(name: "Connection", value: "close")
        if let body {
            head.headers.add(name: "Content-Type", value: contentType)
            head.headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body {
            var buffer = channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    /// The response, or an error once `seconds` have passed (the connection is then closed).
    public func response(within seconds: Double) async throws -> SimpleResponse {
        let channel = self.channel
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) { channel.close(promise: nil) }
        defer { timer.cancel() }
        return try await response.get()
    }

    public func close() {
        channel.close(promise: nil)
    }
}

public enum SimpleHTTP {
    /// Opens a connection for one request.
    public static func prepare(group: any EventLoopGroup, url: LoopbackURL, connectTimeout: TimeAmount = .seconds(5)) async throws -> PreparedRequest {
        // The promise and the channel share one loop, so completing it never schedules across loops.
        let loop = group.next()
        let promise = loop.makePromise(of: SimpleResponse.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(connectTimeout)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(to: StreamConnector.address(url))
                .get()
        } catch {
            promise.fail(error)
            throw error
        }
        // If the channel dies before a response, the collector fails the promise.
        return PreparedRequest(channel: channel, response: promise.futureResult)
    }

    /// One request, bounded by `timeout` seconds (an `https://` URL: a `GET` over HTTP/2).
    public static func request(group: any EventLoopGroup, method: HTTPMethod = .GET, url: LoopbackURL, body: String? = nil, timeout: Double = 5) async throws -> SimpleResponse {
        if url.tls {
            guard method == .GET, body == nil else { throw BenchError("only GET is supported over HTTP/2") }
            return try await getHTTP2(group: group, url: url, timeout: timeout)
        }
        let prepared = try await prepare(group: group, url: url, connectTimeout: .nanoseconds(Int64(timeout * 1e9)))
        prepared.send(method: method, url: url, body: body)
        return try await prepared.response(within: timeout)
    }
}
