import HeadcountCore
@testable import HeadcountServer
import Logging
import ServiceLifecycle
import Testing

@Suite("The plaintext listener")
struct ListenerTests {
    @Test("a second server on a port in use fails with a clear error and the first keeps serving")
    func portInUse() async throws {
        try await withServer(transports: [.http1]) { base, app in
            let port = try #require(Int(base.split(separator: ":").last ?? ""))
            var configuration = HeadcountConfiguration.testing()
            configuration.port = port
            let second = try buildApplication(configuration, logger: Logger(label: "second"))
            let group = ServiceGroup(services: [second], gracefulShutdownSignals: [], logger: Logger(label: "second"))
            await #expect {
                try await group.run()
            } throws: { error in
                "\(error)".contains("cannot listen on 127.0.0.1:\(port): the address is in use")
            }
            // Every stream reaches the first server (SO_REUSEPORT did not let the second share the port).
            let streams = (0..<20).map { LiveStream.open("\(base)/rooms/mine/events?visitor=v\($0)") }
            try await streams[0].waitForLatest { $0.int("online") == 20 }
            #expect(app.registry.counts(room: "mine").online == 20)
            #expect(second.registry.counts(room: "mine").online == 0)
            for s in streams { s.close() }
        }
    }

    @Test("the Date header is an IMF-fixdate")
    func dateHeader() {
        #expect(DateHeader.format(epochSeconds: 784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(DateHeader.format(epochSeconds: 1_796_361_147) == "Fri, 04 Dec 2026 05:12:27 GMT")
        #expect(DateHeader.shared.now.hasSuffix(" GMT"))
    }
}
