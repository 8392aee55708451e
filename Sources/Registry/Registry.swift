@_exported import RegistryCore
import ESPCore
import Foundation

/// The device registry: what each device of a line received, which identity it claimed, and
/// every provisioning step with its outcome. SQLite (a file, the default) and PostgreSQL (several
/// stations on one line) implement the same contract.
///
/// Secrets never enter it: records hold digests and key ids, not key material
/// (``SecretGuard`` rejects anything that looks like a key).
public protocol DeviceRegistry: Sendable {
    /// Creates or updates the device's facts (identify step). Keeps status, steps and identity.
    func register(_ facts: DeviceFacts) async throws
    /// Adds identities to a pool, keyed by their id: every id not yet in the pool is added (after
    /// the pool's existing rows, in the order of `rows`); an id already present is kept as it is,
    /// unless its row digest differs (``RegistryError/identityConflict(pool:id:row:earlier:)``,
    /// nothing is added then). Atomic. Returns how many were new.
    @discardableResult
    func loadIdentities(pool: String, _ rows: [IdentityRow]) async throws -> Int
    /// Claims the next free identity of `pool` for `mac`, atomically across processes and stations.
    /// A device that already holds one in this pool gets the same one back (resume).
    func claimIdentity(pool: String, mac: String) async throws -> ClaimedIdentity
    /// The identity `mac` holds in `pool`, if any.
    func identity(pool: String, mac: String) async throws -> ClaimedIdentity?
    /// Counts of a pool: total and claimed.
    func poolStatus(pool: String) async throws -> (total: Int, claimed: Int)
    /// Records that a step starts; returns its id for ``finishStep(_:outcome:detail:)``.
    func beginStep(mac: String, step: String, detail: String?) async throws -> Int64
    func finishStep(_ id: Int64, outcome: StepOutcome, detail: String?) async throws
    /// All steps of a device, oldest first.
    func steps(mac: String) async throws -> [StepRecord]
    /// The most recent step that finished `ok` (where `--resume` continues after), if any.
    func lastSafeStep(mac: String) async throws -> StepRecord?
    /// Final state: provisioned (with the eFuse summary read back) or failed (with the reason).
    /// A record that is `provisioned` or `rma` is final: this throws ``RegistryError/recordLocked(mac:status:)``.
    func finish(mac: String, status: DeviceStatus, efuseSummary: [String: String]?, failure: String?) async throws
    func device(mac: String) async throws -> DeviceRecord?
    func devices() async throws -> [DeviceRecord]
    /// Appends to the line's event log (refused devices, re-plugged boards, operator actions).
    /// Never changes a device record.
    func recordEvent(mac: String?, kind: String, station: String?, detail: String?) async throws
    /// Events, oldest first (all, or those of one MAC).
    func events(mac: String?) async throws -> [RegistryEvent]
    /// The operator's explicit command to take a device out of `provisioned` (returned, RMA):
    /// status becomes `rma` and an `rma` event with the reason and the previous status is recorded.
    /// The only way a record's status leaves `provisioned`.
    @discardableResult
    func markRMA(mac: String, reason: String, station: String?) async throws -> DeviceRecord
    func close() async throws
}

extension DeviceRegistry {
    /// Runs `body` as a recorded step: `running` before, `ok` or `failed` (with the error) after.
    public func recordStep<T: Sendable>(mac: String, step: String, detail: String? = nil,
                                        _ body: () async throws -> T) async throws -> T {
        let id = try await beginStep(mac: mac, step: step, detail: detail)
        do {
            let value = try await body()
            try await finishStep(id, outcome: .ok, detail: nil)
            return value
        } catch {
            let message = (error as? DiagnosticConvertible)?.diagnostic.message ?? String(describing: error)
            try? await finishStep(id, outcome: .failed, detail: SecretGuard.redactedFreeText(message))
            throw error
        }
    }
}

extension DeviceRegistry {
    /// Marks the steps of `mac` still `running` — their process was killed — as `interrupted`,
    /// with the time this was found. Called when a run (a `--resume` or a fresh start) picks the
    /// device up: only one process works on a connected device. Returns how many were marked.
    @discardableResult
    public func markInterruptedSteps(mac: String) async throws -> Int {
        var marked = 0
        for step in try await steps(mac: mac) where step.outcome == .running {
            try await finishStep(step.id, outcome: .interrupted,
                                 detail: "interrupted: the process ended while this step was running")
            marked += 1
        }
        return marked
    }
}

/// What identify and preflight learned about a device and what it is about to receive.
public struct DeviceFacts: Sendable, Equatable, Codable {
    public var mac: String
    public var chip: String
    public var chipRevision: Int?
    public var flashID: String?
    public var flashSize: Int?
    public var station: String?
    public var manifestHash: String?
    /// Image name → SHA-256 (hex) of what was written.
    public var imageHashes: [String: String]
    /// Key name → digest (hex), e.g. the Secure Boot V2 public key digest.
    public var keyDigests: [String: String]
    /// Key name → key id (a label such as an HSM slot name), never key material.
    public var keyIDs: [String: String]

    public init(mac: String, chip: String, chipRevision: Int? = nil, flashID: String? = nil, flashSize: Int? = nil,
                station: String? = nil, manifestHash: String? = nil, imageHashes: [String: String] = [:],
                keyDigests: [String: String] = [:], keyIDs: [String: String] = [:]) {
        self.mac = mac; self.chip = chip; self.chipRevision = chipRevision; self.flashID = flashID
        self.flashSize = flashSize; self.station = station; self.manifestHash = manifestHash
        self.imageHashes = imageHashes; self.keyDigests = keyDigests; self.keyIDs = keyIDs
    }
}

/// One identity of a pool: a row of the per-device values CSV, keyed by its id (e.g. a serial
/// number). Only the id, a digest of the row and where it came from are stored, never the row's
/// values (they may be secret).
public struct IdentityRow: Sendable, Equatable, Codable {
    public var id: String
    /// Order of the row in what is being loaded (e.g. its CSV line). The pool's claim order is
    /// assigned by the registry: new rows go after the rows already in the pool, in this order.
    public var ordinal: Int
    /// SHA-256 (hex) of the row's values, to tell a changed row on reload (nil: not compared).
    public var digest: String?
    /// Where the row came from, for messages (e.g. `values.csv line 5`).
    public var source: String?
    public init(id: String, ordinal: Int, digest: String? = nil, source: String? = nil) {
        self.id = id; self.ordinal = ordinal; self.digest = digest; self.source = source
    }
}

/// An entry of the registry's event log.
public struct RegistryEvent: Sendable, Equatable, Codable {
    public var id: Int64
    public var at: String
    public var mac: String?
    /// e.g. `refused`, `already-provisioned`, `rma`.
    public var kind: String
    public var station: String?
    public var detail: String?
}

public struct ClaimedIdentity: Sendable, Equatable, Codable {
    public var pool: String
    public var id: String
    public var ordinal: Int
    public var mac: String
    public var claimedAt: String
    /// False when the device already held this identity (a resumed run).
    public var newlyClaimed: Bool
}

public enum StepOutcome: String, Sendable, Codable, CaseIterable {
    /// `interrupted`: the step was `running` when its process ended (found by the next run,
    /// see ``DeviceRegistry/markInterruptedSteps(mac:)``); its finish time is when that was found.
    case running, ok, failed, interrupted
    /// The step did not apply to this device (e.g. claim without per-device values).
    case skipped
}

public enum DeviceStatus: String, Sendable, Codable, CaseIterable {
    case inProgress = "in_progress"
    case provisioned
    case failed
    /// Taken out of the line by the operator (`espforge registry mark MAC --rma "reason"`).
    case rma
}

public struct StepRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var mac: String
    public var step: String
    public var startedAt: String
    public var finishedAt: String?
    public var outcome: StepOutcome
    public var detail: String?
}

public struct DeviceRecord: Sendable, Equatable, Codable {
    public var facts: DeviceFacts
    public var status: DeviceStatus
    public var identityPool: String?
    public var identity: String?
    public var efuseSummary: [String: String]?
    public var failure: String?
    public var createdAt: String
    public var updatedAt: String
    public var mac: String { facts.mac }
}

/// Opens (and migrates) the registry at `location`.
public func openRegistry(_ location: RegistryLocation) async throws -> any DeviceRegistry {
    switch location {
    case .sqlite(let path): return try SQLiteRegistry(path: path)
    case .postgres: return try await PostgresRegistry.connect(location)
    }
}

public func openRegistry(url: String?) async throws -> any DeviceRegistry {
    try await openRegistry(try RegistryLocation.parse(url))
}

// MARK: - Shared helpers

enum Normalize {
    /// `AA-BB-CC-DD-EE-FF`, `aabbccddeeff`, `aa:bb:…` → `aa:bb:cc:dd:ee:ff`.
    static func mac(_ text: String) throws(RegistryError) -> String {
        let hex = text.lowercased().filter { $0 != ":" && $0 != "-" }
        guard hex.count == 12, hex.allSatisfy({ $0.isHexDigit }) else { throw .badMAC(text) }
        var out = ""
        for (i, ch) in hex.enumerated() {
            if i > 0 && i % 2 == 0 { out.append(":") }
            out.append(ch)
        }
        return out
    }
}

/// Test knob: `ESPFORGE_TEST_CLAIM_PAUSE_MS` holds a claim between choosing a free identity and
/// taking it, widening the race window so the concurrency tests would catch a non-atomic claim.
enum ClaimPause {
    static var microseconds: UInt32? {
        guard let v = ProcessInfo.processInfo.environment["ESPFORGE_TEST_CLAIM_PAUSE_MS"], let ms = UInt32(v), ms > 0, ms <= 1000 else {
            return nil
        }
        return ms * 1000
    }
}

enum Timestamp {
    /// UTC, millisecond precision: `2026-11-25T20:57:31.123Z` (sorts as text).
    static func now() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func p(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(p(tmv.tm_year + 1900, 4))-\(p(tmv.tm_mon + 1, 2))-\(p(tmv.tm_mday, 2))T\(p(tmv.tm_hour, 2)):\(p(tmv.tm_min, 2)):\(p(tmv.tm_sec, 2)).\(p(Int32(tv.tv_usec / 1000), 3))Z"
    }
}

enum JSONText {
    static func encode(_ map: [String: String]) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(map)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
    static func decode(_ text: String?) -> [String: String]? {
        guard let text else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: Data(text.utf8))
    }
}

/// Column access shared by the SQLite and PostgreSQL row types.
protocol RegistryRow {
    func string(_ column: String) throws -> String?
    func int(_ column: String) throws -> Int?
}

extension RegistryRow {
    func requiredString(_ column: String) throws -> String {
        guard let v = try string(column) else { throw RegistryError.database("column \(column) is NULL") }
        return v
    }

    func deviceRecord() throws -> DeviceRecord {
        let facts = DeviceFacts(
            mac: try requiredString("mac"), chip: try requiredString("chip"), chipRevision: try int("chip_revision"),
            flashID: try string("flash_id"), flashSize: try int("flash_size"), station: try string("station"),
            manifestHash: try string("manifest_hash"),
            imageHashes: JSONText.decode(try string("image_hashes")) ?? [:],
            keyDigests: JSONText.decode(try string("key_digests")) ?? [:],
            keyIDs: JSONText.decode(try string("key_ids")) ?? [:])
        return DeviceRecord(facts: facts, status: DeviceStatus(rawValue: try requiredString("status")) ?? .inProgress,
                            identityPool: try string("identity_pool"), identity: try string("identity"),
                            efuseSummary: JSONText.decode(try string("efuse_summary")), failure: try string("failure"),
                            createdAt: try requiredString("created_at"), updatedAt: try requiredString("updated_at"))
    }

    func stepRecord() throws -> StepRecord {
        StepRecord(id: Int64(try int("id") ?? 0), mac: try requiredString("mac"), step: try requiredString("step"),
                   startedAt: try requiredString("started_at"), finishedAt: try string("finished_at"),
                   outcome: StepOutcome(rawValue: try requiredString("outcome")) ?? .running, detail: try string("detail"))
    }

    func claimed(mac: String, newlyClaimed: Bool) throws -> ClaimedIdentity {
        ClaimedIdentity(pool: try requiredString("pool"), id: try requiredString("identity"), ordinal: try int("ordinal") ?? 0,
                        mac: mac, claimedAt: try requiredString("claimed_at"), newlyClaimed: newlyClaimed)
    }
}

/// The device list query (same SQL on both backends): devices with their first claimed identity;
/// a device whose claim step was skipped (no per-device values) is identified by its MAC.
enum SQL {
    static let deviceColumns = """
        d.mac, d.chip, d.chip_revision, d.flash_id, d.flash_size, d.station, d.manifest_hash, d.image_hashes, \
        d.key_digests, d.key_ids, d.status, d.efuse_summary, d.failure, d.created_at, d.updated_at, \
        (SELECT i.pool FROM identities i WHERE i.claimed_by = d.mac ORDER BY i.claimed_at, i.pool LIMIT 1) AS identity_pool, \
        COALESCE((SELECT i.identity FROM identities i WHERE i.claimed_by = d.mac ORDER BY i.claimed_at, i.pool LIMIT 1), \
                 (SELECT d.mac FROM steps s WHERE s.mac = d.mac AND s.step = 'claim' AND s.outcome = 'skipped' LIMIT 1)) AS identity
        """
}
