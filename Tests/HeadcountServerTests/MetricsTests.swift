import AsyncHTTPClient
import Foundation
import HeadcountServer
import NIOHTTP1
import Testing

/// Reads one sample's value from Prometheus text, e.g. `headcount_leaves_total{reason="closed"}`.
func metricValue(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.split(separator: " ").last ?? "")
    }
    return nil
}

@Suite("Prometheus metrics", .serialized)
struct MetricsTests {
    @Test("/metrics exposes counters and gauges that move with traffic, with no room or visitor labels")
    func metricsMove() async throws {
        try await withServer { base, _ in
            // Plain HTTP/1.1 here reuses keep-alive connections (streams follow ordinary requests); HTTPS
            // negotiates HTTP/2 and multiplexes everything over one connection.
            let transport = base.hasPrefix("https") ? "http2" : "http1"
            let other = transport == "http1" ? "http2" : "http1"
            let (status, headers, before) = try await TestHTTP.get("\(base)/metrics")
            #expect(status == 200)
            #expect(headers.first(name: "content-type")?.hasPrefix("text/plain") == true)
            #expect(metricValue(before, "headcount_build_info{version=\"0.1.0\"}") == 1)
            let joinsBefore = metricValue(before, "headcount_joins_total") ?? 0

            let a = LiveStream.open("\(base)/rooms/metrics-room/events?visitor=m1")
            let b = LiveStream.open("\(base)/rooms/metrics-room/events?visitor=m2")
            try await a.waitForLatest { $0.int("online") == 2 }
            _ = try await TestHTTP.get("\(base)/rooms/bad%20room/events")
            var during = ""
            try await eventually("gauges show two streams") {
                during = try await TestHTTP.get("\(base)/metrics").body
                return metricValue(during, "headcount_streams_open{transport=\"\(transport)\"}") == 2 && metricValue(during, "headcount_visitors_online") == 2
            }
            // Served by the one stream path, under the transport that carried them, and by nothing else.
            #expect(metricValue(during, "headcount_streams_open{transport=\"\(other)\"}") == 0)
            #expect(metricValue(during, "headcount_joins_total") == joinsBefore + 2)
            #expect((metricValue(during, "headcount_events_sent_total") ?? 0) >= 2)
            #expect((metricValue(during, "headcount_bytes_sent_total") ?? 0) > 100)
            #expect(metricValue(during, "headcount_requests_rejected_total{reason=\"bad_request\"}") == 1)
            #expect(during.contains("headcount_fanout_duration_seconds_bucket"))
            #expect(!during.contains("metrics-room"), "room names must never be labels")
            #expect(!during.contains("m1"))
            a.close()
            b.close()
            try await eventually("leaves counted as closed") {
                let after = try await TestHTTP.get("\(base)/metrics").body
                return metricValue(after, "headcount_leaves_total{reason=\"closed\"}") == 2 && metricValue(after, "headcount_streams_open{transport=\"\(transport)\"}") == 0
            }
        }
    }
}
