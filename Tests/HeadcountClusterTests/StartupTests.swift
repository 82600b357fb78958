import HeadcountCluster
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Start-up against a database that is not there: a clear error, quickly, never a hang. (The tests with a
/// real PostgreSQL run three `headcount serve` processes: scripts/e2e-cluster.)
@Suite struct StartupTests {
    let logger = Logger(label: "test")

    /// A loopback port that refuses connections (bound, then closed).
    func closedPort() -> Int {
        let (fd, port) = listeningSocket(listen: false)
        close(fd)
        return port
    }

    /// A socket bound to a loopback port; with `listen`, the kernel completes handshakes that nobody answers.
    func listeningSocket(listen doListen: Bool) -> (Int32, Int) {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if doListen { _ = listen(fd, 16) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    @Test func refusedConnectionIsAClearErrorAtOnce() {
        let port = closedPort()
        let started = ContinuousClock.now
        do {
            _ = try PostgresBackplane.start(
                configuration: ClusterConfiguration(postgresURL: "postgres://u@127.0.0.1:\(port)/d?sslmode=disable"),
                logger: logger
            )
            Issue.record("start should fail")
        } catch let error as ClusterError {
            #expect(error.kind == .unreachable)
            #expect(error.description.contains("cannot connect to PostgreSQL at 127.0.0.1:\(port)"), "\(error)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(3))
    }

    @Test func silentServerTimesOut() {
        let (fd, port) = listeningSocket(listen: true)
        defer { close(fd) }
        let started = ContinuousClock.now
        var configuration = ClusterConfiguration(postgresURL: "postgres://u@127.0.0.1:\(port)/d?sslmode=disable")
        configuration.connectTimeout = .milliseconds(500)
        configuration.statementTimeout = .milliseconds(250)
        do {
            _ = try PostgresBackplane.start(configuration: configuration, logger: logger)
            Issue.record("start should fail")
        } catch let error as ClusterError {
            #expect(error.kind == .timeout || error.kind == .unreachable, "\(error)")
            #expect(error.description.contains("127.0.0.1:\(port)"), "\(error)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed < .seconds(3), "took \(elapsed)")
    }

    @Test func badURLFailsBeforeAnyConnection() {
        do {
            _ = try PostgresBackplane.start(configuration: ClusterConfiguration(postgresURL: "http://localhost/db"), logger: logger)
            Issue.record("start should fail")
        } catch let error as ClusterError {
            #expect(error.kind == .invalidURL)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
