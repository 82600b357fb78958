import Foundation
public import PostgresNIO

/// A parsed `--postgres` URL: `postgres[ql]://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...&host=/socket/dir]`.
public struct PostgresURL: Sendable, Hashable {
    public enum SSLMode: String, Sendable, Hashable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    /// A Unix socket directory (`?host=/var/run/postgresql`), instead of TCP.
    public var socketDirectory: String?
    public var user: String
    public var password: String?
    public var database: String?
    public var sslMode: SSLMode

    /// Parses and checks a URL; the error says what is wrong, never echoing the password.
    public init(_ text: String) throws(ClusterError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw .invalidURL("the URL is empty") }
        guard let components = URLComponents(string: trimmed), let scheme = components.scheme?.lowercased() else {
            throw .invalidURL("not a valid URL (is the port a number? percent-encode special characters of the password)")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw .invalidURL("the scheme must be postgres:// or postgresql://, not \(scheme)://")
        }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
        let known: Set<String> = ["sslmode", "host", "connect_timeout", "application_name"]
        if let unknown = query.keys.sorted().first(where: { !known.contains($0) }) {
            throw .invalidURL("unknown parameter '\(unknown)' (known: sslmode, host)")
        }
        if let dir = query["host"], !dir.isEmpty {
            guard dir.hasPrefix("/") else { throw .invalidURL("the host parameter must be a socket directory (an absolute path)") }
            socketDirectory = dir
        } else {
            socketDirectory = nil
        }
        host = components.host ?? ""
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty && socketDirectory == nil { throw .invalidURL("the URL names no host") }
        if let p = components.port {
            guard (1...65535).contains(p) else { throw .invalidURL("port \(p) is outside 1...65535") }
            port = p
        } else {
            port = 5432
        }
        guard let user = components.user, !user.isEmpty else { throw .invalidURL("the URL names no user") }
        self.user = user
        password = components.password
        var path = components.path
        while path.hasPrefix("/") { path.removeFirst() }
        guard !path.contains("/") else { throw .invalidURL("the database name cannot contain '/'") }
        database = path.isEmpty ? nil : path
        if let mode = query["sslmode"] {
            guard let parsed = SSLMode(rawValue: mode) else {
                throw .invalidURL("sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            sslMode = parsed
        } else {
            sslMode = .prefer
        }
    }

    /// Where the node connects, for messages: `host:port` or the socket path (no user, no password).
    public var target: String {
        if let socketDirectory { return "\(socketDirectory)/.s.PGSQL.\(port)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The URL without its password, for logs.
    public var redacted: String {
        "postgres://\(user)@\(socketDirectory == nil ? target : "")/\(database ?? "")"
    }

    /// The driver's configuration for this URL.
    public func connectionConfiguration(connectTimeout: Duration) throws(ClusterError) -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let socketDirectory {
            configuration = .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            let tls: PostgresConnection.Configuration.TLS
            do {
                switch sslMode {
                case .disable:
                    tls = .disable
                case .allow, .prefer:
                    var c = TLSConfiguration.makeClientConfiguration()
                    c.certificateVerification = .none
                    tls = .prefer(try NIOSSLContext(configuration: c))
                case .require:
                    var c = TLSConfiguration.makeClientConfiguration()
                    c.certificateVerification = .none
                    tls = .require(try NIOSSLContext(configuration: c))
                case .verifyCA, .verifyFull:
                    var c = TLSConfiguration.makeClientConfiguration()
                    c.certificateVerification = sslMode == .verifyFull ? .fullVerification : .noHostnameVerification
                    tls = .require(try NIOSSLContext(configuration: c))
                }
            } catch {
                throw ClusterError(.invalidURL, "--postgres: cannot set up TLS (sslmode=\(sslMode.rawValue)): \(error)", underlying: error)
            }
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
        configuration.options.connectTimeout = .nanoseconds(Int64(connectTimeout / .nanoseconds(1)))
        return configuration
    }
}
