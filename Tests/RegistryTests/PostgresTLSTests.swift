import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Registry

/// The test server's URL (plain) and the CA that signed its TLS certificate
/// (`scripts/pg-test-server --ca`, exported by scripts/test as ESPFORGE_TEST_POSTGRES_CA).
/// In CI both must be there: a missing one fails the TLS tests, it never skips them.
enum TLSServer {
    static var caPath: String? {
        ProcessInfo.processInfo.environment["ESPFORGE_TEST_POSTGRES_CA"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static var enabled: Bool { (Backend.postgresURL != nil && caPath != nil) || TestEnvironment.isCI }

    /// The server's URL with `password` (when given) and `query` put in.
    static func url(query: String, host: String? = nil, password: String? = nil) throws -> String {
        guard let base = Backend.postgresURL else {
            throw TestSupportError.missing("ESPFORGE_TEST_POSTGRES_URL (run ./scripts/test, which starts a PostgreSQL server)")
        }
        var c = try #require(URLComponents(string: base))
        if let host { c.host = host }
        if let password { c.password = password }
        c.query = nil
        return try #require(c.string) + (query.isEmpty ? "" : "?" + query)
    }

    static func ca() throws -> String {
        guard let ca = caPath else {
            throw TestSupportError.missing("ESPFORGE_TEST_POSTGRES_CA (the CA of the test server: ./scripts/pg-test-server --ca; scripts/test exports it)")
        }
        guard FileManager.default.isReadableFile(atPath: ca) else {
            throw TestSupportError.missing("the test server's CA file \(ca) (ESPFORGE_TEST_POSTGRES_CA)")
        }
        return ca
    }

    /// Whether the server reports the registry's own connection as encrypted.
    static func encrypted(_ registry: any DeviceRegistry) async throws -> Bool {
        let pg = try #require(registry as? PostgresRegistry)
        return try await pg.connectionIsEncrypted()
    }
}

/// A self-signed CA that signed nothing the test server presents.
let unrelatedCAPEM = """
-----BEGIN CERTIFICATE-----
MIIBjDCCATOgAwIBAgIUJYlYwMf81nTYLUi2LiBkI5MowQswCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRdW5yZWxhdGVkIHRlc3QgQ0EwHhcNMjYxMjA2MDM1NzMwWhcN
MzYxMjAzMDM1NzMwWjAcMRowGAYDVQQDDBF1bnJlbGF0ZWQgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABBfv2vXpzl8ZVDQOD9M/7XMdBfcgXMAWJSCs
R023JmmAaT1m+sgM37IrZL+xWnibcYaZrEa8mVe4a/KtC8awMkijUzBRMB0GA1Ud
DgQWBBSl20bMoUaxsEO604gii2+dHgbTbDAfBgNVHSMEGDAWgBSl20bMoUaxsEO6
04gii2+dHgbTbDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIF7a
EGqUGH5fzosSJ6/6VoaF7z1m1YoiNcAXo8VxMPzoAiAFeSqAgF3eDRxWQr97X3vp
J3S81IZWND2ANN/qMroyxQ==
-----END CERTIFICATE-----

"""

@Suite("Registry URL TLS parameters")
struct PostgresTLSURLTests {
    @Test func parsesSSLModes() throws {
        let base = "postgres://line:s3cretpw@db.example:5433/espforge"
        #expect(try RegistryLocation.parse(base) == .postgres(host: "db.example", port: 5433, user: "line", password: "s3cretpw",
                                                              database: "espforge", tls: .disable))
        #expect(try RegistryLocation.parse(base + "?sslmode=disable") == .postgres(host: "db.example", port: 5433, user: "line",
                                                                                   password: "s3cretpw", database: "espforge", tls: .disable))
        #expect(try RegistryLocation.parse(base + "?sslmode=require") == .postgres(host: "db.example", port: 5433, user: "line",
                                                                                   password: "s3cretpw", database: "espforge", tls: .require))
        let full = try RegistryLocation.parse(base + "?sslmode=verify-full&sslrootcert=/etc/espforge/ca.pem")
        #expect(full == .postgres(host: "db.example", port: 5433, user: "line", password: "s3cretpw", database: "espforge",
                                  tls: .verifyFull(caFile: "/etc/espforge/ca.pem")))
        #expect(full.description == "postgres://line:***@db.example:5433/espforge?sslmode=verify-full&sslrootcert=/etc/espforge/ca.pem")
        #expect(try RegistryLocation.parse(base + "?sslrootcert=system&sslmode=verify-full")
            == .postgres(host: "db.example", port: 5433, user: "line", password: "s3cretpw", database: "espforge", tls: .verifyFull(caFile: nil)))
        #expect(try RegistryLocation.parse(base + "?sslmode=verify-full")
            == .postgres(host: "db.example", port: 5433, user: "line", password: "s3cretpw", database: "espforge", tls: .verifyFull(caFile: nil)))
    }

    @Test(arguments: [
        ("?sslmode=prefer", "unknown sslmode `prefer`"),
        ("?sslmode=verify-ca", "unknown sslmode `verify-ca`"),
        ("?sslmode=", "unknown sslmode ``"),
        ("?sslmode=require&sslmode=disable", "give sslmode once"),
        ("?sslmode=require&sslrootcert=/ca.pem", "sslrootcert is only used with sslmode=verify-full"),
        ("?sslrootcert=/ca.pem", "sslrootcert is only used with sslmode=verify-full"),
        ("?sslmode=verify-full&sslrootcert=", "sslrootcert needs a path"),
        ("?sslmod=require", "unknown parameter `sslmod`"),
    ])
    func badParametersAreClearErrors(_ query: String, _ expected: String) throws {
        do {
            _ = try RegistryLocation.parse("postgres://line:s3cretpw@db.example/espforge" + query)
            Issue.record("accepted \(query)")
        } catch {
            let d = error.diagnostic
            #expect(d.message.contains("unsupported registry URL"))
            #expect((d.hint ?? "").contains(expected), "\(d.hint ?? "")")
            #expect(!d.message.contains("s3cretpw") && !(d.hint ?? "").contains("s3cretpw"), "the password is not shown")
        }
    }

    @Test func unparsableURLsDoNotShowThePassword() throws {
        // Foundation cannot parse this one (a space in the host); the message still hides the password.
        do {
            _ = try RegistryLocation.parse("postgres://line:s3cretpw@db example/espforge")
            Issue.record("accepted a host with a space")
        } catch {
            #expect(!error.diagnostic.message.contains("s3cretpw"), "\(error.diagnostic.message)")
        }
        // Other schemes too, on the command line.
        let r = try Espforge.run(["registry", "list", "--registry", "mysql://line:s3cretpw@db.example/espforge"])
        #expect(r.status == 1 && r.err.contains("unsupported registry URL") && r.err.contains("***"), "\(r.err)")
        #expect(!r.err.contains("s3cretpw") && !r.out.contains("s3cretpw"))
    }

    @Test func missingOrBadCAFilesAreClearErrors() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-tls")
        defer { try? FileManager.default.removeItem(at: dir) }
        let notPEM = dir.appendingPathComponent("not-a-cert.pem").path
        try "hello\n".write(toFile: notPEM, atomically: true, encoding: .utf8)
        let cases: [(String, String)] = [
            (dir.appendingPathComponent("missing.pem").path, "does not exist"),
            (dir.path, "is a directory"),
            (notPEM, "holds no PEM certificate"),
        ]
        for (path, expected) in cases {
            // Port 1: the CA is checked before any connection is tried.
            do {
                _ = try await openRegistry(url: "postgres://line:s3cretpw@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=\(path)")
                Issue.record("opened with CA \(path)")
            } catch let e as RegistryError {
                guard case .tls = e else { Issue.record("not a TLS error: \(e.diagnostic.message)"); continue }
                #expect(e.diagnostic.message.contains(path) && e.diagnostic.message.contains(expected), "\(e.diagnostic.message)")
                #expect((e.diagnostic.hint ?? "").contains("sslrootcert"))
                #expect(!e.diagnostic.message.contains("s3cretpw"))
            }
        }
    }
}

@Suite("Registry over TLS (test server with a self-signed CA)", .serialized, .enabled(if: TLSServer.enabled))
struct PostgresTLSServerTests {
    /// verify-full against the test CA, by IP address and by host name: a registry round trip
    /// over a connection the server reports as encrypted.
    @Test(arguments: ["127.0.0.1", "localhost"])
    func verifyFullRoundTrip(_ host: String) async throws {
        let url = try TLSServer.url(query: "sslmode=verify-full&sslrootcert=\(try TLSServer.ca())", host: host)
        let s = Scope()
        let reg = try await openRegistry(url: url)
        #expect(try await TLSServer.encrypted(reg))
        try await reg.register(facts(s.mac(1)))
        try await reg.loadIdentities(pool: s.pool, [IdentityRow(id: "SN-TLS-1", ordinal: 1)])
        _ = try await reg.claimIdentity(pool: s.pool, mac: s.mac(1))
        try await reg.finish(mac: s.mac(1), status: .provisioned, efuseSummary: ["ABS_DONE_1": "1"], failure: nil)
        try await reg.close()
        // Read back on a second connection.
        let again = try await openRegistry(url: url)
        let d = try #require(try await again.device(mac: s.mac(1)))
        #expect(d.status == .provisioned && d.identity == "SN-TLS-1" && d.facts == facts(s.mac(1)))
        try await again.close()
    }

    @Test func requireEncryptsAndDisableDoesNot() async throws {
        let required = try await openRegistry(url: try TLSServer.url(query: "sslmode=require"))
        #expect(try await TLSServer.encrypted(required))
        try await required.close()
        let plain = try await openRegistry(url: try TLSServer.url(query: ""))
        #expect(try await !TLSServer.encrypted(plain), "the default stays plain")
        try await plain.close()
    }

    @Test func verifyFullWithAnotherCAFails() async throws {
        _ = try TLSServer.ca()
        let dir = try TestEnvironment.temporaryDirectory("espforge-tls")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wrong = dir.appendingPathComponent("other-ca.pem").path
        try unrelatedCAPEM.write(toFile: wrong, atomically: true, encoding: .utf8)
        do {
            _ = try await openRegistry(url: try TLSServer.url(query: "sslmode=verify-full&sslrootcert=\(wrong)"))
            Issue.record("connected although the CA did not sign the server's certificate")
        } catch let e as RegistryError {
            guard case .tls = e else { Issue.record("not a TLS error: \(e.diagnostic.message)"); return }
            #expect(e.diagnostic.message.contains("did not verify against `\(wrong)`"), "\(e.diagnostic.message)")
            #expect((e.diagnostic.hint ?? "").contains("sslrootcert must be the CA"))
            #expect(!e.diagnostic.message.contains("espforge-test"), "the password is not shown")
        }
        // Without sslrootcert the system store is used, and it does not hold the test CA either.
        do {
            _ = try await openRegistry(url: try TLSServer.url(query: "sslmode=verify-full"))
            Issue.record("the system trust store accepted the test CA")
        } catch let e as RegistryError {
            #expect(e.diagnostic.message.contains("did not verify against the system trust store"), "\(e.diagnostic.message)")
        }
    }

    @Test func badPasswordIsNotShown() async throws {
        let secret = "Wr0ng-Pa55-\(UInt32.random(in: 0...UInt32.max))"
        for query in ["", "sslmode=require", "sslmode=verify-full&sslrootcert=\(try TLSServer.ca())"] {
            let url = try TLSServer.url(query: query, password: secret)
            do {
                _ = try await openRegistry(url: url)
                Issue.record("connected with a wrong password")
            } catch let e as RegistryError {
                let d = e.diagnostic
                #expect(d.message.contains("cannot connect") && d.message.contains("password authentication failed"), "\(d.message)")
                #expect(!d.message.contains(secret) && !(d.hint ?? "").contains(secret))
            }
            // The command line, too: nothing on stdout or stderr holds the password.
            let r = try Espforge.run(["registry", "list", "--registry", url])
            #expect(r.status != 0)
            #expect(r.err.contains("password authentication failed"), "\(r.err)")
            #expect(!r.out.contains(secret) && !r.err.contains(secret))
        }
    }
}
