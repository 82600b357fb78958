import NIOCore
import NIOHPACK
import NIOHTTP2

/// The handler of one HTTP/2 bench stream (a child channel of an `H2Connection`): sends the `GET`
/// as one HEADERS frame with END_STREAM, checks the response's `:status`, and feeds the payload of
/// every DATA frame to the stream's `SSEParser` (through `StreamRecorder`).
final class H2StreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// The request's headers, written when the stream channel becomes active; nil: someone writes
    /// them later (the fan-out trigger).
    private let request: HPACKHeaders?
    private let recorder: StreamRecorder
    private var sawHead = false

    init(table: ClientTable, slot: Int, request: HPACKHeaders?, setup: StreamRecorder.Setup) {
        self.request = request
        self.recorder = StreamRecorder(table: table, slot: slot, setup: setup)
    }

    func channelActive(context: ChannelHandlerContext) {
        if let request {
            context.writeAndFlush(wrapOutboundOut(Self.requestFrame(request)), promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if !sawHead {
                switch Self.status(of: headers.headers) {
                case nil:
                    fail("HTTP/2 response without :status", context: context)
                    return
                case let code? where code >= 100 && code < 200:
                    return  // an informational head: the real one follows
                case 200?:
                    sawHead = true
                    recorder.answeredOK()
                case let code?:
                    fail("HTTP \(code)", context: context)
                    return
                }
            }
            if headers.endStream {
                recorder.noteEnd("stream ended by the server")
                context.close(promise: nil)
            }
        case .data(let data):
            if case .byteBuffer(let buffer) = data.data { recorder.body(buffer) }
            if data.endStream {
                recorder.noteEnd("stream ended by the server")
                context.close(promise: nil)
            }
        case .rstStream(let code):
            fail("stream reset by the server (\(code))", context: context)
        default:
            break
        }
    }

    private func fail(_ reason: String, context: ChannelHandlerContext) {
        recorder.fail(reason)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(StreamConnector.describe(error), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        recorder.unansweredReason = "HTTP/2 stream closed before the response"
        recorder.ended()
        context.fireChannelInactive()
    }

    // MARK: Frames

    /// The request header fields of a `GET` of `url`, pseudo-headers first (an SSE stream unless
    /// `accept` says otherwise).
    static func requestHeaderFields(_ url: LoopbackURL, accept: String = "text/event-stream") -> [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = [
            (":method", "GET"),
            (":scheme", url.tls ? "https" : "http"),
            (":authority", url.hostHeader),
            (":path", url.pathAndQuery),
            ("accept", accept),
        ]
        if accept == "text/event-stream" { fields.append(("cache-control", "no-cache")) }
        fields.append(("user-agent", "headcount-bench"))
        return fields
    }

    static func requestHeaders(_ url: LoopbackURL, accept: String = "text/event-stream") -> HPACKHeaders {
        HPACKHeaders(requestHeaderFields(url, accept: accept).map { ($0.name, $0.value) })
    }

    /// A request without a body: one HEADERS frame with END_STREAM.
    static func requestFrame(_ headers: HPACKHeaders) -> HTTP2Frame.FramePayload {
        .headers(.init(headers: headers, endStream: true))
    }

    /// The `:status` of a response head, if it is a valid three-digit code.
    static func status(of headers: HPACKHeaders) -> Int? {
        statusCode(headers.first(name: ":status"))
    }

    /// A `:status` value as a code: exactly three digits, 100...599.
    static func statusCode(_ text: String?) -> Int? {
        guard let text, text.utf8.count == 3, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let code = Int(text), (100...599).contains(code) else { return nil }
        return code
    }
}
