import ArgumentParser

@main
struct Headcount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "headcount",
        abstract: "Self-hosted real-time \"who is online\" counts over Server-Sent Events.",
        subcommands: [Serve.self, Token.self, Watch.self, Doctor.self, Bench.self],
        defaultSubcommand: nil
    )
}
