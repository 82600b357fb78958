import HTTPTypes
import Hummingbird

/// CORS for every route. `*` allows any origin without credentials; a list of origins echoes a matching
/// `Origin` and allows credentials, so cross-site pages can send the `hc_vid` cookie.
struct HeadcountCORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowAll: Bool
    let origins: Set<String>

    init(allowOrigins: [String]) {
        self.allowAll = allowOrigins.contains("*")
        self.origins = Set(allowOrigins.filter { $0 != "*" })
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let origin = request.headers[.origin]
        if request.method == .options, origin != nil {
            var response = Response(status: .noContent)
            apply(to: &response.headers, origin: origin)
            response.headers[.accessControlAllowMethods] = "GET, HEAD, OPTIONS"
            response.headers[.accessControlAllowHeaders] = request.headers[.accessControlRequestHeaders] ?? "Authorization, Last-Event-ID, Cache-Control"
            response.headers[.accessControlMaxAge] = "600"
            return response
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        apply(to: &response.headers, origin: origin)
        return response
    }

    func apply(to headers: inout HTTPFields, origin: String?) {
        if allowAll {
            headers[.accessControlAllowOrigin] = "*"
        } else if let origin, origins.contains(origin) {
            headers[.accessControlAllowOrigin] = origin
            headers[.accessControlAllowCredentials] = "true"
            headers.append(HTTPField(name: .vary, value: "Origin"))
        }
    }
}
