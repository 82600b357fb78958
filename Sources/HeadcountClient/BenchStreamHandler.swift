import NIOCore
import NIOHTTP1

/// The last handler of an HTTP/1.1 bench stream's pipeline (after NIOHTTP1's client codec, which
/// undoes the chunked encoding). With a `warmup` request (`--keepalive`) the connection first makes
/// that request and reads its response to the end, then asks for the stream on the same connection.
final class BenchStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    struct Setup: Sendable {
        /// Request written as soon as the connection is up (after the warmup); nil: someone writes it later.
        var request: HTTPRequestHead?
        /// The ordinary request made first on the same connection (`--keepalive`), or nil.
        var warmup: HTTPRequestHead?
        var recorder: StreamRecorder.Setup
        /// Completed when the warmup's response has ended (failed if the connection closes first).
        var warmupDone: EventLoopPromise<Void>? = nil
    }

    private let setup: Setup
    private let recorder: StreamRecorder
    /// The warmup's response has not ended yet: response parts belong to it.
    private var inWarmup: Bool

    init(table: ClientTable, slot: Int, setup: Setup) {
        self.setup = setup
        self.recorder = StreamRecorder(table: table, slot: slot, setup: setup.recorder)
        self.inWarmup = setup.warmup != nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if let warmup = setup.warmup {
            send(warmup, context: context)
        } else if let request = setup.request {
            send(request, context: context)
        }
        context.fireChannelActive()
    }

    private func send(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if inWarmup {
            warmupRead(part, context: context)
            return
        }
        switch part {
        case .head(let head):
            guard head.status == .ok else {
                fail("HTTP \(head.status.code)", context: context)
                return
            }
            recorder.answeredOK()
        case .body(let buffer):
            recorder.body(buffer)
        case .end:
            recorder.noteEnd("stream ended by the server")
            context.close(promise: nil)
        }
    }

    private func warmupRead(_ part: HTTPClientResponsePart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            guard (200..<300).contains(head.status.code) else {
                fail("keep-alive request \(setup.warmup?.uri ?? ""): HTTP \(head.status.code)", context: context)
                return
            }
            if !head.isKeepAlive {
                fail("keep-alive request \(setup.warmup?.uri ?? ""): the server closes the connection after it", context: context)
            }
        case .body:
            break
        case .end:
            inWarmup = false
            setup.warmupDone?.succeed()
            // A close from now on, before the stream's answer, is the server refusing a second request.
            recorder.unansweredReason = "connection closed after the keep-alive request"
            if let request = setup.request { send(request, context: context) }
        }
    }

    private func fail(_ reason: String, context: ChannelHandlerContext) {
        recorder.fail(reason)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("\(error)", context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        setup.warmupDone?.fail(BenchError("connection closed before the keep-alive request was answered"))
        recorder.ended()
        context.fireChannelInactive()
    }
}
