import HeadcountCluster
import Testing

@Suite struct ConfigurationTests {
    @Test func fullURL() throws {
        let url = try PostgresURL("postgres://headcount:s%40cret@127.0.0.1:5433/presence?sslmode=disable")
        #expect(url.host == "127.0.0.1")
        #expect(url.port == 5433)
        #expect(url.user == "headcount")
        #expect(url.password == "s@cret")
        #expect(url.database == "presence")
        #expect(url.sslMode == .disable)
        #expect(url.target == "127.0.0.1:5433")
        #expect(!url.redacted.contains("cret"))
    }

    @Test func defaults() throws {
        let url = try PostgresURL("postgresql://me@db.internal")
        #expect(url.port == 5432)
        #expect(url.password == nil)
        #expect(url.database == nil)
        #expect(url.sslMode == .prefer)
    }

    @Test func ipv6AndSocket() throws {
        #expect(try PostgresURL("postgres://u@[::1]:5432/d").target == "[::1]:5432")
        let socket = try PostgresURL("postgres://u@/d?host=/var/run/postgresql")
        #expect(socket.socketDirectory == "/var/run/postgresql")
        #expect(socket.target == "/var/run/postgresql/.s.PGSQL.5432")
    }

    @Test(arguments: [
        ("", "empty"),
        ("mysql://u@h/d", "scheme"),
        ("postgres://h/d", "no user"),
        ("postgres://u@:5432/d", "no host"),
        ("postgres://u@h:99999/d", "port"),
        ("postgres://u@h:abc/d", "not a valid URL"),
        ("postgres://u@h/d?sslmode=maybe", "sslmode"),
        ("postgres://u@h/d?timeout=3", "unknown parameter"),
        ("postgres://u@h/a/b", "database name"),
        ("postgres://u@h/d?host=relative", "socket directory"),
    ])
    func invalidURLsSayWhy(url: String, fragment: String) {
        do {
            _ = try PostgresURL(url)
            Issue.record("\(url) should be rejected")
        } catch {
            #expect(error.kind == .invalidURL)
            #expect(error.description.contains(fragment), "\(error.description)")
            #expect(error.description.hasPrefix("--postgres:"))
        }
    }

    @Test func passwordsNeverAppearInErrors() {
        do {
            _ = try PostgresURL("postgres://u:hunter2@h/d?sslmode=nope")
            Issue.record("should be rejected")
        } catch {
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test func backoffDoublesUpToTheCap() {
        let c = ClusterConfiguration(postgresURL: "postgres://u@h", reconnectMinimum: .milliseconds(100), reconnectMaximum: .seconds(1))
        #expect(c.backoff(failures: 1) == .milliseconds(100))
        #expect(c.backoff(failures: 2) == .milliseconds(200))
        #expect(c.backoff(failures: 4) == .milliseconds(800))
        #expect(c.backoff(failures: 5) == .seconds(1))
        #expect(c.backoff(failures: 500) == .seconds(1))
        #expect(c.leaseRenewal == ClusterConfiguration.defaultNodeTTL / 3)
    }
}
