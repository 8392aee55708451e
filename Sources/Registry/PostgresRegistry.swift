import Foundation
import PostgresNIO

/// The registry on a PostgreSQL server, shared by the stations of a line. One connection per
/// registry object; its operations run one at a time. Claims use `SELECT … FOR UPDATE SKIP LOCKED`,
/// so concurrent stations take distinct identities without waiting on each other.
public final class PostgresRegistry: DeviceRegistry {
    let connection: PostgresConnection
    let logger: Logger
    let lock = AsyncLock()

    init(connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    public static func connect(_ location: RegistryLocation) async throws -> PostgresRegistry {
        try await connect(location, schema: nil, migrateThrough: nil)
    }

    /// Migrations in order (name, statements).
    static let migrations: [(String, [String])] = [
        ("v1", Schema.v1(autoIncrement: "BIGSERIAL PRIMARY KEY")),
        ("v2-pools-events", Schema.v2(autoIncrement: "BIGSERIAL PRIMARY KEY")),
        (EscrowSchema.version, EscrowSchema.statements(autoIncrement: "BIGSERIAL PRIMARY KEY")),
    ]

    /// `schema`: work in that PostgreSQL schema (created if missing; tests use a fresh one to
    /// build an old registry); `migrateThrough`: stop after that migration.
    static func connect(_ location: RegistryLocation, schema: String?, migrateThrough: String?) async throws -> PostgresRegistry {
        guard case .postgres(let host, let port, let user, let password, let database, let tlsMode) = location else {
            throw RegistryError.badURL(location.description, hint: "not a postgres:// URL")
        }
        var logger = Logger(label: "espforge.registry")
        logger.logLevel = .critical
        let tls = try PostgresTLSSetup.configuration(for: tlsMode)
        let config = PostgresConnection.Configuration(host: host, port: port, username: user, password: password,
                                                      database: database, tls: tls)
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: config, id: 1, logger: logger)
        } catch {
            throw PostgresTLSSetup.connectError(error, location: location, describe: Self.describe)
        }
        let registry = PostgresRegistry(connection: connection, logger: logger)
        do {
            if let schema {
                guard !schema.isEmpty, schema.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) else {
                    throw RegistryError.invalidValue(field: "schema", why: "lowercase letters, digits and _ only")
                }
                _ = try await registry.rows(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"))
                _ = try await registry.rows(PostgresQuery(unsafeSQL: "SET search_path TO \(schema)"))
            }
            try await registry.migrate(through: migrateThrough)
        } catch {
            try? await connection.close()
            throw error
        }
        return registry
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            if let m = e.serverInfo?[.message] { return m }
            return "\(e.code)"
        }
        if let e = error as? PostgresTransactionError {
            return [e.closureError, e.commitError, e.beginError].compactMap { $0 }.map(describe).first ?? "transaction failed"
        }
        if let e = error as? RegistryError { return e.diagnostic.message }
        return String(describing: error)
    }

    static func sqlState(_ error: any Error) -> String? {
        if let e = error as? PSQLError { return e.serverInfo?[.sqlState] }
        if let e = error as? PostgresTransactionError { return (e.closureError ?? e.commitError).flatMap(sqlState) }
        return nil
    }

    /// Runs `body` alone on the connection; database errors become ``RegistryError/database(_:)``.
    func serial<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        await lock.lock()
        do {
            let value = try await body(connection)
            await lock.unlock()
            return value
        } catch let e as RegistryError {
            await lock.unlock()
            throw e
        } catch {
            await lock.unlock()
            throw RegistryError.database(Self.describe(error))
        }
    }

    /// BEGIN … COMMIT (ROLLBACK on error) around `body`.
    func transaction<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await serial { conn in
            _ = try await conn.query("BEGIN", logger: self.logger).collect()
            do {
                let v = try await body(conn)
                _ = try await conn.query("COMMIT", logger: self.logger).collect()
                return v
            } catch {
                _ = try? await conn.query("ROLLBACK", logger: self.logger).collect()
                throw error
            }
        }
    }

    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await serial { conn in try await conn.query(query, logger: self.logger).collect() }
    }

    /// Schema migrations: a version table, applied under an advisory lock so stations starting
    /// together do not race.
    func migrate(through last: String? = nil) async throws {
        try await transaction { conn in
            _ = try await conn.query("SELECT pg_advisory_xact_lock(7334551)", logger: self.logger).collect()
            _ = try await conn.query("CREATE TABLE IF NOT EXISTS espforge_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
                                     logger: self.logger).collect()
            let applied = try await conn.query("SELECT version FROM espforge_migrations", logger: self.logger).collect()
                .compactMap { try? PostgresRowReader($0).string("version") }
            var wanted = Self.migrations
            if let last, let i = wanted.firstIndex(where: { $0.0 == last }) { wanted = Array(wanted[...i]) }
            for (version, statements) in wanted where !applied.contains(version) {
                for s in statements {
                    _ = try await conn.query(PostgresQuery(unsafeSQL: s), logger: self.logger).collect()
                }
                let now = Timestamp.now()
                _ = try await conn.query("INSERT INTO espforge_migrations (version, applied_at) VALUES (\(version), \(now))",
                                         logger: self.logger).collect()
            }
        }
    }

    /// Whether the server sees this connection as encrypted (pg_stat_ssl).
    func connectionIsEncrypted() async throws -> Bool {
        let rows = try await rows("SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return try rows.first.flatMap { try PostgresRowReader($0).string("ssl") } == "true"
    }

    /// Test hook: runs raw SQL (to build registries in an old schema).
    func execute(raw sql: String) async throws {
        _ = try await rows(PostgresQuery(unsafeSQL: sql))
    }

    public func appliedMigrations() async throws -> [String] {
        try await rows("SELECT version FROM espforge_migrations ORDER BY version").map { try PostgresRowReader($0).requiredString("version") }
    }

    public func register(_ facts: DeviceFacts) async throws {
        var f = facts
        f.mac = try Normalize.mac(facts.mac)
        try SecretGuard.check(f)
        let now = Timestamp.now()
        let images = JSONText.encode(f.imageHashes), digests = JSONText.encode(f.keyDigests), ids = JSONText.encode(f.keyIDs)
        let changed = try await rows("""
            INSERT INTO devices (mac, chip, chip_revision, flash_id, flash_size, station, manifest_hash, image_hashes,
                                 key_digests, key_ids, status, created_at, updated_at)
            VALUES (\(f.mac), \(f.chip), \(f.chipRevision), \(f.flashID), \(f.flashSize), \(f.station), \(f.manifestHash),
                    \(images), \(digests), \(ids), 'in_progress', \(now), \(now))
            ON CONFLICT (mac) DO UPDATE SET chip = excluded.chip, chip_revision = excluded.chip_revision,
                flash_id = excluded.flash_id, flash_size = excluded.flash_size, station = excluded.station,
                manifest_hash = excluded.manifest_hash, image_hashes = excluded.image_hashes,
                key_digests = excluded.key_digests, key_ids = excluded.key_ids, updated_at = excluded.updated_at
            WHERE devices.status NOT IN \(unescaped: FinalStatus.sqlList)
            RETURNING mac
            """)
        if changed.isEmpty {
            let status = try await rows("SELECT status FROM devices WHERE mac = \(f.mac)").first.flatMap { try PostgresRowReader($0).string("status") }
            throw RegistryError.recordLocked(mac: f.mac, status: status ?? "?")
        }
    }

    public func loadIdentities(pool: String, _ rows: [IdentityRow]) async throws -> Int {
        let rows = try PoolLoad.validated(pool: pool, rows)
        let logger = self.logger
        let now = Timestamp.now()
        return try await transaction { conn in
            // Loads of one pool take turns (stations starting together); claims are not blocked.
            _ = try await conn.query("SELECT pg_advisory_xact_lock(7334552, hashtext(\(pool)))", logger: logger).collect()
            var existing: [String: PoolLoad.Stored] = [:]
            var next = 0
            for row in try await conn.query("""
                SELECT identity, ordinal, row_digest, source, loaded_at FROM identities WHERE pool = \(pool)
                """, logger: logger).collect() {
                let o = PostgresRowReader(row)
                existing[try o.requiredString("identity")] = PoolLoad.Stored(digest: try o.string("row_digest"), source: try o.string("source"),
                                                                             loadedAt: try o.string("loaded_at"))
                next = max(next, try o.int("ordinal") ?? 0)
            }
            let plan = try PoolLoad.plan(pool: pool, rows, existing: existing)
            for r in plan.adopt {
                _ = try await conn.query("""
                    UPDATE identities SET row_digest = \(r.digest), source = COALESCE(source, \(r.source)),
                        loaded_at = COALESCE(loaded_at, \(now)) WHERE pool = \(pool) AND identity = \(r.id)
                    """, logger: logger).collect()
            }
            // New rows in batches (one round trip per 500 rows), positions after the existing ones.
            var start = plan.insert.startIndex
            while start < plan.insert.endIndex {
                let batch = plan.insert[start..<min(start + 500, plan.insert.endIndex)]
                var binds = PostgresBindings()
                var tuples: [String] = []
                for r in batch {
                    next += 1
                    let n = binds.count
                    tuples.append("($\(n + 1), $\(n + 2), $\(n + 3), $\(n + 4), $\(n + 5), $\(n + 6))")
                    binds.append(pool); binds.append(r.id); binds.append(next)
                    binds.append(r.digest); binds.append(r.source); binds.append(now)
                }
                let sql = "INSERT INTO identities (pool, identity, ordinal, row_digest, source, loaded_at) VALUES " + tuples.joined(separator: ", ")
                _ = try await conn.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).collect()
                start = batch.endIndex
            }
            let added = plan.insert.count
            return added
        }
    }

    public func claimIdentity(pool: String, mac: String) async throws -> ClaimedIdentity {
        let mac = try Normalize.mac(mac)
        // A unique violation means another process claimed for this same device at the same
        // moment: the retry finds that claim and returns it. "Busy" means every free row is
        // locked by claims in flight; one of them may roll back, so look again shortly.
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await claimOnce(pool: pool, mac: mac)
            } catch RegistryError.database(let m) where attempt < 3 && m.contains("duplicate key") {
                continue
            } catch RegistryError.database(let m) where attempt < 500 && m == Self.busy {
                try await Task.sleep(nanoseconds: 10_000_000)
                continue
            }
        }
    }

    static let busy = "all free identities are being claimed right now; try again"

    func claimOnce(pool: String, mac: String) async throws -> ClaimedIdentity {
        let logger = self.logger
        let now = Timestamp.now()
        let result: Result<ClaimedIdentity, RegistryError> = try await transaction { conn in
            if let row = try await conn.query("SELECT * FROM identities WHERE pool = \(pool) AND claimed_by = \(mac)",
                                              logger: logger).collect().first {
                return .success(try PostgresRowReader(row).claimed(mac: mac, newlyClaimed: false))
            }
            guard let free = try await conn.query("""
                SELECT ordinal FROM identities WHERE pool = \(pool) AND claimed_by IS NULL
                ORDER BY ordinal LIMIT 1 FOR UPDATE SKIP LOCKED
                """, logger: logger).collect().first,
                let ordinal = try PostgresRowReader(free).int("ordinal") else {
                let counts = try await conn.query("SELECT COUNT(*)::BIGINT AS t, COUNT(claimed_by)::BIGINT AS c FROM identities WHERE pool = \(pool)",
                                                  logger: logger).collect().first
                let total = try counts.flatMap { try PostgresRowReader($0).int("t") } ?? 0
                let claimed = try counts.flatMap { try PostgresRowReader($0).int("c") } ?? 0
                if total == 0 { return .failure(.poolEmpty(pool)) }
                if claimed < total {
                    // Free rows exist but are locked by claims in flight: report as busy.
                    return .failure(.database(Self.busy))
                }
                return .failure(.poolExhausted(pool, total: total))
            }
            if let pause = ClaimPause.microseconds { try await Task.sleep(nanoseconds: UInt64(pause) * 1000) }
            guard let row = try await conn.query("""
                UPDATE identities SET claimed_by = \(mac), claimed_at = \(now)
                WHERE pool = \(pool) AND ordinal = \(ordinal) AND claimed_by IS NULL RETURNING *
                """, logger: logger).collect().first else {
                throw RegistryError.database("identity \(ordinal) of pool \(pool) changed while locked")
            }
            return .success(try PostgresRowReader(row).claimed(mac: mac, newlyClaimed: true))
        }
        return try result.get()
    }

    public func identity(pool: String, mac: String) async throws -> ClaimedIdentity? {
        let mac = try Normalize.mac(mac)
        return try await rows("SELECT * FROM identities WHERE pool = \(pool) AND claimed_by = \(mac)").first
            .map { try PostgresRowReader($0).claimed(mac: mac, newlyClaimed: false) }
    }

    public func poolStatus(pool: String) async throws -> (total: Int, claimed: Int) {
        guard let row = try await rows("SELECT COUNT(*)::BIGINT AS t, COUNT(claimed_by)::BIGINT AS c FROM identities WHERE pool = \(pool)").first else {
            return (0, 0)
        }
        let r = PostgresRowReader(row)
        return (try r.int("t") ?? 0, try r.int("c") ?? 0)
    }

    public func beginStep(mac: String, step: String, detail: String?) async throws -> Int64 {
        let mac = try Normalize.mac(mac)
        try SecretGuard.checkLabel(step, field: "step", maxLength: 64)
        if let detail { try SecretGuard.checkFreeText(detail, field: "step detail") }
        let now = Timestamp.now()
        guard let row = try await rows("""
            INSERT INTO steps (mac, step, started_at, outcome, detail) VALUES (\(mac), \(step), \(now), 'running', \(detail)) RETURNING id
            """).first, let id = try PostgresRowReader(row).int("id") else {
            throw RegistryError.database("INSERT INTO steps returned no id")
        }
        return Int64(id)
    }

    public func finishStep(_ id: Int64, outcome: StepOutcome, detail: String?) async throws {
        if let detail { try SecretGuard.checkFreeText(detail, field: "step detail") }
        let now = Timestamp.now()
        let changed = try await rows("""
            UPDATE steps SET finished_at = \(now), outcome = \(outcome.rawValue), detail = COALESCE(\(detail), detail)
            WHERE id = \(id) RETURNING id
            """).count
        guard changed == 1 else { throw RegistryError.unknownStep(id) }
    }

    public func steps(mac: String) async throws -> [StepRecord] {
        let mac = try Normalize.mac(mac)
        return try await rows("SELECT * FROM steps WHERE mac = \(mac) ORDER BY id").map { try PostgresRowReader($0).stepRecord() }
    }

    public func lastSafeStep(mac: String) async throws -> StepRecord? {
        let mac = try Normalize.mac(mac)
        return try await rows("SELECT * FROM steps WHERE mac = \(mac) AND outcome = 'ok' ORDER BY id DESC LIMIT 1").first
            .map { try PostgresRowReader($0).stepRecord() }
    }

    public func finish(mac: String, status: DeviceStatus, efuseSummary: [String: String]?, failure: String?) async throws {
        let mac = try Normalize.mac(mac)
        if let efuseSummary { try SecretGuard.check(efuseSummary: efuseSummary) }
        if let failure { try SecretGuard.checkFreeText(failure, field: "failure") }
        let now = Timestamp.now()
        let summary = efuseSummary.map(JSONText.encode)
        let changed = try await rows("""
            UPDATE devices SET status = \(status.rawValue), efuse_summary = COALESCE(\(summary), efuse_summary),
                failure = \(failure), updated_at = \(now) WHERE mac = \(mac) AND status NOT IN \(unescaped: FinalStatus.sqlList) RETURNING mac
            """).count
        if changed == 1 { return }
        guard let row = try await rows("SELECT status FROM devices WHERE mac = \(mac)").first,
              let current = try PostgresRowReader(row).string("status") else {
            throw RegistryError.unknownDevice(mac)
        }
        throw RegistryError.recordLocked(mac: mac, status: current)
    }

    public func recordEvent(mac: String?, kind: String, station: String?, detail: String?) async throws {
        let mac = try PoolLoad.checkEvent(mac: mac, kind: kind, station: station, detail: detail)
        let now = Timestamp.now()
        _ = try await rows("INSERT INTO events (at, mac, kind, station, detail) VALUES (\(now), \(mac), \(kind), \(station), \(detail))")
    }

    public func events(mac: String?) async throws -> [RegistryEvent] {
        let mac = try mac.map { try Normalize.mac($0) }
        let found: [PostgresRow]
        if let mac { found = try await rows("SELECT * FROM events WHERE mac = \(mac) ORDER BY id") } else {
            found = try await rows("SELECT * FROM events ORDER BY id")
        }
        return try found.map { try PostgresRowReader($0).event() }
    }

    public func markRMA(mac: String, reason: String, station: String?) async throws -> DeviceRecord {
        let (mac, reason) = try PoolLoad.rmaRequest(mac: mac, reason: reason, station: station)
        let now = Timestamp.now()
        let logger = self.logger
        return try await transaction { conn in
            guard let before = try await conn.query("SELECT status FROM devices WHERE mac = \(mac) FOR UPDATE", logger: logger).collect().first,
                  let status = try PostgresRowReader(before).string("status") else {
                throw RegistryError.unknownDevice(mac)
            }
            let detail = "\(reason) (was \(status))"
            _ = try await conn.query("UPDATE devices SET status = 'rma', updated_at = \(now) WHERE mac = \(mac)", logger: logger).collect()
            _ = try await conn.query("INSERT INTO events (at, mac, kind, station, detail) VALUES (\(now), \(mac), 'rma', \(station), \(detail))",
                                     logger: logger).collect()
            guard let row = try await conn.query("SELECT \(unescaped: SQL.deviceColumns) FROM devices d WHERE d.mac = \(mac)",
                                                 logger: logger).collect().first else {
                throw RegistryError.unknownDevice(mac)
            }
            return try PostgresRowReader(row).deviceRecord()
        }
    }

    public func device(mac: String) async throws -> DeviceRecord? {
        let mac = try Normalize.mac(mac)
        return try await rows("SELECT \(unescaped: SQL.deviceColumns) FROM devices d WHERE d.mac = \(mac)").first
            .map { try PostgresRowReader($0).deviceRecord() }
    }

    public func devices() async throws -> [DeviceRecord] {
        try await rows("SELECT \(unescaped: SQL.deviceColumns) FROM devices d ORDER BY d.created_at, d.mac")
            .map { try PostgresRowReader($0).deviceRecord() }
    }

    public func close() async throws {
        try await connection.close()
    }
}

struct PostgresRowReader: RegistryRow {
    let row: PostgresRandomAccessRow
    init(_ row: PostgresRow) { self.row = row.makeRandomAccess() }
    func string(_ column: String) throws -> String? {
        guard row.contains(column) else { return nil }
        return try row[column].decode(String?.self)
    }
    func int(_ column: String) throws -> Int? {
        guard row.contains(column) else { return nil }
        return try row[column].decode(Int?.self)
    }
}

/// A first-come, first-served async mutex.
actor AsyncLock {
    private var locked = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func lock() async {
        if !locked { locked = true; return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func unlock() {
        if waiters.isEmpty { locked = false } else { waiters.removeFirst().resume() }
    }
}
