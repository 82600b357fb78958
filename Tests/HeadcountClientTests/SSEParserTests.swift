import HeadcountClient
import NIOCore
import Testing

/// Feeds `chunks` in order and returns everything the parser reported, then `finish()`.
private func parse(_ chunks: [[UInt8]], finish: Bool = true) -> (outputs: [SSEOutput], parser: SSEParser) {
    var parser = SSEParser()
    var outputs: [SSEOutput] = []
    for chunk in chunks { parser.feed(chunk) { outputs.append($0) } }
    if finish { parser.finish() }
    return (outputs, parser)
}

private func parse(_ text: String) -> [SSEOutput] { parse([Array(text.utf8)]).outputs }

private func events(_ outputs: [SSEOutput]) -> [SSEEvent] {
    outputs.compactMap { if case .event(let e) = $0 { e } else { nil } }
}

/// A stream of what the Headcount server sends, with every SSE feature the clients must handle.
private let headcountStream = "retry: 2500\n\nid: 17\ndata: {\"room\":\"r\",\"online\":3,\"connections\":4}\n\n: heartbeat\n\nid: 18\ndata: {\"room\":\"r\",\"online\":4,\"connections\":5}\n\n"

@Suite("SSEParser")
struct SSEParserTests {
    @Test("a Headcount stream: retry, ids, data, heartbeat")
    func headcountStreamParses() {
        let outputs = parse(headcountStream)
        #expect(outputs == [
            .retry(2500),
            .event(SSEEvent(data: "{\"room\":\"r\",\"online\":3,\"connections\":4}", lastEventID: "17")),
            .comment("heartbeat"),
            .event(SSEEvent(data: "{\"room\":\"r\",\"online\":4,\"connections\":5}", lastEventID: "18")),
        ])
    }

    @Test("split at every byte boundary gives the same result", arguments: [
        headcountStream,
        "data: a\r\ndata: b\r\n\r\n: c\r\n\r\nid: x\rdata: y\r\r",
        "\u{FEFF}event: e\ndata: é ü 日本\n\n",
        "data:no-space\ndata:  two spaces\n\nretry: 10\n\ndata\n\n",
    ])
    func everySplit(text: String) {
        let bytes = Array(text.utf8)
        let whole = parse([bytes]).outputs
        #expect(!whole.isEmpty)
        for cut in 0...bytes.count {
            let split = parse([Array(bytes[0..<cut]), Array(bytes[cut...])]).outputs
            #expect(split == whole, "split at \(cut)")
        }
        // And one byte at a time.
        #expect(parse(bytes.map { [$0] }).outputs == whole)
    }

    @Test("split at every pair of boundaries")
    func everyTwoSplits() {
        let bytes = Array("id: 1\r\ndata: x\r\n\r\n".utf8)
        let whole = parse([bytes]).outputs
        for a in 0...bytes.count {
            for b in a...bytes.count {
                let out = parse([Array(bytes[0..<a]), Array(bytes[a..<b]), Array(bytes[b...])]).outputs
                #expect(out == whole, "splits at \(a), \(b)")
            }
        }
    }

    @Test("LF, CRLF and CR line endings are equivalent")
    func lineEndings() {
        let lf = parse("id: 1\ndata: a\ndata: b\n\n")
        let crlf = parse("id: 1\r\ndata: a\r\ndata: b\r\n\r\n")
        let cr = parse("id: 1\rdata: a\rdata: b\r\r")
        let mixed = parse("id: 1\r\ndata: a\rdata: b\n\r\n")
        let expected: [SSEOutput] = [.event(SSEEvent(data: "a\nb", lastEventID: "1"))]
        #expect(lf == expected)
        #expect(crlf == expected)
        #expect(cr == expected)
        #expect(mixed == expected)
    }

    @Test("CR at the end of one read and LF at the start of the next is one line ending")
    func crlfAcrossReads() {
        let out = parse([Array("data: a\r".utf8), Array("\n\r".utf8), Array("\ndata: b\n\n".utf8)]).outputs
        #expect(events(out) == [SSEEvent(data: "a"), SSEEvent(data: "b")])
    }

    @Test("two CRs are two line endings (a blank line)")
    func doubleCR() {
        #expect(events(parse("data: a\r\rdata: b\r\r")) == [SSEEvent(data: "a"), SSEEvent(data: "b")])
    }

    @Test("comments are reported and do not dispatch")
    func comments() {
        let out = parse(": heartbeat\n\n:no space\n:\ndata: x\n: inside\n\n")
        #expect(out == [
            .comment("heartbeat"), .comment("no space"), .comment(""), .comment("inside"),
            .event(SSEEvent(data: "x")),
        ])
    }

    @Test("multi-line data keeps inner newlines and drops the last")
    func multiLineData() {
        #expect(events(parse("data: first\ndata:\ndata: third\n\n")) == [SSEEvent(data: "first\n\nthird")])
        #expect(events(parse("data\n\n")) == [SSEEvent(data: "")])
        #expect(events(parse("data:\ndata:\n\n")) == [SSEEvent(data: "\n")])
    }

    @Test("only one leading space of a value is removed")
    func valueSpace() {
        #expect(events(parse("data:  two\n\n")) == [SSEEvent(data: " two")])
        #expect(events(parse("data:x\n\n")) == [SSEEvent(data: "x")])
    }

    @Test("id sets the last event id for this and later events; NUL ids are ignored")
    func ids() {
        let out = events(parse("id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 9\n\ndata: d\n\nid: x\u{0}y\ndata: e\n\n"))
        #expect(out.map(\.lastEventID) == ["7", "7", "", "9", "9"])
        var parser = SSEParser()
        _ = parser.feed(Array("id: 42\n\n".utf8))
        #expect(parser.lastEventID == "42")
    }

    @Test("retry takes digits only")
    func retry() {
        let out = parse("retry: 1500\nretry: 15x\nretry:\nretry: -1\nretry: 99\n\n")
        #expect(out == [.retry(1500), .retry(99)])
        var parser = SSEParser()
        _ = parser.feed(Array("retry: 3000\n\n".utf8))
        #expect(parser.retry == 3000)
    }

    @Test("event type defaults to message and resets after dispatch")
    func eventType() {
        let out = events(parse("event: update\ndata: a\n\ndata: b\n\nevent: x\n\ndata: c\n\n"))
        #expect(out.map(\.type) == ["update", "message", "message"])
    }

    @Test("an event without its trailing blank line is not dispatched")
    func undispatched() {
        #expect(events(parse("data: a\n")).isEmpty)
        #expect(events(parse("data: a")).isEmpty)
        #expect(events(parse("data: a\n\ndata: b\n")) == [SSEEvent(data: "a")])
        // Not even when more bytes could complete it later: feed without finish.
        let (out, _) = parse([Array("data: a\n".utf8)], finish: false)
        #expect(events(out).isEmpty)
    }

    @Test("an unterminated last line is not processed")
    func unterminatedLine() {
        var parser = SSEParser()
        _ = parser.feed(Array("retry: 10\n\nretry: 20".utf8))
        parser.finish()
        #expect(parser.retry == 10)
    }

    @Test("finish() drops the pending event and resets for a new stream")
    func finishResets() {
        var parser = SSEParser()
        var got: [SSEEvent] = []
        parser.feed(Array("data: lost\n".utf8)) { if case .event(let e) = $0 { got.append(e) } }
        parser.finish()
        parser.feed(Array("\ndata: kept\n\n".utf8)) { if case .event(let e) = $0 { got.append(e) } }
        #expect(got == [SSEEvent(data: "kept")])
    }

    @Test("a leading BOM is skipped once, also when split")
    func bom() {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let body = Array("data: x\n\n".utf8)
        #expect(events(parse([bom + body]).outputs) == [SSEEvent(data: "x")])
        #expect(events(parse([[0xEF], [0xBB], [0xBF] + body]).outputs) == [SSEEvent(data: "x")])
        // A second BOM is part of the first field name, which is then unknown: no event.
        #expect(events(parse([bom + bom + body]).outputs).isEmpty)
        // A BOM in the middle of the stream is data.
        let mid = events(parse([Array("data: a\n\n".utf8), Array("data: ".utf8) + bom + Array("b\n\n".utf8)]).outputs)
        #expect(mid == [SSEEvent(data: "a"), SSEEvent(data: "\u{FEFF}b")])
    }

    @Test("bytes that only start like a BOM are kept")
    func almostBOM() {
        // If the partial BOM were swallowed, ": c" would be a comment; kept, it is an unknown field.
        #expect(parse([[0xEF] + Array(": c\n\n".utf8)]).outputs.isEmpty)
        #expect(parse([[0xEF, 0xBB] + Array(": c\n\n".utf8)]).outputs.isEmpty)
        #expect(parse([[0xEF], [0xBB], Array(": c\n\n".utf8)]).outputs.isEmpty)
        #expect(parse([[0xEF, 0xBB, 0xBF] + Array(": c\n\n".utf8)]).outputs == [.comment("c")])
        // A partial BOM at the very end of the stream is dropped with the unterminated line.
        #expect(parse([[0xEF]]).outputs.isEmpty)
    }

    @Test("unknown fields and lines without a colon are ignored")
    func unknownFields() {
        #expect(parse("foo: bar\nevent\nDATA: no\nhello\n\n").isEmpty)
    }

    @Test("ByteBuffer feeding leaves the buffer untouched")
    func byteBuffer() {
        var parser = SSEParser()
        let buffer = ByteBuffer(string: "data: x\n\n")
        var got: [SSEEvent] = []
        parser.feed(buffer) { if case .event(let e) = $0 { got.append(e) } }
        #expect(got == [SSEEvent(data: "x")])
        #expect(buffer.readableBytes == 9)
    }

    @Test("an overlong line is truncated, not grown without bound")
    func longLine() {
        var parser = SSEParser(maxLineLength: 32)
        let long = "data: " + String(repeating: "x", count: 100) + "\n\n"
        let got = parser.feed(Array(long.utf8))
        #expect(got.count == 1)
        #expect(got.first?.data.count == 26)
    }
}
