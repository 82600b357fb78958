import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The demo page, widget and dashboard, shipped as package resources and held in memory.
struct WebAssets: Sendable {
    struct Asset: Sendable {
        let contentType: String
        let cacheControl: String
        let body: ByteBuffer
    }
    let files: [String: Asset]

    /// Loads every file of the `web` resource folder.
    static func load() -> WebAssets {
        var files: [String: Asset] = [:]
        guard let folder = Bundle.module.url(forResource: "web", withExtension: nil),
            let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path)
        else { return WebAssets(files: [:]) }
        for name in names where !name.hasPrefix(".") {
            guard let data = FileManager.default.contents(atPath: folder.appendingPathComponent(name).path) else { continue }
            files[name] = Asset(contentType: contentType(of: name), cacheControl: cacheControl(of: name), body: ByteBuffer(bytes: data))
        }
        return WebAssets(files: files)
    }

    static func contentType(of name: String) -> String {
        switch (name as NSString).pathExtension.lowercased() {
        case "html": return "text/html; charset=utf-8"
        case "js": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "json": return "application/json"
        default: return "application/octet-stream"
        }
    }

    static func cacheControl(of name: String) -> String {
        name.hasSuffix(".html") ? "no-cache" : "public, max-age=300"
    }

    func addRoutes(to router: Router<HeadcountRequestContext>) {
        for (name, asset) in files {
            let response = { @Sendable (_: Request, _: HeadcountRequestContext) -> Response in
                Response(
                    status: .ok,
                    headers: [.contentType: asset.contentType, .cacheControl: asset.cacheControl],
                    body: .init(byteBuffer: asset.body)
                )
            }
            router.get(RouterPath(name), use: response)
            if name == "index.html" { router.get("/", use: response) }
            if name.hasSuffix(".html") && name != "index.html" { router.get(RouterPath(String(name.dropLast(5))), use: response) }
        }
    }
}
