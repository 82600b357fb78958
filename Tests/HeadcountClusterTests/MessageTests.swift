import HeadcountCluster
import Testing

@Suite struct MessageTests {
    func exact(_ hashes: [UInt64], version: UInt64 = 3, connections: Int = 2) -> Contribution {
        Contribution(version: version, connections: connections, visitors: hashes.count, payload: .exact(hashes.sorted()))
    }

    @Test func everyKindRoundTrips() {
        let messages: [ClusterMessage] = [
            .contribution(node: "a1", room: "article-42", exact([1, 2, .max])),
            .contribution(node: "a1", room: "empty", exact([], connections: 0)),
            .changed(node: "b2", room: "lobby", version: 17),
            .removed(node: "b2", room: "lobby", version: 18),
            .hello(node: "c3"),
            .bye(node: "c3"),
        ]
        for message in messages {
            #expect(ClusterMessage(line: Substring(message.line)) == message, "\(message.line)")
        }
        let payloads = ClusterMessage.pack(messages)
        #expect(payloads.count == 1)
        #expect(ClusterMessage.unpack(payloads[0]) == messages)
    }

    @Test func smallExactSetsTravelInlineLargeOnesByReference() {
        let small = exact((0..<400).map { UInt64($0) * 0x1_0000_0001 })
        let large = exact((0..<900).map { UInt64($0) * 0x1_0000_0001 })
        let sketch = Contribution(
            version: 9,
            connections: 5000,
            hashes: Set((0..<5000).map { UInt64($0) &* 0x9e37_79b9_7f4a_7c15 }),
            exactLimit: 1000
        )
        guard case .contribution = ClusterMessage.announcing(node: "n", room: "r", small) else {
            Issue.record("a 400-visitor room should travel inline")
            return
        }
        #expect(ClusterMessage.announcing(node: "n", room: "r", large) == .changed(node: "n", room: "r", version: 3))
        #expect(ClusterMessage.announcing(node: "n", room: "r", sketch) == .changed(node: "n", room: "r", version: 9))
        #expect(ClusterMessage.announcing(node: "n", room: "r", small).line.utf8.count < ClusterMessage.inlineLimit)
    }

    @Test func packingRespectsThePayloadLimit() {
        let room = String(repeating: "r", count: 128)
        let messages = (0..<500).map { ClusterMessage.changed(node: "0123456789abcdef", room: "\(room)\($0)", version: UInt64($0)) }
        let payloads = ClusterMessage.pack(messages)
        #expect(payloads.count > 1)
        #expect(payloads.allSatisfy { $0.utf8.count <= ClusterMessage.payloadLimit })
        #expect(payloads.flatMap(ClusterMessage.unpack) == messages)
    }

    @Test func garbageIsIgnored() {
        #expect(ClusterMessage.unpack("") == [])
        #expect(ClusterMessage.unpack("hello\nb x") == [])
        #expect(
            ClusterMessage.unpack("hc1\nz a b c\nb n1\nc n1 r x 1 1 AAAA\nf n1 r\nd n1 r 5") == [
                .bye(node: "n1"), .removed(node: "n1", room: "r", version: 5),
            ]
        )
        #expect(ClusterMessage(line: "c n1 r 1 1 1 !!!") == nil)
        #expect(ClusterMessage(line: "c n1 r 1 -1 1 ") == nil)
    }

    @Test func contributionRowsRoundTrip() throws {
        let hashes: Set<UInt64> = [0, 1, 0xdead_beef, .max]
        let small = Contribution(version: 4, connections: 6, hashes: hashes, exactLimit: 10)
        #expect(small.kind == 0)
        #expect(small.visitors == 4)
        let back = try #require(Contribution(version: 4, connections: 6, visitors: 4, kind: small.kind, data: small.data))
        #expect(back == small)

        let big = Contribution(version: 5, connections: 2000, hashes: Set((0..<2000).map { UInt64($0) &* 0x9e37_79b9_7f4a_7c15 }), exactLimit: 1000)
        #expect(big.kind == 1)
        #expect(big.visitors == 2000)
        #expect(try #require(Contribution(version: 5, connections: 2000, visitors: 2000, kind: big.kind, data: big.data)) == big)

        #expect(Contribution(version: 1, connections: 1, visitors: 1, kind: 0, data: [1, 2, 3]) == nil)
        #expect(Contribution(version: 1, connections: 1, visitors: 1, kind: 7, data: []) == nil)
        #expect(Contribution(version: -1, connections: 1, visitors: 1, kind: 0, data: []) == nil)
    }

    @Test func exactLimitIsInclusive() {
        let hashes = Set((0..<1000).map { UInt64($0) })
        #expect(Contribution(version: 1, connections: 1000, hashes: hashes, exactLimit: 1000).kind == 0)
        #expect(Contribution(version: 1, connections: 1000, hashes: hashes, exactLimit: 999).kind == 1)
    }
}
