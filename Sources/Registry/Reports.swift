import ESPCore
import Foundation

/// A device as reports show it: the record, where `--resume` would continue, and (for `show` and
/// JSON exports) its steps, events and sealed escrow blobs. The JSON of `espforge registry
/// show/list/export --json`.
public struct DeviceReport: Codable, Sendable {
    public var mac: String
    public var status: String
    public var chip: String
    public var chipRevision: Int?
    public var flashID: String?
    public var flashSize: Int?
    public var station: String?
    public var manifestHash: String?
    public var identityPool: String?
    public var identity: String?
    public var imageHashes: [String: String]
    public var keyDigests: [String: String]
    public var keyIDs: [String: String]
    public var efuseSummary: [String: String]?
    public var failure: String?
    public var createdAt: String
    public var updatedAt: String
    public var lastSafeStep: String?
    public var steps: [StepRecord]?
    public var events: [RegistryEvent]?
    /// Escrowed keys, sealed (JSON export only).
    public var escrow: [EscrowReport]?

    public init(_ r: DeviceRecord, steps: [StepRecord]?, lastSafe: StepRecord?) {
        mac = r.mac; status = r.status.rawValue; chip = r.facts.chip; chipRevision = r.facts.chipRevision
        flashID = r.facts.flashID; flashSize = r.facts.flashSize; station = r.facts.station
        manifestHash = r.facts.manifestHash; identityPool = r.identityPool; identity = r.identity
        imageHashes = r.facts.imageHashes; keyDigests = r.facts.keyDigests; keyIDs = r.facts.keyIDs
        efuseSummary = r.efuseSummary; failure = r.failure; createdAt = r.createdAt; updatedAt = r.updatedAt
        lastSafeStep = lastSafe?.step
        self.steps = steps
    }
}

/// A sealed key as exports show it: the blob stays sealed (base64).
public struct EscrowReport: Codable, Sendable {
    public var kind: String
    public var identity: String?
    public var scheme: String
    public var recipient: String
    public var sealed: String
    public var createdAt: String?

    public init(_ r: SealedKeyRecord) {
        kind = r.kind; identity = r.identity; scheme = r.scheme; recipient = r.recipient
        sealed = Data(r.sealed).base64EncodedString(); createdAt = r.createdAt
    }

    /// The device's sealed blobs, or nil when there are none (or the registry keeps no escrow).
    public static func of(_ reg: any DeviceRegistry, mac: String) async throws -> [EscrowReport]? {
        guard let store = reg as? any EscrowStore else { return nil }
        let records = try await store.sealedKeys(mac: mac)
        return records.isEmpty ? nil : records.map(EscrowReport.init)
    }
}

/// The registry's reports (`espforge registry list/show/export/pool/events`): gathered from any
/// ``DeviceRegistry`` and rendered as text tables or CSV. Nothing here prints.
public enum RegistryReports {
    /// Opens the registry at `location` (nil: `./espforge-registry.sqlite`). Unless `create`, a
    /// missing SQLite file is an error: reading commands must not create one.
    public static func open(_ location: String?, create: Bool = false) async throws -> any DeviceRegistry {
        let loc = try RegistryLocation.parse(location)
        if case .sqlite(let path) = loc, !create, !FileManager.default.fileExists(atPath: path) {
            throw UsageError(Diagnostic("no registry here", file: path,
                                        hint: "pass --registry PATH|postgres://…, or run from the folder where provisioning ran"))
        }
        return try await openRegistry(loc)
    }

    /// Runs `body`, then closes the registry (also when `body` throws).
    public static func closing<T>(_ registry: any DeviceRegistry, _ body: (any DeviceRegistry) async throws -> T) async throws -> T {
        do {
            let v = try await body(registry)
            try? await registry.close()
            return v
        } catch {
            try? await registry.close()
            throw error
        }
    }

    /// A status as the command line names it (`in_progress`, `provisioned`, `failed`, `rma`).
    public static func status(_ text: String) throws -> DeviceStatus {
        guard let s = DeviceStatus(rawValue: text) else {
            throw UsageError("unknown status '\(text)'", hint: "use in_progress, provisioned, failed or rma")
        }
        return s
    }

    /// Every device (or those with `status`), with the last step that finished ok.
    public static func list(_ reg: any DeviceRegistry, status: DeviceStatus? = nil) async throws -> [DeviceReport] {
        var out: [DeviceReport] = []
        for d in try await reg.devices() where status == nil || d.status == status {
            out.append(DeviceReport(d, steps: nil, lastSafe: try await reg.lastSafeStep(mac: d.mac)))
        }
        return out
    }

    /// Every device; `withSteps` adds steps and sealed escrow blobs (the JSON export).
    public static func export(_ reg: any DeviceRegistry, withSteps: Bool) async throws -> [DeviceReport] {
        var out: [DeviceReport] = []
        for d in try await reg.devices() {
            var report = DeviceReport(d, steps: withSteps ? try await reg.steps(mac: d.mac) : nil,
                                      lastSafe: try await reg.lastSafeStep(mac: d.mac))
            if withSteps { report.escrow = try await EscrowReport.of(reg, mac: d.mac) }
            out.append(report)
        }
        return out
    }

    /// One device with its steps and events; ``RegistryError/unknownDevice(_:)`` when absent.
    public static func show(_ reg: any DeviceRegistry, mac: String) async throws -> DeviceReport {
        guard let d = try await reg.device(mac: mac) else { throw RegistryError.unknownDevice(mac) }
        var r = DeviceReport(d, steps: try await reg.steps(mac: d.mac), lastSafe: try await reg.lastSafeStep(mac: d.mac))
        r.events = try await reg.events(mac: d.mac)
        return r
    }

    /// `registry list`: the table, then `N device(s): a in_progress, b provisioned, …`.
    public static func listText(_ reports: [DeviceReport]) -> String {
        let header = ["MAC", "STATUS", "IDENTITY", "STATION", "LAST SAFE STEP", "UPDATED"]
        let rows = reports.map { [$0.mac, $0.status, $0.identity ?? "-", $0.station ?? "-", $0.lastSafeStep ?? "-", $0.updatedAt] }
        let counts = Dictionary(grouping: reports, by: \.status).mapValues(\.count)
        return TextTable.render(header: header, rows: rows) + "\n" + "\(reports.count) device(s): "
            + DeviceStatus.allCases.map { "\(counts[$0.rawValue] ?? 0) \($0.rawValue)" }.joined(separator: ", ")
    }

    /// `registry show`: facts, hashes and digests, the steps and the events (no trailing newline).
    public static func showText(_ report: DeviceReport) -> String {
        let flash = [report.flashID.map { "id \($0)" }, report.flashSize.map { "\($0 >> 20) MB" }].compactMap { $0 }.joined(separator: ", ")
        var lines: [(String, String)] = [
            ("MAC", report.mac), ("Status", report.status), ("Chip", report.chip + (report.chipRevision.map { " rev \($0)" } ?? "")),
            ("Flash", flash.isEmpty ? "-" : flash),
            ("Station", report.station ?? "-"), ("Manifest", report.manifestHash ?? "-"),
            ("Identity", report.identity.map { "\($0) " + (report.identityPool.map { "(pool \($0))" } ?? "(its MAC: no per-device values)") } ?? "-"),
            ("Created", report.createdAt), ("Updated", report.updatedAt),
        ]
        if let f = report.failure { lines.append(("Failure", f)) }
        let width = lines.map(\.0.count).max() ?? 0
        var out = lines.map { k, v in k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v }
        for (title, map) in [("Images (SHA-256)", report.imageHashes), ("Key digests", report.keyDigests), ("Key ids", report.keyIDs),
                             ("eFuse summary", report.efuseSummary ?? [:])] where !map.isEmpty {
            out.append("\(title):")
            for k in map.keys.sorted() { out.append("  \(k) = \(map[k] ?? "")") }
        }
        out.append("Steps:")
        if (report.steps ?? []).isEmpty { out.append("  (none recorded)") } else {
            let rows = (report.steps ?? []).map { [String($0.id), $0.step, $0.outcome.rawValue, $0.startedAt, $0.finishedAt ?? "-", $0.detail ?? ""] }
            out.append(TextTable.render(header: ["#", "STEP", "OUTCOME", "STARTED", "FINISHED", "DETAIL"], rows: rows, indent: "  "))
        }
        if let events = report.events, !events.isEmpty {
            out.append("Events:")
            out.append(TextTable.render(header: ["AT", "KIND", "STATION", "DETAIL"],
                                        rows: events.map { [$0.at, $0.kind, $0.station ?? "-", $0.detail ?? ""] }, indent: "  "))
        }
        return out.joined(separator: "\n")
    }

    /// `registry events`: the table, then `N event(s)`.
    public static func eventsText(_ events: [RegistryEvent]) -> String {
        TextTable.render(header: ["AT", "MAC", "KIND", "STATION", "DETAIL"],
                         rows: events.map { [$0.at, $0.mac ?? "-", $0.kind, $0.station ?? "-", $0.detail ?? ""] })
            + "\n\(events.count) event(s)"
    }

    /// The CSV export's columns, in order.
    public static let csvHeader = "mac,status,chip,chip_revision,flash_id,flash_size,station,manifest_hash,identity_pool,identity,"
        + "image_hashes,key_digests,key_ids,efuse_summary,failure,created_at,updated_at,last_safe_step"

    /// `registry export --csv`: one row per device (maps as compact JSON objects in a cell; cells
    /// with a comma, quote or line break quoted, quotes doubled), ending with a newline.
    public static func csv(_ reports: [DeviceReport]) -> String {
        func cell(_ s: String?) -> String {
            guard let s else { return "" }
            if s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
                return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
            }
            return s
        }
        func obj(_ m: [String: String]?) -> String? {
            guard let m else { return nil }
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? e.encode(m)).map { String(decoding: $0, as: UTF8.self) }
        }
        var lines = [csvHeader]
        for r in reports {
            let cells: [String?] = [r.mac, r.status, r.chip, r.chipRevision.map(String.init), r.flashID, r.flashSize.map(String.init),
                                    r.station, r.manifestHash, r.identityPool, r.identity, obj(r.imageHashes), obj(r.keyDigests),
                                    obj(r.keyIDs), obj(r.efuseSummary), r.failure, r.createdAt, r.updatedAt, r.lastSafeStep]
            lines.append(cells.map(cell).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A pool after a load: how many identities were added, how many it holds and has claimed.
    public struct PoolStatus: Codable, Sendable, Equatable {
        public var pool: String
        public var added: Int
        public var total: Int
        public var claimed: Int
        /// `pool NAME: N identities added` (after a load), then `pool NAME: T identities, C claimed, F free`.
        public func text(loaded: Bool) -> String {
            (loaded ? "pool \(pool): \(added) identities added\n" : "")
                + "pool \(pool): \(total) identities, \(claimed) claimed, \(total - claimed) free"
        }
    }

    /// Loads `rows` into `pool` (none: only counts) and returns its status.
    public static func pool(_ reg: any DeviceRegistry, pool: String, load rows: [IdentityRow]) async throws -> PoolStatus {
        let added = rows.isEmpty ? 0 : try await reg.loadIdentities(pool: pool, rows)
        let s = try await reg.poolStatus(pool: pool)
        return PoolStatus(pool: pool, added: added, total: s.total, claimed: s.claimed)
    }

    /// The MACs `count` consecutive devices from `first` (aa:bb:cc:dd:ee:ff or 12 hex digits), as
    /// 12 lower-case hex digits.
    public static func consecutiveMACs(from first: String, count: Int) throws -> [String] {
        let hex = first.lowercased().filter { $0.isHexDigit }
        guard hex.count == 12, let base = UInt64(hex, radix: 16) else {
            throw UsageError("'\(first)' is not a MAC address", hint: "write it as aa:bb:cc:dd:ee:ff")
        }
        return (0..<UInt64(max(0, count))).map { i in
            let m = String((base &+ i) & 0xFFFF_FFFF_FFFF, radix: 16)
            return String(repeating: "0", count: 12 - m.count) + m
        }
    }
}
