import HeadcountCore
import Logging
import ServiceLifecycle

/// Drives the registry: one ticker for grace expiry and coalesced flushes, one heartbeat timer for
/// every stream. No task or timer per subscriber.
struct PresenceService: Service {
    let registry: PresenceRegistry
    let tickInterval: Duration
    let heartbeatInterval: Duration
    let logger: Logger

    func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    do { try await Task.sleep(for: tickInterval) } catch { break }
                    registry.tick()
                }
            }
            group.addTask {
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    do { try await Task.sleep(for: heartbeatInterval) } catch { break }
                    registry.heartbeat()
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        let open = registry.shutdown()
        if !open.isEmpty {
            logger.info("closed remaining streams at shutdown", metadata: ["headcount.streams": "\(open.count)"])
        }
    }
}
