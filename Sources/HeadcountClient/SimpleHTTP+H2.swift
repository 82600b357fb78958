import NIOCore
import NIOHTTP1
import NIOHTTP2

extension SimpleHTTP {
    /// One `GET` over a fresh HTTP/2 connection (TLS, ALPN h2), bounded by `timeout` seconds.
    static func getHTTP2(group: any EventLoopGroup, url: LoopbackURL, timeout: Double) async throws -> SimpleResponse {
        let limit = TimeAmount.nanoseconds(Int64(timeout * 1e9))
        let connection = try await H2Connection.connect(
            group: group, to: StreamConnector.address(url), source: nil, sslContext: try H2Connection.makeSSLContext(), timeout: limit
        ).get()
        let channel = connection.channel
        defer { channel.close(promise: nil) }
        let promise = channel.eventLoop.makePromise(of: SimpleResponse.self)
        let timer = channel.eventLoop.scheduleTask(in: limit) { channel.close(promise: nil) }
        defer { timer.cancel() }
        let stream: any Channel
        do {
            stream = try await connection.openStream { stream in
                stream.eventLoop.makeCompletedFuture {
                    // The stream's frames as HTTP/1-style parts, so that the HTTP/1.1 collector serves.
                    try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .https))
                    try stream.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                }
            }.get()
        } catch {
            promise.fail(error)
            throw error
        }
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.pathAndQuery)
        head.headers.add(name: "Host", value: url.hostHeader)
        head.headers.add(name: "User-Agent", value: "headcount-bench")
        stream.write(HTTPClientRequestPart.head(head), promise: nil)
        stream.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        return try await promise.futureResult.get()
    }
}
