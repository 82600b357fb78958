import Foundation
public import HeadcountCore
import HeadcountCluster
public import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import NIOSSL
public import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// A built Headcount server: the Hummingbird application and the registry it serves.
public struct HeadcountApp: Sendable {
    public let application: Application<RouterResponder<HeadcountRequestContext>>
    public let registry: PresenceRegistry
    let hub: StreamHub

    /// SSE streams open right now, in either shape.
    public var openStreams: Int { hub.streamCount }

    /// Runs until SIGINT or SIGTERM, then drains: stops accepting, closes every stream, returns.
    public func runService() async throws {
        try await application.runService()
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
    let server: HTTPServerBuilder
    if let certificate = configuration.tlsCertificate, let key = configuration.tlsKey {
        // HTTPS: HTTP/2 by ALPN (many streams share one connection), HTTP/1.1 otherwise. Streams use the
        // route shape here (the NIO fast path speaks plaintext HTTP/1 only).
        let tls: TLSConfiguration
        do {
            tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            )
        } catch {
            throw APIError(.internalServerError, "cannot read --tls-cert \(certificate) or --tls-key \(key): \(error)")
        }
        server = try .http2Upgrade(tlsConfiguration: tls)
    } else {
    switch configuration.streamShape {
    case .route, .nio:
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = AccessPolicy.maxHeaderBytes
        limits.maxHeaderFieldSize = AccessPolicy.maxHeaderBytes
        let decoderLimits = limits
        server = HTTPServerBuilder { responder in
            HeadcountHTTP1Channel(
                responder: responder,
                hub: hub,
                decoderLimits: decoderLimits,
                firstRequestTimeout: configuration.firstRequestTimeout.timeAmount,
                idleTimeout: configuration.idleTimeout,
                fastPath: configuration.streamShape == .nio
            )
        }
    }
    }
    let app = Application(
        router: router,
        server: server,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "headcount"),
        services: extraServices + [presence],
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            logger.info("Headcount ready at http://\(configuration.host):\(port)/", metadata: ["headcount.port": "\(port)"])
            await onReady?(port)
        },
        logger: logger
    )
    return HeadcountApp(application: app, registry: registry, hub: hub)
}

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
            body: .init(byteBuffer: hub.metrics.render(registry: registry, openStreams: hub.streamCount, uptimeSeconds: (ContinuousClock.now - hub.startedAt).seconds))
        )
    }
    WebAssets.load().addRoutes(to: router)
    return router
}
