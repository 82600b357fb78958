import Foundation
public import HeadcountCore
import HeadcountCluster
import Hummingbird
import HummingbirdCore
import NIOSSL
public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import UnixSignals

/// A built Headcount server: its services (the HTTP listener, the presence driver, the cluster
/// backplane) and the registry it serves. A `Service`: run it in a `ServiceGroup`, or call `runService()`.
public struct HeadcountApp: Service, Sendable {
    public let registry: PresenceRegistry
    let hub: StreamHub
    /// In start order; a graceful shutdown stops them in reverse (the listener first, the backplane last).
    let services: [any Service]
    let logger: Logger

    /// SSE streams open right now, on every transport.
    public var openStreams: Int { hub.streamCount }

    public func run() async throws {
        let group = ServiceGroup(configuration: .init(services: services, logger: logger))
        try await group.run()
    }

    /// Runs until SIGINT or SIGTERM, then drains: stops accepting, closes every stream, returns.
    public func runService() async throws {
        let group = ServiceGroup(configuration: .init(services: [self], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Builds the Headcount application from its configuration.
/// - Parameters:
///   - configuration: what `headcount serve` was told
///   - logger: the server's logger
///   - onReady: called with the bound port once the server listens (port 0 picks a free one)
public func buildApplication(
    _ configuration: HeadcountConfiguration,
    logger: Logger,
    onReady: (@Sendable (Int) async -> Void)? = nil
) throws -> HeadcountApp {
    let presenceConfiguration = configuration.presence(startWallTime: Date().timeIntervalSince1970)
    // MARK: cluster wiring (begin)
    // With --postgres the node joins a cluster: `PostgresBackplane.start` validates the URL, connects,
    // creates the tables and reads the cluster's key within a bounded time, or throws a ClusterError whose
    // message `headcount serve` prints before exiting non-zero.
    let backplane: any Backplane
    var extraServices: [any Service] = []
    var cluster: PostgresBackplane?
    if let postgresURL = configuration.postgresURL {
        let clusterConfiguration = ClusterConfiguration(
            postgresURL: postgresURL,
            nodeTTL: configuration.nodeTTL,
            exactVisitors: configuration.exactVisitors,
            resyncInterval: configuration.resyncInterval,
            nodeInfo: "pid \(ProcessInfo.processInfo.processIdentifier), \(configuration.host):\(configuration.port)"
        )
        let postgres = try PostgresBackplane.start(configuration: clusterConfiguration, logger: logger)
        cluster = postgres
        backplane = postgres
        extraServices.append(postgres)
    } else {
        backplane = LocalBackplane()
    }
    // MARK: cluster wiring (end)
    let metrics = HeadcountMetrics()
    let registry = PresenceRegistry(configuration: presenceConfiguration, backplane: backplane, observer: metrics)
    cluster?.attach(registry)  // cluster wiring: remote changes fan out through this registry
    let hub = StreamHub(registry: registry, configuration: configuration, metrics: metrics, logger: logger)
    let router = buildRouter(configuration, hub: hub)
    let presence = PresenceService(registry: registry, history: hub.history, tickInterval: configuration.tickInterval, heartbeatInterval: configuration.heartbeat, drain: configuration.drain, openStreams: { hub.streamCount }, logger: logger)
    let onServerRunning: @Sendable (any Channel) async -> Void = { channel in
        let port = channel.localAddress?.port ?? configuration.port
        let scheme = configuration.tlsCertificate == nil ? "http" : "https"
        logger.info("Headcount ready at \(scheme)://\(configuration.host):\(port)/", metadata: ["headcount.port": "\(port)"])
        await onReady?(port)
    }
    var tls: NIOSSLContext?
    if let certificate = configuration.tlsCertificate, let key = configuration.tlsKey {
        // HTTPS: HTTP/2 by ALPN (many streams share one connection), HTTP/1.1 otherwise.
        do {
            var tlsConfiguration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            )
            tlsConfiguration.applicationProtocols = ["h2", "http/1.1"]
            tls = try NIOSSLContext(configuration: tlsConfiguration)
        } catch {
            throw APIError(.internalServerError, "cannot read --tls-cert \(certificate) or --tls-key \(key): \(error)")
        }
    }
    let services = ConnectionServices(
        hub: hub,
        responder: RequestResponder(router: router, logger: logger),
        firstRequestTimeout: configuration.firstRequestTimeout.timeAmount,
        idleTimeout: configuration.idleTimeout.timeAmount
    )
    let listener = HTTPListener(
        pipeline: ConnectionPipeline(services: services, tls: tls),
        host: configuration.host,
        port: configuration.port,
        backlog: listenBacklog,
        sockets: System.coreCount,
        onServerRunning: onServerRunning,
        logger: logger
    )
    return HeadcountApp(registry: registry, hub: hub, services: extraServices + [presence, listener], logger: logger)
}

/// Length of the listening socket's queue of connections not yet accepted. Hummingbird's default of 256
/// overflows in a connect storm (a dropped SYN is retried after a second); the kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux).
let listenBacklog = 4096

extension Duration {
    var timeAmount: TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }
}

/// The router of every Headcount route.
func buildRouter(_ configuration: HeadcountConfiguration, hub: StreamHub) -> Router<HeadcountRequestContext> {
    let registry = hub.registry
    let router = Router(context: HeadcountRequestContext.self)
    // Middleware wraps only routes added after it: add it first.
    router.add(middleware: HeadcountCORSMiddleware(allowOrigins: configuration.allowOrigins))
    router.add(middleware: JSONErrorMiddleware(metrics: hub.metrics, limiter: hub.logLimiter))
    router.add(middleware: URILengthMiddleware())
    StreamController(hub: hub).addRoutes(to: router)
    APIController(registry: registry, policy: hub.policy).addRoutes(to: router)
    OpsController(hub: hub).addRoutes(to: router)
    router.get("/metrics") { _, _ in
        Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: hub.metrics.render(registry: registry, openStreams: hub.openStreamsByTransport, uptimeSeconds: (ContinuousClock.now - hub.startedAt).seconds))
        )
    }
    WebAssets.load().addRoutes(to: router)
    return router
}
