import ArgumentParser
import ESPCore
import Foundation
import Provisioning
import Registry

struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry", abstract: "List, show and export the device registry of a production line; identity pools; RMA.",
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
        try await RegistryReports.open(location, create: create)
    }
}

func withRegistry<T>(_ registry: any DeviceRegistry, _ body: (any DeviceRegistry) async throws -> T) async throws -> T {
    try await RegistryReports.closing(registry, body)
}

struct RegistryList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the devices in the registry, one line each.",
        discussion: """
            Columns: MAC, status (in_progress, provisioned, failed, rma), claimed identity, station, the \
            last step that finished ok (where --resume would continue) and the last update (UTC).

            Example:
              espforge registry list --registry postgres://line:secret@10.0.0.5:5432/espforge
            """
    )

    @OptionGroup var options: RegistryOptions
    @Option(help: "Only devices with this status: in_progress, provisioned, failed, rma.") var status: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let wanted = try status.map(RegistryReports.status)
        let reports = try await withRegistry(try await options.open()) { try await RegistryReports.list($0, status: wanted) }
        if json { try Output.printJSON(reports); return }
        print(RegistryReports.listText(reports))
    }
}

struct RegistryShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show one device: facts, identity, eFuse summary and every step.",
        discussion: """
            Example:
              espforge registry show 24:0a:c4:12:34:56 --json
            """
    )

    @OptionGroup var options: RegistryOptions
    @Argument(help: "MAC address of the device (aa:bb:cc:dd:ee:ff).") var mac: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let mac = self.mac
        let report = try await withRegistry(try await options.open()) { try await RegistryReports.show($0, mac: mac) }
        if json { try Output.printJSON(report); return }
        print(RegistryReports.showText(report))
    }
}

struct RegistryExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Export all devices as CSV (one row per device) or JSON (with their steps).",
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
    @Option(name: .shortAndLong, help: "Output file (default: standard output).") var output: String?

    func validate() throws {
        guard csv != json else { throw ValidationError("pass exactly one of --csv or --json") }
    }

    func run() async throws {
        let withSteps = json
        let reports = try await withRegistry(try await options.open()) { try await RegistryReports.export($0, withSteps: withSteps) }
        let text = json ? try Output.json(reports) + "\n" : RegistryReports.csv(reports)
        if let output { try FileIO.write(text, to: output) } else { print(text, terminator: "") }
    }
}

struct RegistryPool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool", abstract: "Load an identity pool from a per-device values CSV, and show how much of it is claimed.",
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

    func run() async throws {
        var rows: [IdentityRow] = []
        if let load { rows = try IdentityPoolFile.rows(valuesCSV: try FileIO.readText(load, limit: .identityCSV), file: load) }
        let (pool, loadRows) = (self.pool, rows)
        let status = try await withRegistry(try await options.open(create: load != nil)) {
            try await RegistryReports.pool($0, pool: pool, load: loadRows)
        }
        if json { try Output.printJSON(status); return }
        print(status.text(loaded: load != nil))
    }
}

struct RegistryMark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mark", abstract: "Take a device out of the line (RMA): the only way a record leaves `provisioned`.",
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
        commandName: "events", abstract: "The line's event log: refused boards, boards plugged in again, RMA marks.",
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
        print(RegistryReports.eventsText(events))
    }
}
