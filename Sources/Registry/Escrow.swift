import Foundation
import GRDB
import PostgresNIO

/// One per-device secret sealed to the line's escrow public key (``EscrowStore``). Everything in
/// it is safe to store and export: the blob opens only with the offline escrow private key, and
/// only for this MAC, identity and kind.
public struct SealedKeyRecord: Sendable, Equatable, Codable {
    public var id: Int64?
    public var mac: String
    /// Which secret: `flash_encryption_key`, `nvs_keys`.
    public var kind: String
    /// The identity the device held when the secret was sealed (bound into the blob).
    public var identity: String?
    /// e.g. `hpke-x25519-hkdf-sha256-aes256gcm`.
    public var scheme: String
    /// SHA-256 fingerprint (hex) of the escrow public key it was sealed to.
    public var recipient: String
    /// The sealed blob (base64 in the database and in exports).
    public var sealed: [UInt8]
    public var createdAt: String?

    public init(mac: String, kind: String, identity: String?, scheme: String, recipient: String, sealed: [UInt8]) {
        self.mac = mac; self.kind = kind; self.identity = identity; self.scheme = scheme
        self.recipient = recipient; self.sealed = sealed
    }
}

/// Sealed per-device keys, kept in their own `escrow` table (append-only: a re-run adds a row;
/// the newest row of a kind is what the device holds). SQLite and PostgreSQL implement it.
public protocol EscrowStore: Sendable {
    /// Stores a sealed key after ``SecretGuard/checkSealed(_:)``.
    func storeSealedKey(_ record: SealedKeyRecord) async throws
    /// The sealed keys of a device, oldest first.
    func sealedKeys(mac: String) async throws -> [SealedKeyRecord]
}

extension SecretGuard {
    /// A sealed blob must be one: espforge's envelope (magic `EFES`, version 1, scheme 1 HPKE or
    /// 2 RSA-OAEP, a 32-byte recipient fingerprint, an encapsulated key of a plausible size and
    /// at least an AEAD tag), never a bare key that someone labelled as sealed.
    public static func checkSealed(_ r: SealedKeyRecord) throws(RegistryError) {
        try checkName(r.kind, field: "escrow.kind")
        try checkName(r.scheme, field: "escrow.scheme")
        try checkDigest(r.recipient, field: "escrow.recipient")
        if let identity = r.identity { try checkIdentity(identity) }
        let b = r.sealed
        guard b.count >= 40, Array(b[0..<4]) == Array("EFES".utf8), b[4] == 1, b[5] == 1 || b[5] == 2 else {
            throw .secretRejected(field: "escrow.sealed", why: "it is not an espforge sealed blob (a plaintext key?)")
        }
        let encLength = Int(b[38]) << 8 | Int(b[39])
        let encOK = b[5] == 1 ? encLength == 32 : (256...1024).contains(encLength)
        let minimum = 40 + encLength + (b[5] == 1 ? 16 : 12 + 16) + 1
        guard encOK, b.count >= minimum else {
            throw .secretRejected(field: "escrow.sealed", why: "the sealed blob's layout is inconsistent")
        }
        guard b.count <= 65536 else { throw .invalidValue(field: "escrow.sealed", why: "larger than 64 KiB") }
        guard Array(b[6..<38]).map({ String(format: "%02x", $0) }).joined() == r.recipient.lowercased() else {
            throw .invalidValue(field: "escrow.recipient", why: "does not match the fingerprint inside the blob")
        }
    }
}

enum EscrowSchema {
    static let version = "escrow-v1"

    static func statements(autoIncrement: String) -> [String] {
        [
            """
            CREATE TABLE IF NOT EXISTS escrow (
                id \(autoIncrement),
                mac TEXT NOT NULL,
                kind TEXT NOT NULL,
                identity TEXT,
                scheme TEXT NOT NULL,
                recipient TEXT NOT NULL,
                sealed TEXT NOT NULL,
                created_at TEXT NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS escrow_by_mac ON escrow (mac, id)",
        ]
    }
}

extension RegistryRow {
    func sealedKeyRecord() throws -> SealedKeyRecord {
        guard let blob = Data(base64Encoded: try requiredString("sealed")) else {
            throw RegistryError.database("escrow row holds a damaged blob")
        }
        var r = SealedKeyRecord(mac: try requiredString("mac"), kind: try requiredString("kind"), identity: try string("identity"),
                                scheme: try requiredString("scheme"), recipient: try requiredString("recipient"), sealed: [UInt8](blob))
        r.id = try int("id").map(Int64.init)
        r.createdAt = try string("created_at")
        return r
    }
}

// MARK: - SQLite

extension SQLiteRegistry: EscrowStore {
    public func storeSealedKey(_ record: SealedKeyRecord) async throws {
        var r = record
        r.mac = try Normalize.mac(record.mac)
        try SecretGuard.checkSealed(r)
        let now = Timestamp.now()
        let fixed = r
        try await write { db in
            try db.execute(sql: """
                INSERT INTO escrow (mac, kind, identity, scheme, recipient, sealed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [fixed.mac, fixed.kind, fixed.identity, fixed.scheme, fixed.recipient.lowercased(),
                                 Data(fixed.sealed).base64EncodedString(), now])
        }
    }

    public func sealedKeys(mac: String) async throws -> [SealedKeyRecord] {
        let mac = try Normalize.mac(mac)
        return try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM escrow WHERE mac = ? ORDER BY id", arguments: [mac]).map { try SQLiteRow($0).sealedKeyRecord() }
        }
    }
}

// MARK: - PostgreSQL

extension PostgresRegistry: EscrowStore {
    public func storeSealedKey(_ record: SealedKeyRecord) async throws {
        var r = record
        r.mac = try Normalize.mac(record.mac)
        try SecretGuard.checkSealed(r)
        let now = Timestamp.now()
        let blob = Data(r.sealed).base64EncodedString(), recipient = r.recipient.lowercased()
        _ = try await rows("""
            INSERT INTO escrow (mac, kind, identity, scheme, recipient, sealed, created_at)
            VALUES (\(r.mac), \(r.kind), \(r.identity), \(r.scheme), \(recipient), \(blob), \(now)) RETURNING id
            """)
    }

    public func sealedKeys(mac: String) async throws -> [SealedKeyRecord] {
        let mac = try Normalize.mac(mac)
        return try await rows("SELECT * FROM escrow WHERE mac = \(mac) ORDER BY id").map { try PostgresRowReader($0).sealedKeyRecord() }
    }
}
