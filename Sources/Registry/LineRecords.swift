import Foundation

/// Schema v2 and the rules shared by both backends for identity pools keyed by value, final
/// records and the event log.
extension Schema {
    /// Migration `v2-pools-events`:
    /// - identities keyed by (pool, identity) instead of (pool, ordinal); `ordinal` stays the
    ///   claim order (still unique per pool); `row_digest`, `source` and `loaded_at` say what was
    ///   loaded from where. Existing rows are copied as they are (ordinals, claims), nothing is lost.
    /// - the `events` log.
    static func v2(autoIncrement: String) -> [String] {
        [
            """
            CREATE TABLE identities_v2 (
                pool TEXT NOT NULL,
                identity TEXT NOT NULL,
                ordinal BIGINT NOT NULL,
                row_digest TEXT,
                source TEXT,
                loaded_at TEXT,
                claimed_by TEXT,
                claimed_at TEXT,
                PRIMARY KEY (pool, identity),
                UNIQUE (pool, ordinal),
                UNIQUE (pool, claimed_by)
            )
            """,
            """
            INSERT INTO identities_v2 (pool, identity, ordinal, claimed_by, claimed_at)
            SELECT pool, identity, ordinal, claimed_by, claimed_at FROM identities
            """,
            "DROP TABLE identities",
            "ALTER TABLE identities_v2 RENAME TO identities",
            "CREATE INDEX IF NOT EXISTS identities_free ON identities (pool, claimed_by, ordinal)",
            """
            CREATE TABLE IF NOT EXISTS events (
                id \(autoIncrement),
                at TEXT NOT NULL,
                mac TEXT,
                kind TEXT NOT NULL,
                station TEXT,
                detail TEXT
            )
            """,
            "CREATE INDEX IF NOT EXISTS events_by_mac ON events (mac, id)",
        ]
    }
}

/// Statuses a record never leaves through provisioning (only `registry mark --rma` moves
/// `provisioned` to `rma`).
enum FinalStatus {
    static let sqlList = "('provisioned', 'rma')"
    static func isFinal(_ status: String) -> Bool { status == DeviceStatus.provisioned.rawValue || status == DeviceStatus.rma.rawValue }
}

enum PoolLoad {
    /// Checks the rows before they reach the database: pool name, ids, digests, sources, and
    /// no id twice. Returns them in load order (by `ordinal`, stable).
    static func validated(pool: String, _ rows: [IdentityRow]) throws -> [IdentityRow] {
        try SecretGuard.checkLabel(pool, field: "pool", maxLength: 128)
        var seen: [String: IdentityRow] = [:]
        for r in rows {
            try SecretGuard.checkIdentity(r.id)
            if let d = r.digest { try SecretGuard.checkDigest(d, field: "identity row digest") }
            if let s = r.source { try SecretGuard.checkFreeText(s, field: "identity source") }
            if let first = seen[r.id] {
                throw RegistryError.duplicateIdentity(pool: pool, id: r.id, first: place(first.source, first.ordinal),
                                                      second: place(r.source, r.ordinal))
            }
            seen[r.id] = r
        }
        return rows.enumerated().sorted { ($0.element.ordinal, $0.offset) < ($1.element.ordinal, $1.offset) }.map(\.element)
    }

    static func place(_ source: String?, _ ordinal: Int) -> String { source ?? "row \(ordinal)" }

    /// A row already in the pool, as far as loading is concerned.
    struct Stored { var digest: String?; var source: String?; var loadedAt: String? }

    /// Splits a load against what the pool holds: rows to insert (in load order) and rows whose
    /// stored digest is missing (loaded before digests existed) and is now filled in. Throws on
    /// the first changed row.
    static func plan(pool: String, _ rows: [IdentityRow], existing: [String: Stored]) throws -> (insert: [IdentityRow], adopt: [IdentityRow]) {
        var insert: [IdentityRow] = [], adopt: [IdentityRow] = []
        for r in rows {
            guard let old = existing[r.id] else { insert.append(r); continue }
            if try compare(pool: pool, row: r, existingDigest: old.digest, existingSource: old.source, loadedAt: old.loadedAt) == .adoptDigest {
                adopt.append(r)
            }
        }
        return (insert, adopt)
    }

    /// What to do with a row whose id is already in the pool.
    enum Existing { case keep, adoptDigest }
    static func compare(pool: String, row: IdentityRow, existingDigest: String?, existingSource: String?,
                        loadedAt: String?) throws -> Existing {
        guard let new = row.digest else { return .keep }
        guard let old = existingDigest else { return .adoptDigest }
        if old == new { return .keep }
        let earlier = (existingSource ?? "an earlier load") + (loadedAt.map { ", loaded \($0)" } ?? "")
        throw RegistryError.identityConflict(pool: pool, id: row.id, row: place(row.source, row.ordinal), earlier: earlier)
    }

    static func checkEvent(mac: String?, kind: String, station: String?, detail: String?) throws -> String? {
        try SecretGuard.checkName(kind, field: "event kind")
        if let station { try SecretGuard.checkLabel(station, field: "station", maxLength: 128) }
        if let detail { try SecretGuard.checkFreeText(detail, field: "event detail") }
        return try mac.map { try Normalize.mac($0) }
    }
}

extension RegistryRow {
    func event() throws -> RegistryEvent {
        RegistryEvent(id: Int64(try int("id") ?? 0), at: try requiredString("at"), mac: try string("mac"),
                      kind: try requiredString("kind"), station: try string("station"), detail: try string("detail"))
    }
}

extension PoolLoad {
    /// The checked inputs of an RMA mark, shared by both backends: the MAC normalised, a reason
    /// required (trimmed), and the event it records valid.
    static func rmaRequest(mac: String, reason: String, station: String?) throws -> (mac: String, reason: String) {
        let mac = try Normalize.mac(mac)
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else { throw RegistryError.invalidValue(field: "reason", why: "an RMA needs a reason") }
        _ = try checkEvent(mac: mac, kind: "rma", station: station, detail: reason)
        return (mac, reason)
    }
}
