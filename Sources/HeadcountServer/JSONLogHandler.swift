import Foundation
public import Logging
import Synchronization

/// One JSON object per line on standard error, for log shippers (`--log-format json`).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    private static let lock = Mutex(())

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [(String, JSON)] = [
            ("ts", .string(Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true)))),
            ("level", .string(event.level.rawValue)),
            ("label", .string(label)),
            ("message", .string(event.message.description)),
        ]
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) { fields.append((key, .string(value.description))) }
        if event.level >= .error { fields.append(("source", .string("\(event.file):\(event.line)"))) }
        let line = JSON.orderedObject(fields).serialized + "\n"
        Self.lock.withLock { _ in _ = try? FileHandle.standardError.write(contentsOf: Data(line.utf8)) }
    }
}
