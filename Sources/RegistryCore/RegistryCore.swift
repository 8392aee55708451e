// The registry's vocabulary that needs no database driver: its errors and where it lives
// (`--registry` / `[registry] url`: a path, sqlite:PATH or postgres://… with TLS parameters).
// Kept apart from Registry (GRDB, postgres-nio) so the URL parser can be fuzzed without building
// the drivers; Registry re-exports it.
import ESPCore
import Foundation

public enum RegistryError: Error, DiagnosticConvertible, Equatable {
    case badURL(String, hint: String)
    case badMAC(String)
    case poolEmpty(String)
    case poolExhausted(String, total: Int)
    case secretRejected(field: String, why: String)
    case unknownDevice(String)
    case unknownStep(Int64)
    case database(String)
    case invalidValue(field: String, why: String)
    /// A reloaded row whose id is in the pool with other values (both places named).
    case identityConflict(pool: String, id: String, row: String, earlier: String)
    case duplicateIdentity(pool: String, id: String, first: String, second: String)
    /// A `provisioned` or `rma` record cannot be changed by provisioning.
    case recordLocked(mac: String, status: String)
    /// TLS to the PostgreSQL server could not be set up or failed (what, and how to fix it).
    case tls(String, hint: String)

    public var diagnostic: Diagnostic {
        switch self {
        case .badURL(let u, let hint): return Diagnostic("unsupported registry URL `\(u)`", hint: hint)
        case .badMAC(let m): return Diagnostic("`\(m)` is not a MAC address", hint: "write it as aa:bb:cc:dd:ee:ff")
        case .poolEmpty(let p): return Diagnostic("identity pool `\(p)` holds no identities", hint: "load the per-device values CSV first")
        case .poolExhausted(let p, let n): return Diagnostic("identity pool `\(p)` is exhausted: all \(n) identities are claimed",
                                                          hint: "add rows to the per-device values CSV")
        case .secretRejected(let f, let why): return Diagnostic("refusing to store `\(f)` in the registry: \(why)",
                                                             hint: "the registry keeps digests and key ids only, never private or symmetric keys")
        case .unknownDevice(let m): return Diagnostic("no device \(m) in the registry", hint: "`espforge registry list` shows the devices")
        case .unknownStep(let id): return Diagnostic("no step #\(id) in the registry")
        case .database(let m): return Diagnostic("registry database error: \(m)")
        case .invalidValue(let f, let why): return Diagnostic("invalid `\(f)`: \(why)")
        case .identityConflict(let p, let id, let row, let earlier):
            return Diagnostic("identity `\(id)` of pool `\(p)`: \(row) has other values than the row loaded before (\(earlier)); nothing was loaded",
                              hint: "an identity's values cannot change once loaded: restore the row, or give the changed device a new id")
        case .duplicateIdentity(let p, let id, let first, let second):
            return Diagnostic("identity `\(id)` appears twice in what is loaded into pool `\(p)` (\(first) and \(second))",
                              hint: "each id (first column) must be unique")
        case .recordLocked(let m, let status):
            return Diagnostic("device \(m) is \(status) in the registry; its record is final",
                              hint: status == "rma" ? "the device was taken out of the line (RMA)"
                                  : "only `espforge registry mark \(m) --rma \"reason\"` takes a device out of provisioned")
        case .tls(let m, let hint): return Diagnostic("registry TLS: \(m)", hint: hint)
        }
    }
}

/// How a PostgreSQL connection is protected (`sslmode` / `sslrootcert` in the URL).
public enum PostgresTLS: Sendable, Equatable, CustomStringConvertible {
    /// Plain TCP (`sslmode=disable`, and the default when no sslmode is given).
    case disable
    /// Encrypted, the server's certificate is not checked (`sslmode=require`).
    case require
    /// Encrypted; the certificate chain is checked against `caFile` (PEM), or the system's
    /// trust store when `nil`, and the certificate must name the host (`sslmode=verify-full`).
    case verifyFull(caFile: String?)

    /// The URL parameters that select this mode (empty for the default).
    public var description: String {
        switch self {
        case .disable: return "sslmode=disable"
        case .require: return "sslmode=require"
        case .verifyFull(let ca): return "sslmode=verify-full" + (ca.map { "&sslrootcert=" + $0 } ?? "")
        }
    }
}

/// Where the registry lives.
public enum RegistryLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(host: String, port: Int, user: String, password: String?, database: String, tls: PostgresTLS = .disable)

    public static let defaultPath = "espforge-registry.sqlite"

    static let urlHint = "write postgres://user:pass@host:5432/db[?sslmode=verify-full&sslrootcert=/path/ca.pem]"

    /// `nil`/empty → `./espforge-registry.sqlite`; `sqlite:PATH`; a plain path;
    /// `postgres://user:pass@host:5432/db` (also `postgresql://`), with the optional parameters
    /// `sslmode=disable|require|verify-full` and `sslrootcert=PATH` (verify-full only).
    public static func parse(_ text: String?) throws(RegistryError) -> RegistryLocation {
        guard let text, !text.isEmpty else { return .sqlite(path: defaultPath) }
        let lower = text.lowercased()
        if lower.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }
            guard !path.isEmpty else { throw .badURL(text, hint: "write sqlite:PATH") }
            return .sqlite(path: path)
        }
        if lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") {
            guard let c = URLComponents(string: text), let host = c.host, !host.isEmpty else {
                throw .badURL(redact(text), hint: urlHint)
            }
            let db = String(c.path.drop(while: { $0 == "/" }))
            guard let user = c.user, !user.isEmpty else { throw .badURL(redact(text), hint: "name the user: postgres://user:pass@host:5432/db") }
            var sslmode: String?
            var rootCert: String?
            for item in c.queryItems ?? [] {
                switch item.name {
                case "sslmode":
                    guard sslmode == nil else { throw .badURL(redact(text), hint: "give sslmode once") }
                    sslmode = item.value ?? ""
                case "sslrootcert":
                    guard rootCert == nil else { throw .badURL(redact(text), hint: "give sslrootcert once") }
                    guard let v = item.value, !v.isEmpty else {
                        throw .badURL(redact(text), hint: "sslrootcert needs a path: sslrootcert=/path/ca.pem")
                    }
                    rootCert = v
                default:
                    throw .badURL(redact(text), hint: "unknown parameter `\(item.name)`: the parameters are sslmode=disable|require|verify-full and sslrootcert=PATH")
                }
            }
            let tls: PostgresTLS
            switch sslmode {
            case nil, "disable": tls = .disable
            case "require": tls = .require
            case "verify-full": tls = .verifyFull(caFile: rootCert == "system" ? nil : rootCert)
            case let other?:
                throw .badURL(redact(text), hint: "unknown sslmode `\(other)`: use sslmode=verify-full (with sslrootcert=/path/ca.pem) on a network, require to encrypt without checking the certificate, or disable on loopback")
            }
            if rootCert != nil, tls != .verifyFull(caFile: rootCert == "system" ? nil : rootCert) {
                throw .badURL(redact(text), hint: "sslrootcert is only used with sslmode=verify-full: add sslmode=verify-full, or drop sslrootcert")
            }
            return .postgres(host: host, port: c.port ?? 5432, user: user.removingPercentEncoding ?? user,
                             password: c.password.map { $0.removingPercentEncoding ?? $0 }, database: db.isEmpty ? user : db, tls: tls)
        }
        if lower.contains("://") {
            throw .badURL(redact(text), hint: "use a file path, sqlite:PATH or postgres://user:pass@host:5432/db")
        }
        return .sqlite(path: text)
    }

    /// The location without its password, for messages.
    public var description: String {
        switch self {
        case .sqlite(let path): return "sqlite:" + path
        case .postgres(let host, let port, let user, let password, let db, let tls):
            return "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(db)" + (tls == .disable ? "" : "?\(tls)")
        }
    }

    /// `url` with its password replaced by `***`. A URL Foundation cannot parse is cut at its
    /// last `@` (everything before it may hold the password).
    static func redact(_ url: String) -> String {
        if let c0 = URLComponents(string: url) {
            guard c0.password != nil else { return url }
            var c = c0
            c.password = "***"
            return c.string ?? "postgres://***"
        }
        guard let at = url.lastIndex(of: "@") else { return url }
        let scheme = url.range(of: "://").map { String(url[..<$0.upperBound]) } ?? ""
        return scheme + "***" + String(url[at...])
    }
}
