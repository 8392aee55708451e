import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Registry

/// The backends every contract test runs on: SQLite always; PostgreSQL when
/// ESPFORGE_TEST_POSTGRES_URL names a server (scripts/test starts one), and always in CI,
/// where a missing URL fails the PostgreSQL cases.
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres

    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["ESPFORGE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static var enabled: [Backend] {
        postgresURL != nil || TestEnvironment.isCI ? [.sqlite, .postgres] : [.sqlite]
    }

    var testDescription: String { rawValue }

    /// A fresh registry location: a new SQLite file, or the shared test server (tests keep to
    /// their own pools and MACs there).
    func makeLocation() throws -> (url: String, cleanup: @Sendable () -> Void) {
        switch self {
        case .sqlite:
            let dir = try TestEnvironment.temporaryDirectory("espforge-registry")
            return (dir.appendingPathComponent("registry.sqlite").path, { try? FileManager.default.removeItem(at: dir) })
        case .postgres:
            guard let url = Self.postgresURL else {
                throw TestSupportError.missing("ESPFORGE_TEST_POSTGRES_URL (run ./scripts/test, which starts a PostgreSQL server)")
            }
            return (url, {})
        }
    }
}

/// Unique names per test so tests sharing the PostgreSQL server do not see each other.
struct Scope {
    let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    let macBase = UInt64.random(in: 0x0200_0000_0000...0x02FF_FF00_0000) & ~0xFFFF
    var pool: String { "pool-" + tag }
    func mac(_ i: Int) -> String {
        let h = String(macBase + UInt64(i), radix: 16)
        let p = String(repeating: "0", count: 12 - h.count) + h
        return stride(from: 0, to: 12, by: 2).map { i in
            String(p[p.index(p.startIndex, offsetBy: i)..<p.index(p.startIndex, offsetBy: i + 2)])
        }.joined(separator: ":")
    }
}

let digestA = String(repeating: "ab", count: 32)
let digestB = String(repeating: "0f", count: 32)

func facts(_ mac: String, station: String = "station-1") -> DeviceFacts {
    DeviceFacts(mac: mac, chip: "esp32", chipRevision: 3, flashID: "0x4016", flashSize: 4 << 20, station: station,
                manifestHash: digestA, imageHashes: ["app": digestA, "bootloader": digestB],
                keyDigests: ["secure_boot_v2": digestB], keyIDs: ["signing": "hsm-slot-2"])
}

@Suite("Device registry contract (SQLite and PostgreSQL)", .serialized)
struct RegistryContractTests {
    /// Claims pause between choosing and taking an identity, so that a claim that is not
    /// atomic would hand one identity to two devices here.
    static let pauseMS = "15"
    init() { setenv("ESPFORGE_TEST_CLAIM_PAUSE_MS", Self.pauseMS, 1) }

    @Test(arguments: Backend.enabled)
    func registerShowAndFinish(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        let mac = s.mac(1)
        try await reg.register(facts(mac.uppercased().replacingOccurrences(of: ":", with: "-")))
        var d = try #require(try await reg.device(mac: mac))
        #expect(d.facts == facts(mac))
        #expect(d.status == .inProgress && d.identity == nil && d.efuseSummary == nil)
        // Re-registering updates facts and keeps the record.
        try await reg.register(facts(mac, station: "station-2"))
        d = try #require(try await reg.device(mac: mac))
        #expect(d.facts.station == "station-2")

        try await reg.loadIdentities(pool: s.pool, [IdentityRow(id: "SN-1", ordinal: 1)])
        _ = try await reg.claimIdentity(pool: s.pool, mac: mac)
        let summary = ["ABS_DONE_1": "1", "FLASH_CRYPT_CNT": "0x7f", "JTAG_DISABLE": "1", "BLOCK1": "read-protected"]
        try await reg.finish(mac: mac, status: .provisioned, efuseSummary: summary, failure: nil)
        d = try #require(try await reg.device(mac: mac))
        #expect(d.status == .provisioned && d.efuseSummary == summary)
        #expect(d.identity == "SN-1" && d.identityPool == s.pool)
        #expect(try await reg.devices().contains { $0.mac == mac })
        // Unknown facts stay empty (NULL), on both backends.
        try await reg.register(DeviceFacts(mac: s.mac(2), chip: "esp32"))
        #expect(try await reg.device(mac: s.mac(2))?.facts == DeviceFacts(mac: s.mac(2), chip: "esp32"))
        // Identities are names: a long hex serial is fine there (unlike in key ids).
        try await reg.loadIdentities(pool: s.pool + "-hex", [IdentityRow(id: String(repeating: "ab", count: 20), ordinal: 1)])
        await #expect(throws: RegistryError.self) {
            try await reg.loadIdentities(pool: s.pool + "-pem", [IdentityRow(id: "-----BEGIN PRIVATE KEY-----", ordinal: 1)])
        }
        await #expect(throws: RegistryError.self) { try await reg.finish(mac: s.mac(999), status: .failed, efuseSummary: nil, failure: "x") }
        await #expect(throws: RegistryError.self) { try await reg.device(mac: "not-a-mac") }
        try await reg.close()
    }

    @Test(arguments: Backend.enabled)
    func claimsInOrderIdempotentlyUntilExhausted(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        await #expect(throws: RegistryError.poolEmpty(s.pool)) { try await reg.claimIdentity(pool: s.pool, mac: s.mac(0)) }
        let rows = (1...3).map { IdentityRow(id: "SN-\($0)", ordinal: $0 + 1) }
        #expect(try await reg.loadIdentities(pool: s.pool, rows) == 3)
        #expect(try await reg.loadIdentities(pool: s.pool, rows) == 0, "loading again adds nothing")

        let a = try await reg.claimIdentity(pool: s.pool, mac: s.mac(1))
        #expect(a.id == "SN-1" && a.newlyClaimed)
        let again = try await reg.claimIdentity(pool: s.pool, mac: s.mac(1))
        #expect(again.id == "SN-1" && !again.newlyClaimed, "a resumed device gets its own identity back")
        #expect(try await reg.identity(pool: s.pool, mac: s.mac(1))?.id == "SN-1")
        #expect(try await reg.identity(pool: s.pool, mac: s.mac(2)) == nil)
        #expect(try await reg.claimIdentity(pool: s.pool, mac: s.mac(2)).id == "SN-2")
        #expect(try await reg.claimIdentity(pool: s.pool, mac: s.mac(3)).id == "SN-3")
        await #expect(throws: RegistryError.poolExhausted(s.pool, total: 3)) { try await reg.claimIdentity(pool: s.pool, mac: s.mac(4)) }
        #expect(try await reg.claimIdentity(pool: s.pool, mac: s.mac(2)).id == "SN-2", "still idempotent when exhausted")
        let status = try await reg.poolStatus(pool: s.pool)
        #expect(status.total == 3 && status.claimed == 3)
        // Another pool is independent.
        try await reg.loadIdentities(pool: s.pool + "-b", [IdentityRow(id: "SN-1", ordinal: 1)])
        #expect(try await reg.claimIdentity(pool: s.pool + "-b", mac: s.mac(3)).id == "SN-1")
        try await reg.close()
    }

    @Test(arguments: Backend.enabled)
    func concurrentClaimersNeverShareOrSkipAnIdentity(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let setup = try await openRegistry(url: url)
        let total = 48
        try await setup.loadIdentities(pool: s.pool, (0..<total).map { IdentityRow(id: "SN-\($0)", ordinal: $0) })
        try await setup.close()

        // 6 claimers, each with its own connection, 6 devices each: 36 claims; then every
        // device claims again (a resume) concurrently with the others.
        let claimers = 6, perClaimer = 6
        let results = try await withThrowingTaskGroup(of: [(String, String)].self) { group in
            for c in 0..<claimers {
                group.addTask {
                    let reg = try await openRegistry(url: url)
                    var out: [(String, String)] = []
                    for i in 0..<perClaimer {
                        let mac = s.mac(c * 100 + i)
                        out.append((mac, try await reg.claimIdentity(pool: s.pool, mac: mac).id))
                    }
                    for (mac, id) in out {
                        let again = try await reg.claimIdentity(pool: s.pool, mac: mac)
                        #expect(again.id == id && !again.newlyClaimed)
                    }
                    try await reg.close()
                    return out
                }
            }
            var all: [(String, String)] = []
            for try await r in group { all += r }
            return all
        }
        let ids = results.map(\.1)
        #expect(ids.count == claimers * perClaimer)
        #expect(Set(ids).count == ids.count, "an identity went to two devices")
        #expect(Set(ids) == Set((0..<claimers * perClaimer).map { "SN-\($0)" }), "identities were skipped")
        let check = try await openRegistry(url: url)
        #expect(try await check.poolStatus(pool: s.pool).claimed == claimers * perClaimer)
        try await check.close()
    }

    @Test(arguments: Backend.enabled)
    func oneDeviceClaimingFromSeveralPlacesAtOnceGetsOneIdentity(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let setup = try await openRegistry(url: url)
        try await setup.loadIdentities(pool: s.pool, (0..<10).map { IdentityRow(id: "SN-\($0)", ordinal: $0) })
        try await setup.close()
        let mac = s.mac(5)
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let reg = try await openRegistry(url: url)
                    let id = try await reg.claimIdentity(pool: s.pool, mac: mac).id
                    try await reg.close()
                    return id
                }
            }
            var all: [String] = []
            for try await id in group { all.append(id) }
            return all
        }
        #expect(ids.count == 4 && Set(ids).count == 1, "a device got two identities: \(ids)")
        let check = try await openRegistry(url: url)
        #expect(try await check.poolStatus(pool: s.pool).claimed == 1)
        try await check.close()
    }

    @Test(arguments: Backend.enabled)
    func twoProcessesClaimFromTheSameLineAtOnce(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let setup = try await openRegistry(url: url)
        let perProcess = 20
        try await setup.loadIdentities(pool: s.pool, (0..<(2 * perProcess + 5)).map { IdentityRow(id: "SN-\($0)", ordinal: $0) })
        try await setup.close()

        let bases = [s.mac(0), s.mac(1000)]
        let outputs = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
            for base in bases {
                group.addTask {
                    var env = ProcessInfo.processInfo.environment
                    env["ESPFORGE_TEST_CLAIM_PAUSE_MS"] = Self.pauseMS
                    return try ProcessRunner.run(Espforge.path, ["registry", "claim", "--registry", url, "--pool", s.pool, "--mac", base,
                                                                 "--count", String(perProcess)], environment: env)
                }
            }
            var all: [ProcessResult] = []
            for try await r in group { all.append(r) }
            return all
        }
        var ids: [String] = []
        for r in outputs {
            #expect(r.status == 0, "\(r.err)")
            for line in r.out.split(separator: "\n") {
                let claim = try JSONDecoder().decode(ClaimedIdentity.self, from: Data(line.utf8))
                ids.append(claim.id)
            }
        }
        #expect(ids.count == 2 * perProcess)
        #expect(Set(ids).count == ids.count, "an identity was claimed twice")
        #expect(Set(ids) == Set((0..<(2 * perProcess)).map { "SN-\($0)" }), "identities were skipped")

        // Running the same process again (a resume) returns the same identities.
        let rerun = try Espforge.run(["registry", "claim", "--registry", url, "--pool", s.pool, "--mac", bases[0], "--count", String(perProcess)])
        let first = outputs.first { $0.out.contains(bases[0]) }?.out ?? ""
        let before = try first.split(separator: "\n").map { try JSONDecoder().decode(ClaimedIdentity.self, from: Data($0.utf8)).id }
        let after = try rerun.out.split(separator: "\n").map { try JSONDecoder().decode(ClaimedIdentity.self, from: Data($0.utf8)).id }
        #expect(!before.isEmpty && before == after)
    }

    @Test(arguments: Backend.enabled)
    func stepsAreRecordedBeforeAndAfterAndGiveTheLastSafeStep(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        let mac = s.mac(7)
        try await reg.register(facts(mac))
        #expect(try await reg.lastSafeStep(mac: mac) == nil)

        try await reg.recordStep(mac: mac, step: "connect") { () }
        try await reg.recordStep(mac: mac, step: "identify", detail: "rev 3") { () }
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await reg.recordStep(mac: mac, step: "write") { throw Boom() } }
        // A step that began and never finished (the process was killed).
        let hanging = try await reg.beginStep(mac: mac, step: "write", detail: "attempt 2")

        let steps = try await reg.steps(mac: mac)
        #expect(steps.map(\.step) == ["connect", "identify", "write", "write"])
        #expect(steps.map(\.outcome) == [.ok, .ok, .failed, .running])
        #expect(steps[1].detail == "rev 3")
        #expect(steps[2].detail?.contains("Boom") == true)
        #expect(steps[3].finishedAt == nil && steps[3].id == hanging)
        #expect(steps.allSatisfy { $0.startedAt.hasSuffix("Z") && $0.startedAt.count == 24 })
        for st in steps.prefix(3) { #expect(st.finishedAt.map { $0 >= st.startedAt } == true) }
        #expect(try await reg.lastSafeStep(mac: mac)?.step == "identify")

        try await reg.finishStep(hanging, outcome: .ok, detail: nil)
        let last = try #require(try await reg.lastSafeStep(mac: mac))
        #expect(last.step == "write" && last.id == hanging && last.detail == "attempt 2")
        await #expect(throws: RegistryError.unknownStep(999_999_999)) { try await reg.finishStep(999_999_999, outcome: .ok, detail: nil) }
        try await reg.close()
    }

    @Test(arguments: Backend.enabled)
    func secretsAreRefused(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        let mac = s.mac(3)
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIG/QIBADANBgkqhkiG9w0BAQEFAASCBucwggbjAgEAAoIBgQ\n-----END PRIVATE KEY-----"
        let rawKey = String(repeating: "5a", count: 32)   // a 256-bit flash encryption key, in hex
        var bad: [DeviceFacts] = []
        var f = facts(mac); f.keyIDs["signing"] = pem; bad.append(f)
        f = facts(mac); f.keyIDs["flash_encryption"] = rawKey; bad.append(f)
        f = facts(mac); f.keyIDs["nvs"] = "hsm:" + Data(repeating: 0xA5, count: 32).base64EncodedString(); bad.append(f)
        f = facts(mac); f.keyDigests["secure_boot_v2"] = pem; bad.append(f)
        f = facts(mac); f.station = pem; bad.append(f)
        f = facts(mac); f.imageHashes["app"] = rawKey + rawKey; bad.append(f)
        for (i, b) in bad.enumerated() {
            do {
                try await reg.register(b)
                Issue.record("case \(i) was stored")
            } catch let e as RegistryError {
                switch e {
                case .secretRejected, .invalidValue: break
                default: Issue.record("case \(i): \(e)")
                }
            }
        }
        #expect(try await reg.device(mac: mac) == nil, "nothing of the refused records reached the database")

        try await reg.register(facts(mac))
        for summary in [["BLOCK1": rawKey], ["BLOCK3": "0x01020304"], ["FLASH_ENCRYPTION_KEY": "00 11 22"]] {
            await #expect(throws: RegistryError.self) { try await reg.finish(mac: mac, status: .provisioned, efuseSummary: summary, failure: nil) }
        }
        await #expect(throws: RegistryError.self) { try await reg.finish(mac: mac, status: .failed, efuseSummary: nil, failure: "leaked " + pem) }
        await #expect(throws: RegistryError.self) { try await reg.beginStep(mac: mac, step: "write", detail: pem) }
        // An error message carrying a key is redacted when recorded automatically.
        struct Leaky: Error, CustomStringConvertible { var description: String }
        await #expect(throws: Leaky.self) {
            try await reg.recordStep(mac: mac, step: "sign") { throw Leaky(description: "bad key: " + pem) }
        }
        let detail = try await reg.steps(mac: mac).last?.detail ?? ""
        #expect(detail.contains("bad key") && !detail.contains("BEGIN") && detail.contains("removed"))
        // Zero / read-protected key blocks are fine.
        try await reg.finish(mac: mac, status: .provisioned, efuseSummary: ["BLOCK1": "00000000", "BLOCK2": "??", "KEY_STATUS": "1"], failure: nil)
        try await reg.close()

        if backend == .sqlite {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: url))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(!text.contains("PRIVATE KEY") && !text.contains(rawKey), "key material in the database file")
        }
    }

    @Test(arguments: Backend.enabled)
    func migrationsAreRecordedAndReopeningIsHarmless(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let first = try await openRegistry(url: url)
        try await first.register(facts(s.mac(1)))
        try await first.close()
        let second = try await openRegistry(url: url)
        #expect(try await second.device(mac: s.mac(1)) != nil)
        if let sq = second as? SQLiteRegistry { #expect(try sq.appliedMigrations() == ["v1", "v2-pools-events", "escrow-v1"]) }
        if let pg = second as? PostgresRegistry { #expect(try await pg.appliedMigrations().sorted() == ["escrow-v1", "v1", "v2-pools-events"]) }
        try await second.close()
    }
}

@Suite("Registry command line")
struct RegistryCLITests {
    @Test(arguments: Backend.enabled)
    func listShowAndExport(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        try await reg.loadIdentities(pool: s.pool, [IdentityRow(id: "SN-\(s.tag),\"q\"", ordinal: 1), IdentityRow(id: "SN-2", ordinal: 2)])
        for i in 1...2 {
            try await reg.register(facts(s.mac(i)))
            _ = try await reg.claimIdentity(pool: s.pool, mac: s.mac(i))
            try await reg.recordStep(mac: s.mac(i), step: "connect") { () }
        }
        try await reg.finish(mac: s.mac(1), status: .provisioned, efuseSummary: ["JTAG_DISABLE": "1"], failure: nil)
        try await reg.finish(mac: s.mac(2), status: .failed, efuseSummary: nil, failure: "first boot: no ready line")
        try await reg.close()

        let list = try Espforge.run(["registry", "list", "--registry", url])
        #expect(list.status == 0, "\(list.err)")
        #expect(list.out.contains(s.mac(1)) && list.out.contains("provisioned") && list.out.contains("LAST SAFE STEP"))

        let failedOnly = try Espforge.run(["registry", "list", "--registry", url, "--status", "failed", "--json"])
        let failed = try JSONSerialization.jsonObject(with: Data(failedOnly.stdout)) as? [[String: Any]] ?? []
        #expect(failed.contains { $0["mac"] as? String == s.mac(2) })
        #expect(!failed.contains { $0["mac"] as? String == s.mac(1) })

        let show = try Espforge.run(["registry", "show", s.mac(1).uppercased(), "--registry", url])
        #expect(show.status == 0, "\(show.err)")
        #expect(show.out.contains("JTAG_DISABLE = 1") && show.out.contains("connect") && show.out.contains("hsm-slot-2"))
        let showJSON = try Espforge.run(["registry", "show", s.mac(2), "--registry", url, "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(showJSON.stdout)) as? [String: Any]
        #expect(obj?["failure"] as? String == "first boot: no ready line")
        #expect((obj?["steps"] as? [[String: Any]])?.first?["step"] as? String == "connect")
        #expect(obj?["lastSafeStep"] as? String == "connect")

        let missing = try Espforge.run(["registry", "show", s.mac(99), "--registry", url])
        #expect(missing.status == 1 && missing.err.contains("no device"))

        let dir = try TestEnvironment.temporaryDirectory("espforge-export")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csvPath = dir.appendingPathComponent("devices.csv").path
        let csv = try Espforge.run(["registry", "export", "--csv", "-o", csvPath, "--registry", url])
        #expect(csv.status == 0, "\(csv.err)")
        let csvText = try String(contentsOfFile: csvPath, encoding: .utf8)
        let lines = csvText.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("mac,status,chip,chip_revision,flash_id,flash_size,station,manifest_hash,identity_pool,identity,") == true)
        let row1 = try #require(lines.first { $0.hasPrefix(s.mac(1) + ",") })
        #expect(row1.contains(",provisioned,esp32,3,0x4016,4194304,station-1,"))
        #expect(row1.contains("\"SN-\(s.tag),\"\"q\"\"\""), "CSV quoting of an identity with a comma and quotes")
        #expect(row1.contains("\"{\"\"JTAG_DISABLE\"\":\"\"1\"\"}\""))

        let json = try Espforge.run(["registry", "export", "--json", "--registry", url])
        #expect(json.status == 0)
        let all = try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [[String: Any]] ?? []
        let d1 = try #require(all.first { $0["mac"] as? String == s.mac(1) })
        #expect(d1["identity"] as? String == "SN-\(s.tag),\"q\"")
        #expect((d1["imageHashes"] as? [String: String])?["app"] == digestA)
        #expect((d1["steps"] as? [[String: Any]])?.count == 1)

        let both = try Espforge.run(["registry", "export", "--csv", "--json", "--registry", url])
        #expect(both.status != 0)
    }

    @Test(arguments: Backend.enabled)
    func poolLoadsFromTheValuesCSVIdempotently(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let dir = try TestEnvironment.temporaryDirectory("espforge-pool")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("values.csv").path
        try "id,wifi_ssid,wifi_pass\nSN-A,net,pass1\nSN-B,net,pass2\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let r = try Espforge.run(["registry", "pool", s.pool, "--load", csv, "--registry", url, "--json"])
        #expect(r.status == 0, "\(r.err)")
        let status = try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any]
        #expect(status?["added"] as? Int == 2 && status?["total"] as? Int == 2 && status?["claimed"] as? Int == 0)
        let reg = try await openRegistry(url: url)
        let claim = try await reg.claimIdentity(pool: s.pool, mac: s.mac(1))
        #expect(claim.id == "SN-A" && claim.ordinal == 1, "the first row of the pool")
        try await reg.close()
        try "id,wifi_ssid,wifi_pass\nSN-A,net,pass1\nSN-B,net,pass2\nSN-C,net,pass3\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let again = try Espforge.run(["registry", "pool", s.pool, "--load", csv, "--registry", url])
        #expect(again.status == 0 && again.out.contains("1 identities added") && again.out.contains("3 identities, 1 claimed, 2 free"), "\(again.out)")
        if backend == .sqlite {
            let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: url)), as: UTF8.self)
            #expect(!text.contains("pass1"), "row values (possibly secret) are not stored")
        }
        try "id,x\nSN-A,1\nSN-A,2\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let dup = try Espforge.run(["registry", "pool", s.pool, "--load", csv, "--registry", url])
        #expect(dup.status == 1 && dup.err.contains("line 3") && dup.err.contains("appears twice"))
    }

    @Test func missingSQLiteFileIsAClearError() throws {
        let r = try Espforge.run(["registry", "list", "--registry", "/nonexistent/espforge.sqlite"])
        #expect(r.status == 1 && r.err.contains("no registry here"))
        let bad = try Espforge.run(["registry", "list", "--registry", "mysql://x/y"])
        #expect(bad.status == 1 && bad.err.contains("unsupported registry URL"))
    }
}

@Suite("Registry URLs and MACs")
struct RegistryLocationTests {
    @Test func parsesLocations() throws {
        #expect(try RegistryLocation.parse(nil) == .sqlite(path: "espforge-registry.sqlite"))
        #expect(try RegistryLocation.parse("") == .sqlite(path: "espforge-registry.sqlite"))
        #expect(try RegistryLocation.parse("line.db") == .sqlite(path: "line.db"))
        #expect(try RegistryLocation.parse("sqlite:/var/lib/line.db") == .sqlite(path: "/var/lib/line.db"))
        #expect(try RegistryLocation.parse("sqlite:///var/lib/line.db") == .sqlite(path: "/var/lib/line.db"))
        let pg = try RegistryLocation.parse("postgres://line:s%40cret@127.0.0.1:5433/espforge")
        #expect(pg == .postgres(host: "127.0.0.1", port: 5433, user: "line", password: "s@cret", database: "espforge"))
        #expect(!pg.description.contains("cret"), "the password is not shown")
        #expect(try RegistryLocation.parse("postgresql://u@db") == .postgres(host: "db", port: 5432, user: "u", password: nil, database: "u"))
        #expect(throws: RegistryError.self) { try RegistryLocation.parse("mysql://u@h/db") }
        #expect(throws: RegistryError.self) { try RegistryLocation.parse("postgres://h/db") }
        #expect(throws: RegistryError.self) { try RegistryLocation.parse("postgres://u:p@h/db?sslmode=allow") }
        #expect(throws: RegistryError.self) { try RegistryLocation.parse("sqlite:") }
    }

    @Test func normalizesMACs() throws {
        #expect(try Normalize.mac("24:0A:C4:12:34:56") == "24:0a:c4:12:34:56")
        #expect(try Normalize.mac("24-0a-c4-12-34-56") == "24:0a:c4:12:34:56")
        #expect(try Normalize.mac("240ac4123456") == "24:0a:c4:12:34:56")
        for bad in ["", "24:0a:c4:12:34", "24:0a:c4:12:34:5g", "24:0a:c4:12:34:56:78"] {
            #expect(throws: RegistryError.self) { try Normalize.mac(bad) }
        }
    }

    @Test func postgresWithoutServerIsAClearError() async throws {
        // A port nothing listens on (connection refused), on loopback.
        do {
            _ = try await openRegistry(url: "postgres://u:p@127.0.0.1:1/db")
            Issue.record("connected to nothing")
        } catch let e as RegistryError {
            #expect(e.diagnostic.message.contains("cannot connect"))
            #expect(!e.diagnostic.message.contains(":p@"))
        }
    }
}
