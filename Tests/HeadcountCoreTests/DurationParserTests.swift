import HeadcountCore
import Testing

@Suite struct DurationParserTests {
    @Test(arguments: [
        ("3", Duration.seconds(3)),
        ("0", .zero),
        ("0.1", .milliseconds(100)),
        ("100ms", .milliseconds(100)),
        ("1.5s", .milliseconds(1_500)),
        ("2m", .seconds(120)),
        ("1h", .seconds(3_600)),
        ("1d", .seconds(86_400)),
        ("250us", .microseconds(250)),
        ("0.5m", .seconds(30)),
        (".5s", .milliseconds(500)),
        ("10", .seconds(10)),
        ("  2m  ", .seconds(120)),
        ("15s", .seconds(15)),
        ("3.", .seconds(3)),
    ])
    func parses(text: String, expected: Duration) {
        #expect(DurationParser.parse(text) == expected, "\(text.debugDescription)")
    }

    @Test(arguments: [
        "", " ", "abc", "-1", "-1s", "5x", "s", "ms", "m", "1 s", "1ss", "1sm", "1.2.3", "nan", "inf", "-inf",
        "1e9", "1000000000s", "1e300h", "one", "1,5s", "--1",
    ])
    func rejects(text: String) {
        #expect(DurationParser.parse(text) == nil, "\(text.debugDescription)")
    }

    @Test func secondsOfADuration() {
        #expect(Duration.milliseconds(1_500).seconds == 1.5)
        #expect(Duration.zero.seconds == 0)
        #expect(Duration.seconds(3_600).seconds == 3_600)
        #expect(Duration.nanoseconds(1).seconds == 1e-9)
    }
}
