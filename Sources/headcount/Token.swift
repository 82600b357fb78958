import ArgumentParser
import Foundation
import HeadcountServer

/// `headcount token`: mints a signed join token for a private room.
struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a signed join token for a private room.")

    @Option(help: "The room (or, with --prefix, a room prefix) the token admits to.")
    var room: String

    @Flag(help: "Admit to every room whose name starts with --room.")
    var prefix = false

    @Option(help: "Seconds until the token expires.")
    var ttl: Int = 3600

    @Option(help: "Bind the token to this visitor id.")
    var visitor: String?

    @Option(help: "The server's secret. [env: HEADCOUNT_SECRET]")
    var secret: String?

    func run() throws {
        guard let secret = secret ?? ProcessInfo.processInfo.environment["HEADCOUNT_SECRET"], !secret.isEmpty else {
            throw ValidationError("give --secret or set HEADCOUNT_SECRET")
        }
        guard ttl > 0 else { throw ValidationError("--ttl must be above zero") }
        if !prefix, let problem = HeadcountServer.roomProblem(room) { throw ValidationError("--room: \(problem)") }
        if let visitor, let problem = HeadcountServer.visitorProblem(visitor) { throw ValidationError("--visitor: \(problem)") }
        let claims = JoinTokens.Claims(room: room, prefix: prefix, expires: Int64(Date().timeIntervalSince1970) + Int64(ttl), visitor: visitor)
        print(JoinTokens(secret: secret).sign(claims))
    }
}
