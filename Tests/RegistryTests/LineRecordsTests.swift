import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Registry

/// A digest standing for a row's values (the registry never sees the values themselves).
func rowDigest(_ text: String) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return String(repeating: String(format: "%016llx", h), count: 4)
}

@Suite("Registry: final records, event log, pools keyed by value (SQLite and PostgreSQL)", .serialized)
struct LineRecordsTests {
    @Test("a provisioned record is final: finish and register are refused in the registry itself; only markRMA moves it",
          arguments: Backend.enabled)
    func provisionedIsFinal(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        let mac = s.mac(1)
        try await reg.register(facts(mac))
        try await reg.finish(mac: mac, status: .failed, efuseSummary: nil, failure: "first try")
        try await reg.register(facts(mac, station: "station-2"))   // failed → may be provisioned again
        try await reg.finish(mac: mac, status: .provisioned, efuseSummary: ["ABS_DONE_1": "1"], failure: nil)
        let done = try #require(try await reg.device(mac: mac))

        await #expect(throws: RegistryError.recordLocked(mac: mac, status: "provisioned")) {
            try await reg.finish(mac: mac, status: .failed, efuseSummary: nil, failure: "preflight: already secured")
        }
        await #expect(throws: RegistryError.recordLocked(mac: mac, status: "provisioned")) {
            try await reg.register(facts(mac, station: "station-9"))
        }
        #expect(try await reg.device(mac: mac) == done, "the record is untouched")

        await #expect(throws: RegistryError.self) { try await reg.markRMA(mac: mac, reason: "  ", station: nil) }
        await #expect(throws: RegistryError.unknownDevice(s.mac(99))) { try await reg.markRMA(mac: s.mac(99), reason: "x", station: nil) }
        let marked = try await reg.markRMA(mac: mac, reason: "customer return: no Wi-Fi", station: "repair-1")
        #expect(marked.status == .rma && marked.identity == done.identity && marked.facts == done.facts)
        let events = try await reg.events(mac: mac)
        let rma = try #require(events.last)
        #expect(rma.kind == "rma" && rma.station == "repair-1" && rma.mac == mac)
        #expect(rma.detail == "customer return: no Wi-Fi (was provisioned)" && !rma.at.isEmpty)
        // rma is final too.
        await #expect(throws: RegistryError.recordLocked(mac: mac, status: "rma")) {
            try await reg.finish(mac: mac, status: .provisioned, efuseSummary: nil, failure: nil)
        }
        #expect(try await reg.device(mac: mac)?.status == .rma)

        // The event log: never touches records, keeps secrets out.
        try await reg.recordEvent(mac: s.mac(2), kind: "refused", station: "station-1", detail: "secured, unknown")
        #expect(try await reg.device(mac: s.mac(2)) == nil)
        #expect(try await reg.events(mac: s.mac(2)).map(\.kind) == ["refused"])
        #expect(try await reg.events(mac: nil).contains { $0.mac == s.mac(2) })
        await #expect(throws: RegistryError.self) {
            try await reg.recordEvent(mac: s.mac(2), kind: "refused", station: nil, detail: "-----BEGIN PRIVATE KEY-----")
        }
        try await reg.close()
    }

    @Test("reloading a pool adds every new identity wherever it stands; claims follow pool order; changed rows are refused naming both places",
          arguments: Backend.enabled)
    func poolKeyedByValue(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        func row(_ id: String, line: Int, file: String = "v.csv", value: String? = nil) -> IdentityRow {
            IdentityRow(id: id, ordinal: line, digest: rowDigest(value ?? id), source: "\(file) line \(line)")
        }
        #expect(try await reg.loadIdentities(pool: s.pool, [row("A1", line: 2), row("A2", line: 3), row("A3", line: 4)]) == 3)
        #expect(try await reg.claimIdentity(pool: s.pool, mac: s.mac(1)).id == "A1")
        // The same file with a new first row: A0 is added (after the rows already there).
        let reload = [row("A0", line: 2), row("A1", line: 3), row("A2", line: 4), row("A3", line: 5)]
        #expect(try await reg.loadIdentities(pool: s.pool, reload) == 1)
        #expect(try await reg.loadIdentities(pool: s.pool, reload) == 0)
        let claims = [try await reg.claimIdentity(pool: s.pool, mac: s.mac(2)), try await reg.claimIdentity(pool: s.pool, mac: s.mac(3)),
                      try await reg.claimIdentity(pool: s.pool, mac: s.mac(4))]
        #expect(claims.map(\.id) == ["A2", "A3", "A0"])
        #expect(claims.map(\.ordinal) == [2, 3, 4])
        await #expect(throws: RegistryError.poolExhausted(s.pool, total: 4)) { try await reg.claimIdentity(pool: s.pool, mac: s.mac(5)) }

        // A row that comes back with other values: refused, naming both places, and nothing of that load is kept.
        do {
            try await reg.loadIdentities(pool: s.pool, [row("A9", line: 2, file: "w.csv"), row("A2", line: 3, file: "w.csv", value: "changed")])
            Issue.record("a changed row was accepted")
        } catch let e as RegistryError {
            guard case .identityConflict(let pool, let id, let new, let earlier) = e else { Issue.record("\(e)"); return }
            #expect(pool == s.pool && id == "A2" && new == "w.csv line 3" && earlier.hasPrefix("v.csv line 3"), "\(e.diagnostic)")
            #expect(e.diagnostic.message.contains("w.csv line 3") && e.diagnostic.message.contains("v.csv line 3"))
        }
        #expect(try await reg.poolStatus(pool: s.pool).total == 4, "A9 was not added: a load is all or nothing")
        // Duplicates in one load are an error.
        await #expect(throws: RegistryError.duplicateIdentity(pool: s.pool, id: "B", first: "x.csv line 2", second: "x.csv line 3")) {
            try await reg.loadIdentities(pool: s.pool, [row("B", line: 2, file: "x.csv"), row("B", line: 3, file: "x.csv")])
        }
        // Rows loaded without a digest take the first digest seen, then are compared.
        try await reg.loadIdentities(pool: s.pool + "-old", [IdentityRow(id: "C", ordinal: 1)])
        #expect(try await reg.loadIdentities(pool: s.pool + "-old", [row("C", line: 2)]) == 0)
        await #expect(throws: RegistryError.self) { try await reg.loadIdentities(pool: s.pool + "-old", [row("C", line: 2, value: "other")]) }
        try await reg.close()
    }

    @Test("two stations (two processes) load overlapping values files and claim at once: no identity twice, none lost or skipped",
          arguments: Backend.enabled)
    func twoStationsLoadAndClaim(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let dir = try TestEnvironment.temporaryDirectory("espforge-pool2")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Station 1 has rows 0–29, station 2 rows 10–39 (the same values where they overlap).
        var files: [String] = []
        for (name, range) in [("a.csv", 0..<30), ("b.csv", 10..<40)] {
            let path = dir.appendingPathComponent(name).path
            try ("serial,secret\n" + range.map { "S-\(s.tag)-\($0),v\($0)\n" }.joined()).write(toFile: path, atomically: true, encoding: .utf8)
            files.append(path)
        }
        let perStation = 15
        let bases = [s.mac(0), s.mac(1000)]
        let outputs = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
            for (file, base) in zip(files, bases) {
                group.addTask {
                    var env = ProcessInfo.processInfo.environment
                    env["ESPFORGE_TEST_CLAIM_PAUSE_MS"] = "10"
                    return try ProcessRunner.run(Espforge.path, ["registry", "claim", "--registry", url, "--pool", s.pool, "--load", file,
                                                                 "--mac", base, "--count", String(perStation)], environment: env)
                }
            }
            var all: [ProcessResult] = []
            for try await r in group { all.append(r) }
            return all
        }
        var claims: [ClaimedIdentity] = []
        for r in outputs {
            #expect(r.status == 0, "\(r.err)")
            claims += try r.out.split(separator: "\n").map { try JSONDecoder().decode(ClaimedIdentity.self, from: Data($0.utf8)) }
        }
        #expect(claims.count == 2 * perStation)
        #expect(Set(claims.map(\.id)).count == claims.count, "an identity was claimed twice")
        #expect(Set(claims.map(\.ordinal)) == Set(1...(2 * perStation)), "claims take the pool in order, none skipped")
        let reg = try await openRegistry(url: url)
        let status = try await reg.poolStatus(pool: s.pool)
        #expect(status.total == 40 && status.claimed == 2 * perStation, "every row of both files is in the pool once")
        try await reg.close()
    }

    @Test("a v1 registry migrates without losing rows, claims, order or records", arguments: Backend.enabled)
    func migratesFromV1(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let location = try RegistryLocation.parse(url)
        let schema = "mig_" + s.tag
        func open(through: String?) async throws -> any DeviceRegistry {
            switch location {
            case .sqlite(let path): return try SQLiteRegistry(path: path, migrateThrough: through)
            case .postgres: return try await PostgresRegistry.connect(location, schema: schema, migrateThrough: through)
            }
        }
        func execute(_ reg: any DeviceRegistry, _ sql: String) async throws {
            if let r = reg as? SQLiteRegistry { try await r.execute(raw: sql) }
            if let r = reg as? PostgresRegistry { try await r.execute(raw: sql) }
        }
        let old = try await open(through: "v1")
        let p = s.pool
        // As the old pipeline and CLI left them: 0-based ordinals, one claimed.
        try await execute(old, "INSERT INTO identities (pool, ordinal, identity, claimed_by, claimed_at) VALUES ('\(p)', 0, 'X0', '\(s.mac(1))', '2026-01-01T00:00:00.000Z')")
        try await execute(old, "INSERT INTO identities (pool, ordinal, identity) VALUES ('\(p)', 1, 'X1')")
        try await execute(old, "INSERT INTO identities (pool, ordinal, identity) VALUES ('\(p)', 2, 'X2')")
        try await old.register(facts(s.mac(1)))
        try await old.finish(mac: s.mac(1), status: .provisioned, efuseSummary: ["ABS_DONE_1": "1"], failure: nil)
        try await old.close()

        let reg = try await open(through: nil)
        if let sq = reg as? SQLiteRegistry { #expect(try sq.appliedMigrations() == ["v1", "v2-pools-events", "escrow-v1"]) }
        if let pg = reg as? PostgresRegistry { #expect(try await pg.appliedMigrations().sorted() == ["escrow-v1", "v1", "v2-pools-events"]) }
        let status = try await reg.poolStatus(pool: p)
        #expect(status.total == 3 && status.claimed == 1)
        #expect(try await reg.device(mac: s.mac(1))?.identity == "X0")
        #expect(try await reg.device(mac: s.mac(1))?.status == .provisioned)
        #expect(try await reg.claimIdentity(pool: p, mac: s.mac(1)).id == "X0", "the old claim is kept")
        #expect(try await reg.claimIdentity(pool: p, mac: s.mac(2)).id == "X1", "order is kept")
        // Reloading the old file adds nothing; a new row goes after the old ones.
        let rows = ["X0", "X1", "X2", "X3"].enumerated().map { IdentityRow(id: $1, ordinal: $0 + 2, digest: rowDigest($1), source: "v.csv line \($0 + 2)") }
        #expect(try await reg.loadIdentities(pool: p, rows) == 1)
        #expect(try await reg.claimIdentity(pool: p, mac: s.mac(3)).id == "X2")
        let last = try await reg.claimIdentity(pool: p, mac: s.mac(4))
        #expect(last.id == "X3" && last.ordinal == 3)
        try await reg.recordEvent(mac: s.mac(1), kind: "test", station: nil, detail: nil)
        if backend == .postgres { try await execute(reg, "DROP SCHEMA \(schema) CASCADE") }
        try await reg.close()
    }
}

@Suite("Registry command line: pools, RMA, events")
struct LineRecordsCLITests {
    @Test("registry pool: reloading with a new first row adds it (the issue's reproduction); a changed row fails naming both lines",
          arguments: Backend.enabled)
    func poolReloadCLI(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let dir = try TestEnvironment.temporaryDirectory("espforge-pool")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("values.csv").path
        try "serial,x\nA1,1\nA2,2\nA3,3\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let first = try Espforge.run(["registry", "pool", s.pool, "--load", csv, "--registry", url])
        #expect(first.status == 0 && first.out.contains("3 identities added"), "\(first.out)\(first.err)")
        try "serial,x\nA0,0\nA1,1\nA2,2\nA3,3\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let again = try Espforge.run(["registry", "pool", s.pool, "--load", csv, "--registry", url])
        #expect(again.status == 0 && again.out.contains("1 identities added") && again.out.contains("4 identities, 0 claimed"),
                "\(again.out)\(again.err)")
        let reg = try await openRegistry(url: url)
        var ids: [String] = []
        for i in 0..<4 { ids.append(try await reg.claimIdentity(pool: s.pool, mac: s.mac(i)).id) }
        #expect(ids == ["A1", "A2", "A3", "A0"], "A0 is claimable, after the rows loaded before it")
        try await reg.close()

        try "serial,x\nA0,0\nA1,1\nA2,hunter2\nA4,4\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let changed = try Espforge.run(["registry", "pool", s.pool, "--load", csv, "--registry", url])
        #expect(changed.status == 1, "\(changed.out)")
        #expect(changed.err.contains("`A2`") && changed.err.contains("values.csv line 4") && changed.err.contains("values.csv line 3"),
                "both places named: \(changed.err)")
        #expect(!changed.err.contains("hunter2"), "values are not shown")
        let shown = try Espforge.run(["registry", "pool", s.pool, "--registry", url])
        #expect(shown.out.contains("4 identities, 4 claimed"), "A4 was not added: \(shown.out)")
    }

    @Test("registry mark --rma: the operator's command, recorded with time and reason; events and show list it",
          arguments: Backend.enabled)
    func markRMA(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let reg = try await openRegistry(url: url)
        try await reg.register(facts(s.mac(1)))
        try await reg.finish(mac: s.mac(1), status: .provisioned, efuseSummary: nil, failure: nil)
        try await reg.close()

        let missing = try Espforge.run(["registry", "mark", s.mac(1), "--registry", url])
        #expect(missing.status != 0 && missing.err.contains("--rma"))
        let r = try Espforge.run(["registry", "mark", s.mac(1).uppercased(), "--rma", "returned: no Wi-Fi", "--station", "repair-1", "--registry", url])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("status rma") && r.out.contains("returned: no Wi-Fi (was provisioned)"), "\(r.out)")
        let list = try Espforge.run(["registry", "list", "--status", "rma", "--registry", url])
        #expect(list.out.contains(s.mac(1)), "\(list.out)")
        let events = try Espforge.run(["registry", "events", "--mac", s.mac(1), "--registry", url, "--json"])
        let parsed = try JSONSerialization.jsonObject(with: Data(events.stdout)) as? [[String: Any]] ?? []
        #expect(parsed.count == 1 && parsed[0]["kind"] as? String == "rma" && parsed[0]["station"] as? String == "repair-1", "\(events.out)")
        let show = try Espforge.run(["registry", "show", s.mac(1), "--registry", url])
        #expect(show.out.contains("Events:") && show.out.contains("returned: no Wi-Fi"), "\(show.out)")
    }
}
