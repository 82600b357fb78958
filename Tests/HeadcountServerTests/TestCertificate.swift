import Foundation

/// A self-signed certificate for 127.0.0.1 and localhost (P-256, valid for 100 years), made for these
/// tests with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 36500`. Test
/// clients do not verify it.
enum TestCertificate {
    static let certificatePEM = """
-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIURmPvbX+YqKyhzJPjz+b1n5s+TrowCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNzIzMzQyM1oYDzIxMjYxMTEz
MjMzNDIzWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQQSVaAcQwD0kNJYLE3bgZXhqYDjRepgPhY+MjIBQtTKs9BeZooA5c8
ss6BZ9O1B2TljRGoCDw6kBdDp5Y0tWtDo28wbTAdBgNVHQ4EFgQUXQjpt6n+uHwH
KMgi9yRJAKpCtqEwHwYDVR0jBBgwFoAUXQjpt6n+uHwHKMgi9yRJAKpCtqEwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSQAwRgIhAPRux9aiMc4QC2vQlR9gnq51Tsp8OsFpGaj+qojxhdTmAiEA
jnfvko6g7USjQbkZ0l0lOxE1WWawGIapi7QswVbU3nc=
-----END CERTIFICATE-----
"""

    static let keyPEM = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBC2XOgrbQSopqBr1
/+DC1CzD+pARlvzNyCeCafTRQ2GhRANCAAQQSVaAcQwD0kNJYLE3bgZXhqYDjRep
gPhY+MjIBQtTKs9BeZooA5c8ss6BZ9O1B2TljRGoCDw6kBdDp5Y0tWtD
-----END PRIVATE KEY-----
"""

    /// The certificate and key written to files (the server reads PEM files), once per process.
    static let files: (certificate: String, key: String) = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("headcount-tests-\(ProcessInfo.processInfo.processIdentifier)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let certificate = dir.appendingPathComponent("cert.pem").path
        let key = dir.appendingPathComponent("key.pem").path
        _ = FileManager.default.createFile(atPath: certificate, contents: Data(certificatePEM.utf8))
        _ = FileManager.default.createFile(atPath: key, contents: Data(keyPEM.utf8))
        return (certificate, key)
    }()
}
