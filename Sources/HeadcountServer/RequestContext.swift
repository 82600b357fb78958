public import Hummingbird
public import NIOCore

/// Request context of every Headcount route: the basics plus the peer's address.
public struct HeadcountRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    public var remoteAddress: SocketAddress? { channel.remoteAddress }
}
