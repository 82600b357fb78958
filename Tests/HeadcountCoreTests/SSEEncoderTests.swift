import HeadcountCore
import NIOCore
import Testing

@Suite struct SSEEncoderTests {
    @Test func roomEventInRoomFormat() {
        let counts = RoomCounts(room: "lobby", online: 3, connections: 5, peak: 9, version: 17)
        #expect(String(buffer: SSEEncoder.roomEvent(counts, format: .room)) == "id: 17\ndata: {\"room\":\"lobby\",\"online\":3,\"connections\":5}\n\n")
    }

    @Test func roomEventInLegacyFormat() {
        let counts = RoomCounts(room: "lobby", online: 3, connections: 5, peak: 9, version: 17)
        #expect(String(buffer: SSEEncoder.roomEvent(counts, format: .legacy)) == "data: {\"onlineUsers\":3}\n\n")
        #expect(String(buffer: SSEEncoder.roomEvent(RoomCounts(room: "x"), format: .legacy)) == "data: {\"onlineUsers\":0}\n\n")
    }

    @Test func partialFiguresAreMarked() {
        let counts = RoomCounts(room: "r", online: 1, connections: 2, version: 3, partial: true)
        #expect(String(buffer: SSEEncoder.roomEvent(counts, format: .room)) == "id: 3\ndata: {\"room\":\"r\",\"online\":1,\"connections\":2,\"partial\":true}\n\n")
        let site = SiteCounts(online: 1, connections: 2, rooms: 1, version: 4, partial: true)
        #expect(String(buffer: SSEEncoder.siteEvent(site)) == "id: 4\ndata: {\"online\":1,\"connections\":2,\"rooms\":1,\"partial\":true}\n\n")
    }

    @Test func roomJSONWithPeak() {
        var buffer = ByteBuffer()
        SSEEncoder.writeRoomJSON(RoomCounts(room: "r", online: 1, connections: 2, peak: 7, version: 3), into: &buffer, includePeak: true)
        #expect(String(buffer: buffer) == "{\"room\":\"r\",\"online\":1,\"connections\":2,\"peak\":7}")
    }

    @Test func siteEvent() {
        let site = SiteCounts(online: 12, connections: 30, rooms: 4, version: 99)
        #expect(String(buffer: SSEEncoder.siteEvent(site)) == "id: 99\ndata: {\"online\":12,\"connections\":30,\"rooms\":4}\n\n")
    }

    @Test func heartbeatAndRetry() {
        #expect(String(buffer: SSEEncoder.heartbeat()) == ": heartbeat\n\n")
        #expect(SSEEncoder.heartbeatBytes == Array(": heartbeat\n\n".utf8))
        #expect(String(buffer: SSEEncoder.retry(milliseconds: 2_500)) == "retry: 2500\n\n")
        #expect(String(buffer: SSEEncoder.retry(milliseconds: 0)) == "retry: 0\n\n")
    }

    @Test(arguments: [
        (Int64(0), "0"), (7, "7"), (10, "10"), (1_234_567_890, "1234567890"), (-42, "-42"),
        (Int64.max, "9223372036854775807"), (Int64.min, "-9223372036854775808"),
    ])
    func writeDecimalSigned(value: Int64, expected: String) {
        var buffer = ByteBuffer()
        buffer.writeDecimal(value)
        #expect(String(buffer: buffer) == expected)
    }

    @Test func writeDecimalUnsignedExtremes() {
        var buffer = ByteBuffer()
        buffer.writeDecimal(UInt64.max)
        buffer.writeString(" ")
        buffer.writeDecimal(UInt8(255))
        buffer.writeString(" ")
        buffer.writeDecimal(Int.min)
        #expect(String(buffer: buffer) == "18446744073709551615 255 -9223372036854775808")
    }

    @Test func writeDecimalMatchesDescriptionForManyValues() {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<2_000 {
            let value = Int64(bitPattern: generator.next()) >> Int64(generator.next() % 63)
            var buffer = ByteBuffer()
            buffer.writeDecimal(value)
            #expect(String(buffer: buffer) == String(value))
        }
    }
}
