import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1

/// What every connection of a listener shares.
final class ConnectionServices: Sendable {
    let hub: StreamHub
    let responder: RequestResponder
    /// A connection (or a request) that has not completed its head within this time is closed.
    let firstRequestTimeout: TimeAmount
    /// A keep-alive connection with no request in flight this long is closed (nil: never).
    let idleTimeout: TimeAmount?

    init(hub: StreamHub, responder: RequestResponder, firstRequestTimeout: TimeAmount, idleTimeout: TimeAmount?) {
        self.hub = hub
        self.responder = responder
        self.firstRequestTimeout = firstRequestTimeout
        self.idleTimeout = idleTimeout
    }
}

/// The Hummingbird router behind every ordinary request, plus the `Date` and `Server` headers that
/// Hummingbird's `Application` would add.
struct RequestResponder: Sendable {
    let respond: @Sendable (Request, HeadcountRequestContext) async throws -> Response
    let logger: Logger

    init(router: Router<HeadcountRequestContext>, logger: Logger) {
        let responder = router.buildResponder()
        self.respond = { request, context in try await responder.respond(to: request, context: context) }
        self.logger = logger
    }

    func respond(to request: Request, channel: any Channel) async -> Response {
        let context = HeadcountRequestContext(source: .init(channel: channel, logger: logger))
        var response: Response
        do {
            response = try await respond(request, context)
        } catch {
            // The JSON error middleware answers everything a route throws; this is what escapes it.
            logger.debug("unrecognised error", metadata: ["error.type": "\(error)"])
            response = Response(status: .internalServerError, body: .init())
        }
        response.headers[.date] = DateHeader.shared.now
        response.headers[.server] = "headcount"
        return response
    }
}

/// Writes a Hummingbird `Response` to an HTTP/1 connection or an HTTP/2 stream from a task: the head
/// goes out with the first body bytes, each write waits for the channel (backpressure).
enum ResponseWriting {
    /// Returns whether the whole response was written.
    static func write(_ response: Response, to channel: any Channel, version: HTTPVersion, transport: StreamTransport, close: Bool) async -> Bool {
        var head = HTTPResponseHead(response.head)
        if transport == .http1 {
            head.version = version
            if close {
                head.headers.replaceOrAdd(name: "connection", value: "close")
            } else if version.minor == 0 {
                head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
            }
        }
        do {
            try await response.body.write(ChannelBodyWriter(channel: channel, head: head))
            return true
        } catch {
            return false
        }
    }
}

/// A `ResponseBodyWriter` over a channel whose pipeline takes `HTTPServerResponsePart`.
struct ChannelBodyWriter: ResponseBodyWriter {
    let channel: any Channel
    var head: HTTPResponseHead?

    init(channel: any Channel, head: HTTPResponseHead) {
        self.channel = channel
        self.head = head
    }

    mutating func write(_ buffer: ByteBuffer) async throws {
        if let head {
            self.head = nil
            channel.write(HTTPServerResponsePart.head(head), promise: nil)
        }
        try await channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).get()
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        if let head { channel.write(HTTPServerResponsePart.head(head), promise: nil) }
        try await channel.writeAndFlush(HTTPServerResponsePart.end(trailingHeaders.map { HTTPHeaders($0) })).get()
    }
}
