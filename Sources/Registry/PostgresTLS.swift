import Foundation
import PostgresNIO

/// Turns the URL's `sslmode`/`sslrootcert` into postgres-nio's TLS configuration, and
/// connection failures into messages that say what went wrong. Messages name the location by
/// its description, which never holds the password.
enum PostgresTLSSetup {
    static func configuration(for mode: PostgresTLS) throws(RegistryError) -> PostgresConnection.Configuration.TLS {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        switch mode {
        case .disable:
            return .disable
        case .require:
            tls.certificateVerification = .none
        case .verifyFull(let caFile):
            tls.certificateVerification = .fullVerification
            if let caFile {
                tls.trustRoots = .certificates(try loadCA(caFile))
            } else {
                tls.trustRoots = .default
            }
        }
        do {
            return .require(try NIOSSLContext(configuration: tls))
        } catch {
            throw .tls("cannot set up TLS (\(error))",
                       hint: mode == .verifyFull(caFile: nil)
                           ? "the system trust store could not be loaded: name the CA with sslrootcert=/path/ca.pem"
                           : "check the sslrootcert file")
        }
    }

    /// The CA certificates (PEM) in `path`; clear errors for a missing, unreadable or non-PEM file.
    static func loadCA(_ path: String) throws(RegistryError) -> [NIOSSLCertificate] {
        let fix = "sslrootcert must name a readable PEM file holding the CA certificate that signed the server's certificate"
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw .tls("CA file `\(path)` (sslrootcert) does not exist", hint: fix)
        }
        guard !isDir.boolValue else { throw .tls("CA file `\(path)` (sslrootcert) is a directory", hint: fix) }
        // A CA bundle is small; refuse anything that cannot be one before reading it.
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let size = attributes?[.size] as? Int, size > 4 << 20 {
            throw .tls("CA file `\(path)` (sslrootcert) is \(size) bytes, too large for a PEM CA bundle", hint: fix)
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .tls("CA file `\(path)` (sslrootcert) cannot be read (permission denied?)", hint: fix)
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.read(upToCount: 4 << 20) ?? Data() } catch {
            throw .tls("CA file `\(path)` (sslrootcert) cannot be read: \(error.localizedDescription)", hint: fix)
        }
        let certificates: [NIOSSLCertificate]
        do { certificates = try NIOSSLCertificate.fromPEMBytes(Array(data)) } catch {
            throw .tls("CA file `\(path)` (sslrootcert) holds no PEM certificate", hint: fix)
        }
        guard !certificates.isEmpty else { throw .tls("CA file `\(path)` (sslrootcert) holds no PEM certificate", hint: fix) }
        return certificates
    }

    /// The short reasons in a NIOSSL/BoringSSL error (`CERTIFICATE_VERIFY_FAILED`), without the
    /// library's source paths; the whole description when it names none.
    static func reason(_ error: any Error) -> String {
        let text = "\(error)"
        var reasons: [String] = []
        var rest = text[...]
        while let r = rest.range(of: "OPENSSL_internal:") {
            let name = rest[r.upperBound...].prefix { $0.isUppercase || $0.isNumber || $0 == "_" }
            if !name.isEmpty, !reasons.contains(String(name)) { reasons.append(String(name)) }
            rest = rest[r.upperBound...]
        }
        if reasons.isEmpty { return text.count > 200 ? String(text.prefix(200)) + "…" : text }
        let kind = text.prefix { $0.isLetter }
        return (kind.isEmpty ? "" : kind + ": ") + reasons.joined(separator: ", ")
    }

    /// A connection failure as a registry error; TLS failures get their own message and hint.
    static func connectError(_ error: any Error, location: RegistryLocation, describe: (any Error) -> String) -> RegistryError {
        guard case .postgres(let host, let port, _, _, _, let mode) = location else {
            return .database("cannot connect to \(location): \(describe(error))")
        }
        let psql = error as? PSQLError
        if psql?.code == .sslUnsupported {
            return .tls("the server at \(host):\(port) does not accept TLS (\(mode))",
                        hint: "turn TLS on in the server (ssl = on, with a certificate) or, on loopback only, use sslmode=disable")
        }
        let underlying = psql?.underlying ?? error
        if let ssl = underlying as? NIOSSLError {
            let detail = reason(ssl)
            if case .verifyFull(let ca) = mode, detail.contains("CERTIFICATE_VERIFY_FAILED") || detail.contains("unableToValidateCertificate") {
                return .tls("the certificate of \(host):\(port) did not verify against \(ca.map { "`\($0)`" } ?? "the system trust store") (\(detail))",
                            hint: "sslrootcert must be the CA that signed the server's certificate, and the certificate must name `\(host)` (DNS or IP subject alternative name)")
            }
            return .tls("TLS handshake with \(host):\(port) failed (\(detail))",
                        hint: "check that the server speaks TLS 1.2 or later and that sslmode/sslrootcert in the registry URL are right")
        }
        if underlying is BoringSSLError {
            return .tls("TLS with \(host):\(port) failed (\(reason(underlying)))", hint: "check sslmode/sslrootcert in the registry URL")
        }
        return .database("cannot connect to \(location): \(describe(error))")
    }
}
