import PostgresNIO

/// Why the cluster backplane could not start or lost the database. The description is the message an
/// operator sees; the driver's error, when there is one, is kept as `underlying`.
public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Hashable {
        case invalidURL
        case unreachable
        case rejected
        case timeout
        case schema
        case connectionLost
    }
    public let kind: Kind
    public let message: String
    public let underlying: (any Error)?

    public init(_ kind: Kind, _ message: String, underlying: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }

    static func invalidURL(_ reason: String) -> ClusterError {
        ClusterError(.invalidURL, "--postgres: \(reason) (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
    }

    /// Wraps a driver error met while connecting to `target`, with the server's own words when it sent some.
    static func connecting(_ error: any Error, target: String) -> ClusterError {
        if let e = error as? ClusterError { return e }
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] {
                let state = psql.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                return ClusterError(.rejected, "PostgreSQL at \(target) refused the connection: \(message)\(state)", underlying: error)
            }
            switch psql.code {
            case .connectionError, .serverClosedConnection, .uncleanShutdown:
                return ClusterError(.unreachable, "cannot connect to PostgreSQL at \(target): \(describe(psql))", underlying: error)
            case .sslUnsupported:
                return ClusterError(.rejected, "PostgreSQL at \(target) does not support TLS, and the URL requires it (sslmode)", underlying: error)
            case .authMechanismRequiresPassword:
                return ClusterError(.rejected, "PostgreSQL at \(target) asks for a password and the URL has none", underlying: error)
            case .unsupportedAuthMechanism:
                return ClusterError(
                    .rejected,
                    "PostgreSQL at \(target) asks for an authentication method this client does not support",
                    underlying: error
                )
            default:
                return ClusterError(.unreachable, "cannot connect to PostgreSQL at \(target): \(psql.code)", underlying: error)
            }
        }
        return ClusterError(.unreachable, "cannot connect to PostgreSQL at \(target): \(describe(error))", underlying: error)
    }

    /// Wraps a driver error met while running `what`.
    static func statement(_ error: any Error, _ what: String) -> ClusterError {
        if let e = error as? ClusterError { return e }
        if let psql = error as? PSQLError, let message = psql.serverInfo?[.message] {
            let state = psql.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return ClusterError(.schema, "PostgreSQL refused to \(what): \(message)\(state)", underlying: error)
        }
        return ClusterError(.connectionLost, "lost PostgreSQL while trying to \(what): \(describe(error))", underlying: error)
    }

    /// A short, readable cause: the server's message, or the socket error in plain words.
    public static func describe(_ error: any Error) -> String {
        if let cluster = error as? ClusterError { return cluster.message }
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] { return message }
            if let underlying = psql.underlying { return describe(underlying) }
            switch psql.code {
            case .serverClosedConnection, .uncleanShutdown: return "the server closed the connection"
            case .clientClosedConnection: return "the connection was closed"
            default: return "\(psql.code)"
            }
        }
        let text = "\(error)"
        let plain: [(String, String)] = [
            ("Connection refused", "connection refused (is PostgreSQL running and listening there?)"),
            ("Connect timeout", "no answer to the connection attempt in time"),
            ("UnknownHost", "unknown host name"),
            ("No route to host", "no route to host"),
            ("Network is unreachable", "network unreachable"),
            ("Connection reset by peer", "connection reset by the server"),
        ]
        for (needle, words) in plain where text.contains(needle) { return words }
        return text
    }
}
