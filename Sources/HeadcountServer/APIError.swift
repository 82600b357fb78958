import Foundation
public import HTTPTypes
public import Hummingbird
import Logging
import NIOCore

/// An error answered as `{"error": "..."}` with its status.
public struct APIError: Error, HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    public let message: String
    public var headers: HTTPFields
    /// The `headcount_requests_rejected_total` label; derived from the status when nil.
    var reason: RejectReason?

    public init(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.message = message
        self.headers = headers
    }

    init(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:], reason: RejectReason) {
        self.init(status, message, headers: headers)
        self.reason = reason
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Self.response(status: status, message: message, headers: headers)
    }

    static func response(status: HTTPResponse.Status, message: String, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        fields[.cacheControl] = "no-store"
        let body = JSON.object(["error": .string(message)]).serialized
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Turns every error into a JSON error body and logs it: 4xx at info, 5xx at error.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: HeadcountMetrics
    let limiter: LogLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let status: HTTPResponse.Status
            let message: String
            var headers: HTTPFields = [:]
            var reason: RejectReason?
            switch error {
            case let e as APIError:
                status = e.status
                message = e.message
                headers = e.headers
                reason = e.reason
            case let e as HTTPError:
                status = e.status
                message = e.body ?? (e.status == .notFound ? "no such route: \(request.method) \(request.uri.path)" : e.status.reasonPhrase)
                headers = e.headers
            default:
                status = .internalServerError
                message = "internal error"
            }
            metrics.rejected(reason ?? RejectReason(status: status))
            let level: Logger.Level = status.code >= 500 && status != .serviceUnavailable ? .error : .info
            let why = reason ?? RejectReason(status: status)
            limiter.log(
                context.logger,
                level: level,
                "request rejected",
                reason: why.rawValue,
                metadata: [
                    "headcount.status": "\(status.code)",
                    "headcount.reason": "\(message)",
                    "headcount.path": "\(request.uri.path)",
                ]
            )
            return APIError.response(status: status, message: message, headers: headers)
        }
    }
}

/// A tiny JSON writer: deterministic key order and no Foundation encoder on hot paths.
enum JSON: Sendable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSON])
    case object(KeyValuePairs<String, JSON>)
    case orderedObject([(String, JSON)])

    var serialized: String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .string(let s): JSON.writeString(s, into: &out)
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? String(d) : "null"
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(into: &out)
            }
            out += "]"
        case .object(let pairs):
            JSON.writeObject(pairs.map { ($0.key, $0.value) }, into: &out)
        case .orderedObject(let pairs):
            JSON.writeObject(pairs, into: &out)
        }
    }

    static func writeObject(_ pairs: [(String, JSON)], into out: inout String) {
        out += "{"
        for (i, (key, value)) in pairs.enumerated() {
            if i > 0 { out += "," }
            writeString(key, into: &out)
            out += ":"
            value.write(into: &out)
        }
        out += "}"
    }

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

extension Response {
    /// A JSON response with `Cache-Control: no-store`.
    static func json(_ value: JSON, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: value.serialized))
        )
    }
}

extension RejectReason {
    init(status: HTTPResponse.Status) {
        switch status.code {
        case 400: self = .badRequest
        case 401: self = .unauthorized
        case 403: self = .forbidden
        case 404: self = .notFound
        case 414: self = .uriTooLong
        case 429: self = .tooManyStreamsPerIP
        case 431: self = .headerTooLarge
        default: self = .other
        }
    }
}

/// URLs over 2 KB get 414.
struct URILengthMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.string.utf8.count > AccessPolicy.maxURLBytes {
            throw APIError(.uriTooLong, "URL is longer than \(AccessPolicy.maxURLBytes) bytes", reason: .uriTooLong)
        }
        return try await next(request, context)
    }
}
