import ArgumentParser
import ESPCore
import Foundation
import NVS
import Provisioning
import Registry

struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "List, show and export the device registry of a production line; identity pools; RMA.",
        discussion: """
            The registry records every provisioned device: MAC, chip revision, flash id, station, \
            manifest hash, image SHA-256s, key digests and key ids (never keys), the identity it \
            claimed, each provisioning step with timestamps and outcome, and the eFuse summary read \
            back at the end. It is an SQLite file by default (./espforge-registry.sqlite) or a \
            PostgreSQL database shared by several stations (--registry postgres://user:pass@host:5432/db). \
            Over a network use TLS: append ?sslmode=verify-full&sslrootcert=/path/ca.pem (the server's \
            certificate must chain to that CA and name the host), or ?sslmode=require to encrypt \
            without checking the certificate. Without sslmode the connection is plain.

            Example:
              espforge registry list
              espforge registry show 24:0a:c4:12:34:56
              espforge registry export --csv -o devices.csv
              espforge registry mark 24:0a:c4:12:34:56 --rma "returned: no Wi-Fi"
              espforge registry events
            """,
        subcommands: [RegistryList.self, RegistryShow.self, RegistryExport.self, RegistryPool.self, RegistryMark.self,
                      RegistryEvents.self, RegistryClaim.self, RegistryUnseal.self, RegistryEscrowKeygen.self, RegistryEscrowBench.self]
    )
}

struct RegistryOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Registry: a file path, sqlite:PATH or postgres://user:pass@host:5432/db (default: $ESPFORGE_REGISTRY or ./espforge-registry.sqlite).",
                               valueName: "url"))
    var registry: String?

    var location: String? { registry ?? ProcessInfo.processInfo.environment["ESPFORGE_REGISTRY"] }

    /// Opens the registry; a missing SQLite file is an error here (reading commands must not create one).
    func open(create: Bool = false) async throws -> any DeviceRegistry {
        let loc = try RegistryLocation.parse(location)
        if case .sqlite(let path) = loc, !create, !FileManager.default.fileExists(atPath: path) {
            throw UsageError(Diagnostic("no registry here", file: path,
                                        hint: "pass --registry PATH|postgres://…, or run from the folder where provisioning ran"))
        }
        return try await openRegistry(loc)
    }
}

/// A device as the CLI prints it: record + steps.
struct DeviceReport: Codable {
    var mac: String
    var status: String
    var chip: String
    var chipRevision: Int?
    var flashID: String?
    var flashSize: Int?
    var station: String?
    var manifestHash: String?
    var identityPool: String?
    var identity: String?
    var imageHashes: [String: String]
    var keyDigests: [String: String]
    var keyIDs: [String: String]
    var efuseSummary: [String: String]?
    var failure: String?
    var createdAt: String
    var updatedAt: String
    var lastSafeStep: String?
    var steps: [StepRecord]?
    var events: [RegistryEvent]?
    /// Escrowed keys, sealed (JSON export only).
    var escrow: [EscrowReport]?

    init(_ r: DeviceRecord, steps: [StepRecord]?, lastSafe: StepRecord?) {
        mac = r.mac; status = r.status.rawValue; chip = r.facts.chip; chipRevision = r.facts.chipRevision
        flashID = r.facts.flashID; flashSize = r.facts.flashSize; station = r.facts.station
        manifestHash = r.facts.manifestHash; identityPool = r.identityPool; identity = r.identity
        imageHashes = r.facts.imageHashes; keyDigests = r.facts.keyDigests; keyIDs = r.facts.keyIDs
        efuseSummary = r.efuseSummary; failure = r.failure; createdAt = r.createdAt; updatedAt = r.updatedAt
        lastSafeStep = lastSafe?.step
        self.steps = steps
    }
}

func withRegistry<T>(_ registry: any DeviceRegistry, _ body: (any DeviceRegistry) async throws -> T) async throws -> T {
    do {
        let v = try await body(registry)
        try? await registry.close()
        return v
    } catch {
        try? await registry.close()
        throw error
    }
}

struct RegistryList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the devices in the registry, one line each.",
        discussion: """
            Columns: MAC, status (in_progress, provisioned, failed, rma), claimed identity, station, the \
            last step that finished ok (where --resume would continue) and the last update (UTC).

            Example:
              espforge registry list --registry postgres://line:secret@10.0.0.5:5432/espforge
            """
    )

    @OptionGroup var options: RegistryOptions
    @Option(help: "Only devices with this status: in_progress, provisioned, failed, rma.")
    var status: String?
    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        var wanted: DeviceStatus?
        if let status {
            guard let s = DeviceStatus(rawValue: status) else {
                throw UsageError("unknown status '\(status)'", hint: "use in_progress, provisioned, failed or rma")
            }
            wanted = s
        }
        let reports: [DeviceReport] = try await withRegistry(try await options.open()) { reg in
            var out: [DeviceReport] = []
            for d in try await reg.devices() where wanted == nil || d.status == wanted {
                out.append(DeviceReport(d, steps: nil, lastSafe: try await reg.lastSafeStep(mac: d.mac)))
            }
            return out
        }
        if json { try Output.printJSON(reports); return }
        let header = ["MAC", "STATUS", "IDENTITY", "STATION", "LAST SAFE STEP", "UPDATED"]
        let rows = reports.map { [$0.mac, $0.status, $0.identity ?? "-", $0.station ?? "-", $0.lastSafeStep ?? "-", $0.updatedAt] }
        print(TextTable.render(header: header, rows: rows))
        let counts = Dictionary(grouping: reports, by: \.status).mapValues(\.count)
        print("\(reports.count) device(s): " + DeviceStatus.allCases.map { "\(counts[$0.rawValue] ?? 0) \($0.rawValue)" }.joined(separator: ", "))
    }
}

struct RegistryShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one device: facts, identity, eFuse summary and every step.",
        discussion: """
            Example:
              espforge registry show 24:0a:c4:12:34:56 --json
            """
    )

    @OptionGroup var options: RegistryOptions
    @Argument(help: "MAC address of the device (aa:bb:cc:dd:ee:ff).")
    var mac: String
    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let mac = self.mac
        let report: DeviceReport = try await withRegistry(try await options.open()) { reg in
            guard let d = try await reg.device(mac: mac) else { throw RegistryError.unknownDevice(mac) }
            var r = DeviceReport(d, steps: try await reg.steps(mac: d.mac), lastSafe: try await reg.lastSafeStep(mac: d.mac))
            r.events = try await reg.events(mac: d.mac)
            return r
        }
        if json { try Output.printJSON(report); return }
        var lines: [(String, String)] = [
            ("MAC", report.mac), ("Status", report.status), ("Chip", report.chip + (report.chipRevision.map { " rev \($0)" } ?? "")),
            ("Flash", [report.flashID.map { "id \($0)" }, report.flashSize.map { "\($0 >> 20) MB" }].compactMap { $0 }.joined(separator: ", ").ifEmpty("-")),
            ("Station", report.station ?? "-"), ("Manifest", report.manifestHash ?? "-"),
            ("Identity", report.identity.map { "\($0) " + (report.identityPool.map { "(pool \($0))" } ?? "(its MAC: no per-device values)") } ?? "-"),
            ("Created", report.createdAt), ("Updated", report.updatedAt),
        ]
        if let f = report.failure { lines.append(("Failure", f)) }
        let width = lines.map(\.0.count).max() ?? 0
        for (k, v) in lines { print(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v) }
        for (title, map) in [("Images (SHA-256)", report.imageHashes), ("Key digests", report.keyDigests), ("Key ids", report.keyIDs),
                             ("eFuse summary", report.efuseSummary ?? [:])] where !map.isEmpty {
            print("\(title):")
            for k in map.keys.sorted() { print("  \(k) = \(map[k] ?? "")") }
        }
        print("Steps:")
        if (report.steps ?? []).isEmpty { print("  (none recorded)") } else {
            let rows = (report.steps ?? []).map { [String($0.id), $0.step, $0.outcome.rawValue, $0.startedAt, $0.finishedAt ?? "-", $0.detail ?? ""] }
            print(TextTable.render(header: ["#", "STEP", "OUTCOME", "STARTED", "FINISHED", "DETAIL"], rows: rows, indent: "  "))
        }
        if let events = report.events, !events.isEmpty {
            print("Events:")
            print(TextTable.render(header: ["AT", "KIND", "STATION", "DETAIL"],
                                   rows: events.map { [$0.at, $0.kind, $0.station ?? "-", $0.detail ?? ""] }, indent: "  "))
        }
    }
}

struct RegistryExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export all devices as CSV (one row per device) or JSON (with their steps).",
        discussion: """
            CSV columns: mac, status, chip, chip_revision, flash_id, flash_size, station, \
            manifest_hash, identity_pool, identity, image_hashes, key_digests, key_ids, \
            efuse_summary (JSON objects in a cell), failure, created_at, updated_at, last_safe_step.

            Example:
              espforge registry export --csv -o devices.csv
              espforge registry export --json > devices.json
            """
    )

    @OptionGroup var options: RegistryOptions
    @Flag(help: "Write CSV.") var csv = false
    @Flag(help: "Write JSON.") var json = false
    @Option(name: .shortAndLong, help: "Output file (default: standard output).")
    var output: String?

    func validate() throws {
        guard csv != json else { throw ValidationError("pass exactly one of --csv or --json") }
    }

    func run() async throws {
        let withSteps = json
        let reports: [DeviceReport] = try await withRegistry(try await options.open()) { reg in
            var out: [DeviceReport] = []
            for d in try await reg.devices() {
                var report = DeviceReport(d, steps: withSteps ? try await reg.steps(mac: d.mac) : nil,
                                          lastSafe: try await reg.lastSafeStep(mac: d.mac))
                if withSteps { report.escrow = try await EscrowReport.of(reg, mac: d.mac) }
                out.append(report)
            }
            return out
        }
        let text = json ? try Output.json(reports) + "\n" : Self.csvText(reports)
        if let output { try FileIO.write(text, to: output) } else { print(text, terminator: "") }
    }

    static func csvText(_ reports: [DeviceReport]) -> String {
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
        var lines = ["mac,status,chip,chip_revision,flash_id,flash_size,station,manifest_hash,identity_pool,identity,image_hashes,key_digests,key_ids,efuse_summary,failure,created_at,updated_at,last_safe_step"]
        for r in reports {
            let cells: [String?] = [r.mac, r.status, r.chip, r.chipRevision.map(String.init), r.flashID, r.flashSize.map(String.init),
                                    r.station, r.manifestHash, r.identityPool, r.identity, obj(r.imageHashes), obj(r.keyDigests),
                                    obj(r.keyIDs), obj(r.efuseSummary), r.failure, r.createdAt, r.updatedAt, r.lastSafeStep]
            lines.append(cells.map(cell).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

struct RegistryPool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Load an identity pool from a per-device values CSV, and show how much of it is claimed.",
        discussion: """
            The pool's identities are the first column of the values CSV (after its header line), \
            keyed by their value. Only the ids, where each came from (file and line) and a SHA-256 \
            digest of each row are stored, never the other values. Reloading adds every id not yet \
            in the pool, wherever it stands in the file, after the rows already there (claims go \
            in pool order); an id that comes back with other values is an error naming both \
            places, and nothing is loaded. `provision` loads its manifest's values CSV the same way. \
            See docs/registry.md.

            Example:
              espforge registry pool line1 --load device_values.csv --registry postgres://line:pw@10.0.0.5:5432/espforge
            """
    )

    @OptionGroup var options: RegistryOptions
    @Argument(help: "Pool name.") var pool: String
    @Option(help: "Per-device values CSV to load into the pool.") var load: String?
    @Flag(help: "Print JSON.") var json = false

    struct Status: Codable { var pool: String; var added: Int; var total: Int; var claimed: Int }

    static func identities(fromValuesCSV text: String, file: String) throws -> [IdentityRow] {
        try IdentityPoolFile.rows(valuesCSV: text, file: file)
    }

    func run() async throws {
        var rows: [IdentityRow] = []
        if let load { rows = try Self.identities(fromValuesCSV: try FileIO.readText(load, limit: .identityCSV), file: load) }
        let (pool, loadRows) = (self.pool, rows)
        let status: Status = try await withRegistry(try await options.open(create: load != nil)) { reg in
            let added = loadRows.isEmpty ? 0 : try await reg.loadIdentities(pool: pool, loadRows)
            let s = try await reg.poolStatus(pool: pool)
            return Status(pool: pool, added: added, total: s.total, claimed: s.claimed)
        }
        if json { try Output.printJSON(status); return }
        if load != nil { print("pool \(pool): \(status.added) identities added") }
        print("pool \(pool): \(status.total) identities, \(status.claimed) claimed, \(status.total - status.claimed) free")
    }
}

struct RegistryMark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark",
        abstract: "Take a device out of the line (RMA): the only way a record leaves `provisioned`.",
        discussion: """
            Sets the device's status to `rma` and records an `rma` event with the time, the reason, \
            the station and the previous status. Provisioning never changes an `rma` or \
            `provisioned` record; a board marked RMA that is plugged in again is refused. The \
            identity it claimed stays with it (pools never lose a row).

            Example:
              espforge registry mark 24:0a:c4:12:34:56 --rma "customer return: no Wi-Fi" --station repair-1
            """
    )

    @OptionGroup var options: RegistryOptions
    @Argument(help: "MAC address of the device.") var mac: String
    @Option(help: "Mark as returned (RMA), with this reason.") var rma: String?
    @Option(help: "Who or where marks it (recorded with the event).") var station: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard let reason = rma else { throw UsageError("say what to mark", hint: "espforge registry mark MAC --rma \"reason\"") }
        let (mac, station) = (self.mac, self.station)
        let (record, event): (DeviceRecord, RegistryEvent?) = try await withRegistry(try await options.open()) { reg in
            let r = try await reg.markRMA(mac: mac, reason: reason, station: station)
            return (r, try await reg.events(mac: r.mac).last)
        }
        if json { try Output.printJSON(event); return }
        print("\(record.mac): status rma (\(event?.detail ?? reason)), recorded at \(event?.at ?? record.updatedAt)")
    }
}

struct RegistryEvents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "The line's event log: refused boards, boards plugged in again, RMA marks.",
        discussion: """
            Example:
              espforge registry events --mac 24:0a:c4:12:34:56
            """
    )

    @OptionGroup var options: RegistryOptions
    @Option(help: "Only the events of this MAC.") var mac: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let mac = self.mac
        let events = try await withRegistry(try await options.open()) { reg in try await reg.events(mac: mac) }
        if json { try Output.printJSON(events); return }
        print(TextTable.render(header: ["AT", "MAC", "KIND", "STATION", "DETAIL"],
                               rows: events.map { [$0.at, $0.mac ?? "-", $0.kind, $0.station ?? "-", $0.detail ?? ""] }))
        print("\(events.count) event(s)")
    }
}

/// Hidden: claim identities from a pool for a run of MACs (loads the pool first if asked).
/// Used by the tests to run several claiming processes against one registry at once.
struct RegistryClaim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "claim",
        abstract: "Claim identities for devices (testing and recovery).",
        discussion: """
            Claims the next free identity of POOL for each MAC, atomically; a MAC that already \
            holds one gets it back. Prints one JSON object per claim.

            Example:
              espforge registry claim --pool line1 --mac 02:00:00:00:00:01 --count 10
            """,
        shouldDisplay: false
    )

    @OptionGroup var options: RegistryOptions
    @Option(help: "Identity pool.") var pool: String
    @Option(help: "First MAC; the next ones count up from it.") var mac: String
    @Option(help: "How many devices (consecutive MACs).") var count: Int = 1
    @Option(help: "Load this values CSV into the pool first.") var load: String?

    func run() async throws {
        guard count >= 1, count <= 100_000 else { throw ValidationError("--count must be 1…100000") }
        let hex = mac.lowercased().filter { $0.isHexDigit }
        guard hex.count == 12, let base = UInt64(hex, radix: 16) else {
            throw UsageError("'\(mac)' is not a MAC address", hint: "write it as aa:bb:cc:dd:ee:ff")
        }
        var rows: [IdentityRow]?
        if let load { rows = try IdentityPoolFile.rows(valuesCSV: try FileIO.readText(load, limit: .identityCSV), file: load) }
        let registry = try await options.open(create: true)
        let (pool, count, loadRows) = (self.pool, self.count, rows)
        try await withRegistry(registry) { reg in
            if let loadRows {
                let added = try await reg.loadIdentities(pool: pool, loadRows)
                FileHandle.standardError.write(Data("pool \(pool): \(added) identities added\n".utf8))
            }
            for i in 0..<UInt64(count) {
                let m = String((base &+ i) & 0xFFFF_FFFF_FFFF, radix: 16)
                let padded = String(repeating: "0", count: 12 - m.count) + m
                let claimed = try await reg.claimIdentity(pool: pool, mac: padded)
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                print(String(decoding: try e.encode(claimed), as: UTF8.self))
            }
        }
    }
}

extension String {
    func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}

/// Plain-text table with columns padded to their widest cell.
enum TextTable {
    static func render(header: [String], rows: [[String]], indent: String = "") -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { i < $0.count ? $0[i].count : 0 }.max() ?? 0 }
        return all.map { row in
            indent + row.enumerated().map { i, c in
                i == row.count - 1 || i >= widths.count ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
