import ArgumentParser
import ESPCore
import Partitions

struct OtadataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otadata", abstract: "Build and parse OTA data partitions.",
        discussion: """
            The OTA data partition (data/ota, 0x2000 bytes) tells the bootloader which OTA app slot \
            to boot: two copies of a 32-byte record (sequence number, state, CRC), one per sector.
            """,
        subcommands: [OtadataBuild.self, OtadataShow.self]
    )
}

struct OtadataBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Write an otadata partition image that boots a chosen OTA slot.",
        discussion: """
            With --boot ota_N the first copy gets sequence number N+1 (what the OTA API writes to \
            an erased partition) and a CRC the bootloader accepts; the second sector stays erased. \
            With --boot none (the default) the image is all 0xFF: the bootloader then boots the \
            factory app, or ota_0 when there is none. --seq writes an explicit sequence number.

            Example:
              espforge otadata build --boot ota_1 -o otadata.bin
            """
    )

    @Option(help: "Slot to boot: ota_0 … ota_15, or none for an erased partition.") var boot: String = "none"
    @Option(help: "Explicit sequence number for the first copy (instead of --boot).") var seq: UInt32?
    @Option(help: "ota_state: undefined, new, pending-verify, valid, invalid, aborted.") var state: String = "undefined"
    @Option(name: .shortAndLong, help: "Output file (0x2000 bytes).") var output: String
    @Option(help: "Partition table (binary or CSV): check that the slot exists and otadata is 0x2000 bytes.") var table: String?

    func run() throws {
        let (bytes, summary) = try Otadata.image(boot: boot, sequence: seq, state: state, tablePath: table)
        try FileIO.write(bytes, to: output)
        print("wrote \(output): \(bytes.count) bytes, \(summary)")
    }
}

struct OtadataShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Decode an otadata partition and tell which slot boots.",
        discussion: """
            Prints both copies (sequence number, state, whether the CRC is right) and the slot the \
            bootloader selects: the valid copy with the higher sequence number boots slot \
            (seq − 1) mod the number of OTA app partitions. Give that number with --ota-apps, or \
            pass the partition table with --table to take it (and whether there is a factory app) \
            from there. Rollback processing is not modelled.

            Example:
              espforge otadata show otadata.bin --table partition-table.bin
            """
    )

    @Argument(help: "otadata partition image (0x2000 bytes).") var file: String
    @Option(help: "Number of OTA app partitions (default 2, or from --table).") var otaApps: Int?
    @Flag(help: "The table has a factory app.") var factory = false
    @Option(help: "Partition table (binary or CSV) to take the OTA app count and factory app from.") var table: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let bytes = try FileIO.read(file, limit: .otadata)
        let parsed: Otadata.Parsed
        do { parsed = try Otadata.parse(bytes) } catch { throw FileContextError(file: file, underlying: error) }
        var apps = otaApps ?? 2
        var hasFactory = factory
        if let table {
            let loaded = try PartitionTableFile.load(table, options: PartitionTableOptions())
            if otaApps == nil { apps = loaded.table.otaApps.count }
            hasFactory = hasFactory || loaded.hasFactoryApp
        }
        guard (0...16).contains(apps) else { throw UsageError("--ota-apps must be 0…16") }
        let report = OtadataReport(parsed, otaApps: apps, factory: hasFactory)
        if json { print(try report.json()) } else { print(report.text, terminator: "") }
    }
}
