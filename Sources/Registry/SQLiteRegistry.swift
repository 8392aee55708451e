import Foundation
import GRDB

/// The registry in an SQLite file (GRDB). Several processes may share the file: writes take the
/// database lock (claims in an IMMEDIATE transaction) and wait up to 30 s for each other.
public final class SQLiteRegistry: DeviceRegistry {
    let db: DatabaseQueue
    public let path: String

    public convenience init(path: String) throws {
        try self.init(path: path, migrateThrough: nil)
    }

    /// `migrateThrough`: stop after that migration (tests build old registries with it).
    init(path: String, migrateThrough: String?) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.label = "espforge-registry"
        do {
            db = try DatabaseQueue(path: path, configuration: config)
            // Several processes opening a new file at once race on the migration records (each
            // migration commits atomically, but which ones are pending is read before the write
            // lock): the loser looks again and finds the other's migrations in place. Each retry
            // makes progress, so a few converge.
            var attempt = 0
            while true {
                do {
                    if let last = migrateThrough { try Self.migrator.migrate(db, upTo: last) } else { try Self.migrator.migrate(db) }
                    break
                } catch let e as DatabaseError where attempt < 10 {
                    _ = e
                    attempt += 1
                    usleep(useconds_t(20_000 * attempt))
                }
            }
        } catch let e as DatabaseError {
            throw RegistryError.database("\(path): \(e.message ?? e.description)")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            for statement in Schema.v1(autoIncrement: "INTEGER PRIMARY KEY AUTOINCREMENT") {
                try db.execute(sql: statement)
            }
        }
        m.registerMigration("v2-pools-events") { db in
            for statement in Schema.v2(autoIncrement: "INTEGER PRIMARY KEY AUTOINCREMENT") {
                try db.execute(sql: statement)
            }
        }
        m.registerMigration(EscrowSchema.version) { db in
            for statement in EscrowSchema.statements(autoIncrement: "INTEGER PRIMARY KEY AUTOINCREMENT") { try db.execute(sql: statement) }
        }
        return m
    }

    /// Test hook: runs raw SQL (to build registries in an old schema).
    func execute(raw sql: String) async throws {
        try await db.write { try $0.execute(sql: sql) }
    }

    /// Versions of the schema applied to this file.
    public func appliedMigrations() throws -> [String] {
        try db.read { try Self.migrator.appliedMigrations($0) }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await db.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                guard let result else { throw RegistryError.database("transaction produced no result") }
                return result
            }
        } catch let e as DatabaseError {
            throw RegistryError.database(e.message ?? e.description)
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await db.read(body)
        } catch let e as DatabaseError {
            throw RegistryError.database(e.message ?? e.description)
        }
    }

    public func register(_ facts: DeviceFacts) async throws {
        var f = facts
        f.mac = try Normalize.mac(facts.mac)
        try SecretGuard.check(f)
        let now = Timestamp.now()
        let fixed = f
        try await write { db in
            try db.execute(sql: """
                INSERT INTO devices (mac, chip, chip_revision, flash_id, flash_size, station, manifest_hash, image_hashes,
                                     key_digests, key_ids, status, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'in_progress', ?, ?)
                ON CONFLICT (mac) DO UPDATE SET chip = excluded.chip, chip_revision = excluded.chip_revision,
                    flash_id = excluded.flash_id, flash_size = excluded.flash_size, station = excluded.station,
                    manifest_hash = excluded.manifest_hash, image_hashes = excluded.image_hashes,
                    key_digests = excluded.key_digests, key_ids = excluded.key_ids, updated_at = excluded.updated_at
                WHERE devices.status NOT IN \(FinalStatus.sqlList)
                """, arguments: [fixed.mac, fixed.chip, fixed.chipRevision, fixed.flashID, fixed.flashSize, fixed.station,
                                 fixed.manifestHash, JSONText.encode(fixed.imageHashes), JSONText.encode(fixed.keyDigests),
                                 JSONText.encode(fixed.keyIDs), now, now])
            if db.changesCount == 0 {
                let status = try String.fetchOne(db, sql: "SELECT status FROM devices WHERE mac = ?", arguments: [fixed.mac]) ?? "?"
                throw RegistryError.recordLocked(mac: fixed.mac, status: status)
            }
        }
    }

    public func loadIdentities(pool: String, _ rows: [IdentityRow]) async throws -> Int {
        let rows = try PoolLoad.validated(pool: pool, rows)
        let now = Timestamp.now()
        // One IMMEDIATE transaction: loads and claims of other processes wait; a conflict rolls back all.
        return try await write { db in
            var existing: [String: PoolLoad.Stored] = [:]
            var next = 0
            for row in try Row.fetchAll(db, sql: "SELECT identity, ordinal, row_digest, source, loaded_at FROM identities WHERE pool = ?",
                                        arguments: [pool]) {
                existing[row["identity"]] = PoolLoad.Stored(digest: row["row_digest"], source: row["source"], loadedAt: row["loaded_at"])
                next = max(next, row["ordinal"])
            }
            let plan = try PoolLoad.plan(pool: pool, rows, existing: existing)
            for r in plan.adopt {
                try db.execute(sql: """
                    UPDATE identities SET row_digest = ?, source = COALESCE(source, ?), loaded_at = COALESCE(loaded_at, ?)
                    WHERE pool = ? AND identity = ?
                    """, arguments: [r.digest, r.source, now, pool, r.id])
            }
            for r in plan.insert {
                next += 1
                try db.execute(sql: """
                    INSERT INTO identities (pool, identity, ordinal, row_digest, source, loaded_at) VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [pool, r.id, next, r.digest, r.source, now])
            }
            let added = plan.insert.count
            return added
        }
    }

    public func claimIdentity(pool: String, mac: String) async throws -> ClaimedIdentity {
        let mac = try Normalize.mac(mac)
        let now = Timestamp.now()
        let result: Result<ClaimedIdentity, RegistryError> = try await write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT * FROM identities WHERE pool = ? AND claimed_by = ?", arguments: [pool, mac]) {
                return .success(try SQLiteRow(row).claimed(mac: mac, newlyClaimed: false))
            }
            guard let free = try Row.fetchOne(db, sql: """
                SELECT ordinal FROM identities WHERE pool = ? AND claimed_by IS NULL ORDER BY ordinal LIMIT 1
                """, arguments: [pool]) else {
                let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM identities WHERE pool = ?", arguments: [pool]) ?? 0
                return .failure(total == 0 ? .poolEmpty(pool) : .poolExhausted(pool, total: total))
            }
            let ordinal: Int = free["ordinal"]
            if let pause = ClaimPause.microseconds { usleep(pause) }
            try db.execute(sql: "UPDATE identities SET claimed_by = ?, claimed_at = ? WHERE pool = ? AND ordinal = ? AND claimed_by IS NULL",
                           arguments: [mac, now, pool, ordinal])
            guard db.changesCount == 1,
                  let row = try Row.fetchOne(db, sql: "SELECT * FROM identities WHERE pool = ? AND ordinal = ?", arguments: [pool, ordinal]) else {
                throw RegistryError.database("identity \(ordinal) of pool \(pool) changed under an IMMEDIATE transaction")
            }
            return .success(try SQLiteRow(row).claimed(mac: mac, newlyClaimed: true))
        }
        return try result.get()
    }

    public func identity(pool: String, mac: String) async throws -> ClaimedIdentity? {
        let mac = try Normalize.mac(mac)
        return try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM identities WHERE pool = ? AND claimed_by = ?", arguments: [pool, mac])
                .map { try SQLiteRow($0).claimed(mac: mac, newlyClaimed: false) }
        }
    }

    public func poolStatus(pool: String) async throws -> (total: Int, claimed: Int) {
        let counts: [Int] = try await read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS t, COUNT(claimed_by) AS c FROM identities WHERE pool = ?", arguments: [pool])
            return [row?["t"] ?? 0, row?["c"] ?? 0]
        }
        return (counts[0], counts[1])
    }

    public func beginStep(mac: String, step: String, detail: String?) async throws -> Int64 {
        let mac = try Normalize.mac(mac)
        try SecretGuard.checkLabel(step, field: "step", maxLength: 64)
        if let detail { try SecretGuard.checkFreeText(detail, field: "step detail") }
        let now = Timestamp.now()
        return try await write { db in
            try db.execute(sql: "INSERT INTO steps (mac, step, started_at, outcome, detail) VALUES (?, ?, ?, 'running', ?)",
                           arguments: [mac, step, now, detail])
            return db.lastInsertedRowID
        }
    }

    public func finishStep(_ id: Int64, outcome: StepOutcome, detail: String?) async throws {
        if let detail { try SecretGuard.checkFreeText(detail, field: "step detail") }
        let now = Timestamp.now()
        let changed: Int = try await write { db in
            try db.execute(sql: "UPDATE steps SET finished_at = ?, outcome = ?, detail = COALESCE(?, detail) WHERE id = ?",
                           arguments: [now, outcome.rawValue, detail, id])
            return db.changesCount
        }
        guard changed == 1 else { throw RegistryError.unknownStep(id) }
    }

    public func steps(mac: String) async throws -> [StepRecord] {
        let mac = try Normalize.mac(mac)
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM steps WHERE mac = ? ORDER BY id", arguments: [mac]).map { try SQLiteRow($0).stepRecord() }
        }
    }

    public func lastSafeStep(mac: String) async throws -> StepRecord? {
        let mac = try Normalize.mac(mac)
        return try await read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM steps WHERE mac = ? AND outcome = 'ok' ORDER BY id DESC LIMIT 1", arguments: [mac])
                .map { try SQLiteRow($0).stepRecord() }
        }
    }

    public func finish(mac: String, status: DeviceStatus, efuseSummary: [String: String]?, failure: String?) async throws {
        let mac = try Normalize.mac(mac)
        if let efuseSummary { try SecretGuard.check(efuseSummary: efuseSummary) }
        if let failure { try SecretGuard.checkFreeText(failure, field: "failure") }
        let now = Timestamp.now()
        let summary = efuseSummary.map(JSONText.encode)
        try await write { db in
            try db.execute(sql: """
                UPDATE devices SET status = ?, efuse_summary = COALESCE(?, efuse_summary), failure = ?, updated_at = ?
                WHERE mac = ? AND status NOT IN \(FinalStatus.sqlList)
                """, arguments: [status.rawValue, summary, failure, now, mac])
            if db.changesCount == 1 { return }
            guard let current = try String.fetchOne(db, sql: "SELECT status FROM devices WHERE mac = ?", arguments: [mac]) else {
                throw RegistryError.unknownDevice(mac)
            }
            throw RegistryError.recordLocked(mac: mac, status: current)
        }
    }

    public func recordEvent(mac: String?, kind: String, station: String?, detail: String?) async throws {
        let mac = try PoolLoad.checkEvent(mac: mac, kind: kind, station: station, detail: detail)
        let now = Timestamp.now()
        try await write { db in
            try db.execute(sql: "INSERT INTO events (at, mac, kind, station, detail) VALUES (?, ?, ?, ?, ?)",
                           arguments: [now, mac, kind, station, detail])
        }
    }

    public func events(mac: String?) async throws -> [RegistryEvent] {
        let mac = try mac.map { try Normalize.mac($0) }
        return try await read { db in
            let rows = mac == nil ? try Row.fetchAll(db, sql: "SELECT * FROM events ORDER BY id")
                : try Row.fetchAll(db, sql: "SELECT * FROM events WHERE mac = ? ORDER BY id", arguments: [mac])
            return try rows.map { try SQLiteRow($0).event() }
        }
    }

    public func markRMA(mac: String, reason: String, station: String?) async throws -> DeviceRecord {
        let (mac, reason) = try PoolLoad.rmaRequest(mac: mac, reason: reason, station: station)
        let now = Timestamp.now()
        return try await write { db in
            guard let before = try String.fetchOne(db, sql: "SELECT status FROM devices WHERE mac = ?", arguments: [mac]) else {
                throw RegistryError.unknownDevice(mac)
            }
            try db.execute(sql: "UPDATE devices SET status = 'rma', updated_at = ? WHERE mac = ?", arguments: [now, mac])
            try db.execute(sql: "INSERT INTO events (at, mac, kind, station, detail) VALUES (?, ?, 'rma', ?, ?)",
                           arguments: [now, mac, station, "\(reason) (was \(before))"])
            guard let row = try Row.fetchOne(db, sql: "SELECT \(SQL.deviceColumns) FROM devices d WHERE d.mac = ?", arguments: [mac]) else {
                throw RegistryError.unknownDevice(mac)
            }
            return try SQLiteRow(row).deviceRecord()
        }
    }

    public func device(mac: String) async throws -> DeviceRecord? {
        let mac = try Normalize.mac(mac)
        return try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(SQL.deviceColumns) FROM devices d WHERE d.mac = ?", arguments: [mac])
                .map { try SQLiteRow($0).deviceRecord() }
        }
    }

    public func devices() async throws -> [DeviceRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(SQL.deviceColumns) FROM devices d ORDER BY d.created_at, d.mac")
                .map { try SQLiteRow($0).deviceRecord() }
        }
    }

    public func close() async throws {
        try db.close()
    }
}

struct SQLiteRow: RegistryRow {
    let row: Row
    init(_ row: Row) { self.row = row }
    func string(_ column: String) throws -> String? { row[column] }
    func int(_ column: String) throws -> Int? { row[column] }
}

/// The schema, shared by both backends (only the auto-increment key differs).
enum Schema {
    static func v1(autoIncrement: String) -> [String] {
        [
            """
            CREATE TABLE IF NOT EXISTS devices (
                mac TEXT PRIMARY KEY,
                chip TEXT NOT NULL,
                chip_revision BIGINT,
                flash_id TEXT,
                flash_size BIGINT,
                station TEXT,
                manifest_hash TEXT,
                image_hashes TEXT NOT NULL DEFAULT '{}',
                key_digests TEXT NOT NULL DEFAULT '{}',
                key_ids TEXT NOT NULL DEFAULT '{}',
                status TEXT NOT NULL DEFAULT 'in_progress',
                efuse_summary TEXT,
                failure TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS identities (
                pool TEXT NOT NULL,
                ordinal BIGINT NOT NULL,
                identity TEXT NOT NULL,
                claimed_by TEXT,
                claimed_at TEXT,
                PRIMARY KEY (pool, ordinal),
                UNIQUE (pool, identity),
                UNIQUE (pool, claimed_by)
            )
            """,
            "CREATE INDEX IF NOT EXISTS identities_free ON identities (pool, claimed_by, ordinal)",
            """
            CREATE TABLE IF NOT EXISTS steps (
                id \(autoIncrement),
                mac TEXT NOT NULL,
                step TEXT NOT NULL,
                started_at TEXT NOT NULL,
                finished_at TEXT,
                outcome TEXT NOT NULL,
                detail TEXT
            )
            """,
            "CREATE INDEX IF NOT EXISTS steps_by_mac ON steps (mac, id)",
        ]
    }
}
