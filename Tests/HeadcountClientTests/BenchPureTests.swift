import HeadcountClient
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite("LoopbackURL")
struct LoopbackURLTests {
    @Test("loopback hosts are accepted", arguments: [
        ("http://127.0.0.1:8080", "127.0.0.1", 8080, "/"),
        ("http://127.1.2.3:1/x?y=1", "127.1.2.3", 1, "/x?y=1"),
        ("http://localhost:9000/sub/{room}", "localhost", 9000, "/sub/{room}"),
        ("http://[::1]:8080/", "::1", 8080, "/"),
        ("HTTP://LOCALHOST", "localhost", 80, "/"),
        ("http://127.0.0.1:8080?watch=1", "127.0.0.1", 8080, "/?watch=1"),
    ])
    func accepted(input: (String, String, Int, String)) throws {
        let url = try LoopbackURL(parsing: input.0)
        #expect(url.host == input.1)
        #expect(url.port == input.2)
        #expect(url.pathAndQuery == input.3)
    }

    @Test("everything else is refused", arguments: [
        "http://10.0.0.1:8080", "http://example.com", "http://128.0.0.1", "http://127.0.0.256",
        "http://127.0.0", "http://[::2]:80", "https://127.0.0.1", "ftp://127.0.0.1", "127.0.0.1:8080",
        "http://127.0.0.1:0", "http://127.0.0.1:99999", "http://user@127.0.0.1", "http://0.0.0.0:80",
        "http://localhost.example.com", "http://127.0.0.1.nip.io",
    ])
    func refused(input: String) {
        #expect(throws: LoopbackURL.ParseError.self) { try LoopbackURL(parsing: input) }
    }

    @Test("room substitution")
    func rooms() throws {
        let template = try LoopbackURL(parsing: "http://127.0.0.1:81/sub/{room}?x=1")
        #expect(template.substitutingRoom("a-1").pathAndQuery == "/sub/a-1?x=1")
        let plain = try LoopbackURL(parsing: "http://127.0.0.1:81/pub")
        #expect(plain.substitutingRoom("r").pathAndQuery == "/pub/r")
        let slash = try LoopbackURL(parsing: "http://127.0.0.1:81/pub/")
        #expect(slash.substitutingRoom("r").pathAndQuery == "/pub/r")
    }
}

@Suite("EventValue")
struct EventValueTests {
    @Test func values() {
        let room = "{\"room\":\"r\",\"online\":1234,\"connections\":1300}"
        #expect(EventValue.jsonInteger("online", in: room) == 1234)
        #expect(EventValue.jsonInteger("connections", in: room) == 1300)
        #expect(EventValue.jsonInteger("rooms", in: room) == nil)
        #expect(EventValue.jsonInteger("online", in: "{\"onlineUsers\":5}") == nil)
        #expect(EventValue.jsonInteger("onlineUsers", in: "{\"onlineUsers\":5}") == 5)
        #expect(EventValue.jsonInteger("online", in: "{\"online\": 7}") == 7)
        #expect(EventValue.jsonInteger("online", in: "{\"online\":\"x\"}") == nil)
        #expect(EventValue.sequence(in: "seq=3 run=abc") == 3)
        #expect(EventValue.sequence(in: "nothing") == nil)
        #expect(EventValue.jsonInteger("online", in: "{\"online\":99999999999999999999999}") == nil)
    }
}

@Suite("Statistics")
struct StatisticsTests {
    @Test func percentiles() {
        let values = (1...100).map(Double.init)
        #expect(Statistics.percentile(sorted: values, 50) == 50)
        #expect(Statistics.percentile(sorted: values, 90) == 90)
        #expect(Statistics.percentile(sorted: values, 99) == 99)
        #expect(Statistics.percentile(sorted: values, 100) == 100)
        #expect(Statistics.percentile(sorted: values, 0) == 1)
        #expect(Statistics.percentile(sorted: [5.0], 99) == 5)
        #expect(Statistics.percentile(sorted: [Double](), 50) == nil)
        #expect(Statistics.percentile(sorted: [1.0, 2, 3], 50) == 2)
    }

    @Test func medians() {
        #expect(Statistics.median([3, 1, 2]) == 2)
        #expect(Statistics.median([4, 1, 2, 3]) == 2.5)
        #expect(Statistics.median([Double]()) == nil)
        #expect(Statistics.median([nil, 2.0, nil]) == 2)
        let a = LatencySummary(milliseconds: [1, 2, 3])!
        let b = LatencySummary(milliseconds: [10, 20, 30])!
        let c = LatencySummary(milliseconds: [5, 6, 7])!
        let m = LatencySummary.medians([a, b, c])!
        #expect(m.p50Ms == 6)
        #expect(m.maxMs == 7)
        #expect(LatencySummary(milliseconds: []) == nil)
    }
}

@Suite("ProcessStats")
struct ProcessStatsTests {
    @Test func status() {
        let text = "Name:\theadcount\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 100 kB\n"
        #expect(ProcessStats.parseRSS(status: text) == 12345)
        #expect(ProcessStats.parseRSS(status: "Name: x\n") == nil)
    }

    @Test func stat() {
        // A command name with spaces and parentheses; utime 150, stime 50, ppid 1.
        let text = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0 100 1000 200 18446744073709551615"
        let parsed = ProcessStats.parseStat(text)
        #expect(parsed?.ticks == 200)
        #expect(parsed?.ppid == 1)
        #expect(ProcessStats.parseStat("garbage") == nil)
    }

    @Test func netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 17\nIpExt: InNoRoutes\nIpExt: 0\n"
        #expect(ProcessStats.tcpExtCounter("ListenOverflows", netstat: text) == 17)
        #expect(ProcessStats.tcpExtCounter("Nope", netstat: text) == nil)
        #expect(ProcessStats.tcpExtCounter("ListenOverflows", netstat: "") == nil)
    }

    @Test func selfSample() throws {
        let sample = try #require(ProcessStats.sample(pid: getpid()))
        #expect(sample.rssKB > 0)
        #expect(sample.cpuSeconds >= 0)
        #expect(ProcessStats.sample(pid: Int32.max) == nil)
    }
}

@Suite("BenchPlan")
struct BenchPlanTests {
    func plan(_ edit: (inout BenchConfiguration) -> Void) throws -> BenchPlan {
        var c = BenchConfiguration(url: "http://127.0.0.1:8080")
        c.runID = "abc"
        edit(&c)
        return try BenchPlan(c)
    }

    @Test func roomsAndVisitors() throws {
        let p = try plan { $0.subscribers = 10; $0.rooms = 3; $0.fanoutRounds = 2 }
        #expect(p.roomNames == ["bench-0", "bench-1", "bench-2"])
        #expect(p.roomSizes == [4, 3, 3])
        #expect(p.roomIndex(client: 7) == 1)
        #expect(p.convergenceValue(room: 0) == 4)
        #expect(p.fanoutThresholds(room: 0) == 2)
        #expect(p.fanoutThresholds(room: 1) == 0)
        #expect(p.streamURL(client: 5).pathAndQuery == "/rooms/bench-2/events?visitor=bench-abc-5")
        #expect(p.streamURL(room: 0, visitor: p.triggerVisitorID(round: 1)).pathAndQuery == "/rooms/bench-0/events?visitor=bench-abc-x1")
        #expect(p.valueKind == .online)
    }

    @Test func watchLegacyAndNchan() throws {
        let w = try plan { $0.watch = true; $0.subscribers = 4 }
        #expect(w.streamURL(client: 1).pathAndQuery == "/rooms/bench-0/events?watch=1")
        #expect(w.convergenceValue(room: 0) == 0)
        let l = try plan { $0.legacy = true }
        #expect(l.roomNames == ["lobby"])
        #expect(l.streamURL(client: 2).pathAndQuery == "/api/sse?visitor=bench-abc-2")
        #expect(l.valueKind == .onlineUsers)
        let n = try plan {
            $0.url = "http://127.0.0.1:9000/sub/{room}"
            $0.nchanPublish = "http://127.0.0.1:9000/pub/{room}"
            $0.rooms = 2
            $0.subscribers = 4
        }
        #expect(n.target == .nchan)
        #expect(n.roomNames == ["bench-abc-0", "bench-abc-1"])
        #expect(n.streamURL(client: 3).pathAndQuery == "/sub/bench-abc-1")
        #expect(n.publishURL(room: 0)?.pathAndQuery == "/pub/bench-abc-0")
        #expect(n.convergenceValue(room: 0) == 0)
        #expect(n.valueKind == .sequence)
    }

    @Test func slicesCoverEveryClientOnce() throws {
        let p = try plan { $0.subscribers = 15_001 }
        for workers in 1...7 {
            let slices = (0..<workers).map { p.slice(worker: $0, of: workers) }
            #expect(slices.map(\.count).reduce(0, +) == 15_001)
            #expect(slices.first?.lowerBound == 0 && slices.last?.upperBound == 15_001)
            for (a, b) in zip(slices, slices.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
        }
        #expect(try plan { $0.sourceAddresses = 4 }.sourceAddress(client: 6) == "127.0.0.3")
    }

    @Test func refusals() {
        #expect(throws: BenchError.self) { try plan { $0.url = "http://192.168.1.1" } }
        #expect(throws: BenchError.self) { try plan { $0.nchanPublish = "http://example.com/pub" } }
        #expect(throws: BenchError.self) { try plan { $0.rooms = 0 } }
        #expect(throws: BenchError.self) { try plan { $0.room = "x"; $0.rooms = 2 } }
        #expect(throws: BenchError.self) { try plan { $0.room = "bad room" } }
        #expect(throws: BenchError.self) { try plan { $0.processes = 2; $0.subscribers = 1 } }
        #expect(throws: BenchError.self) { try plan { $0.sourceAddresses = 0 } }
    }
}
