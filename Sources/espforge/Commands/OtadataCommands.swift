import ArgumentParser
import ESPCore
import Partitions

struct OtadataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otadata",
        abstract: "Build and parse OTA data partitions.",
        discussion: """
            The OTA data partition (data/ota, 0x2000 bytes) tells the bootloader which OTA app slot \
            to boot: two copies of a 32-byte record (sequence number, state, CRC), one per sector.
            """,
        subcommands: [OtadataBuild.self, OtadataShow.self]
    )
}

struct OtadataBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Write an otadata partition image that boots a chosen OTA slot.",
        discussion: """
            With --boot ota_N the first copy gets sequence number N+1 (what the OTA API writes to \
            an erased partition) and a CRC the bootloader accepts; the second sector stays erased. \
            With --boot none (the default) the image is all 0xFF: the bootloader then boots the \
            factory app, or ota_0 when there is none. --seq writes an explicit sequence number.

            Example:
              espforge otadata build --boot ota_1 -o otadata.bin
            """
    )

    @Option(help: "Slot to boot: ota_0 … ota_15, or none for an erased partition.")
    var boot: String = "none"

    @Option(help: "Explicit sequence number for the first copy (instead of --boot).")
    var seq: UInt32?

    @Option(help: "ota_state: undefined, new, pending-verify, valid, invalid, aborted.")
    var state: String = "undefined"

    @Option(name: .shortAndLong, help: "Output file (0x2000 bytes).")
    var output: String

    @Option(help: "Partition table (binary or CSV): check that the slot exists and otadata is 0x2000 bytes.")
    var table: String?

    func run() throws {
        guard let otaState = Otadata.State(name: state) else {
            throw UsageError("unknown --state '\(state)'",
                             hint: "use one of: " + Otadata.State.allCases.map(\.name).joined(separator: ", "))
        }
        let bytes: [UInt8]
        let summary: String
        if let seq {
            guard seq != 0xFFFF_FFFF else { throw UsageError("--seq 0xFFFFFFFF means 'erased'; use --boot none") }
            bytes = Otadata.build(sequence: seq, state: otaState)
            summary = "sequence \(seq)"
        } else if boot.lowercased() == "none" {
            bytes = Otadata.blank()
            summary = "erased (boots factory, or ota_0 without one)"
        } else {
            let lower = boot.lowercased()
            guard lower.hasPrefix("ota_"), let n = Int(lower.dropFirst(4)), (0..<16).contains(n) else {
                throw UsageError("--boot '\(boot)' is not an OTA slot", hint: "use ota_0 … ota_15 or none")
            }
            if let table {
                let loaded = try LoadedTable.load(table, options: PartitionTableOptions())
                let slots = loaded.table.otaApps.map { Int($0.subtype) - 0x10 }
                guard slots.contains(n) else {
                    throw UsageError(Diagnostic("the partition table has no ota_\(n) partition", file: table,
                                                hint: "its OTA slots: " + (slots.isEmpty ? "none" : slots.sorted().map { "ota_\($0)" }.joined(separator: ", "))))
                }
                guard let otadata = loaded.table.otadata, otadata.size == UInt32(Otadata.size) else {
                    throw UsageError(Diagnostic("the partition table has no otadata partition of 0x2000 bytes", file: table))
                }
            }
            bytes = Otadata.build(bootSlot: n, state: otaState)
            summary = "boots ota_\(n) (sequence \(n + 1))"
        }
        try FileIO.write(bytes, to: output)
        print("wrote \(output): \(bytes.count) bytes, \(summary)")
    }
}

struct OtadataCopyJSON: Codable {
    var offset: Int
    var erased: Bool
    var sequence: UInt32
    var state: String
    var crc: String
    var crcValid: Bool
    var valid: Bool
}

struct OtadataJSON: Codable {
    var copies: [OtadataCopyJSON]
    var activeCopy: Int?
    var otaApps: Int
    var factory: Bool
    var boots: String
}

struct OtadataShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Decode an otadata partition and tell which slot boots.",
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

    @Argument(help: "otadata partition image (0x2000 bytes).")
    var file: String

    @Option(help: "Number of OTA app partitions (default 2, or from --table).")
    var otaApps: Int?

    @Flag(help: "The table has a factory app.")
    var factory = false

    @Option(help: "Partition table (binary or CSV) to take the OTA app count and factory app from.")
    var table: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let bytes = try FileIO.read(file, limit: .otadata)
        let parsed: Otadata.Parsed
        do { parsed = try Otadata.parse(bytes) } catch { throw FileContextError(file: file, underlying: error) }
        var apps = otaApps ?? 2
        var hasFactory = factory
        if let table {
            let loaded = try LoadedTable.load(table, options: PartitionTableOptions())
            if otaApps == nil { apps = loaded.table.otaApps.count }
            hasFactory = hasFactory || loaded.table.entries.contains {
                $0.type == PartitionEntry.Kind.app && $0.subtype == PartitionEntry.AppSubtype.factory
            }
        }
        guard (0...16).contains(apps) else { throw UsageError("--ota-apps must be 0…16") }
        let boots: String
        switch parsed.boot(otaAppCount: apps, hasFactory: hasFactory) {
        case let .ota(n): boots = "ota_\(n)"
        case .factory: boots = "factory"
        case .firstOTA: boots = "ota_0 (no valid otadata and no factory app)"
        case let .invalidFallback(f): boots = f ? "factory (otadata invalid)" : "first bootable app (otadata invalid)"
        }
        if json {
            try Output.printJSON(OtadataJSON(
                copies: parsed.copies.map {
                    OtadataCopyJSON(offset: $0.offset, erased: $0.isErased, sequence: $0.sequence,
                                    state: $0.state?.name ?? NumberParsing.hex($0.stateValue),
                                    crc: NumberParsing.hex($0.storedCRC), crcValid: $0.crcValid, valid: $0.isValid)
                },
                activeCopy: parsed.activeCopy, otaApps: apps, factory: hasFactory, boots: boots))
            return
        }
        for (i, c) in parsed.copies.enumerated() {
            if c.isErased {
                print("copy \(i) @\(NumberParsing.hex(c.offset, width: 4)): erased")
                continue
            }
            let stateText = c.state?.name ?? NumberParsing.hex(c.stateValue)
            let crcText = c.crcValid ? "ok" : "BAD (stored \(NumberParsing.hex(c.storedCRC)), expected \(NumberParsing.hex(Otadata.crc(sequence: c.sequence))))"
            print("copy \(i) @\(NumberParsing.hex(c.offset, width: 4)): seq \(c.sequence), state \(stateText), crc \(crcText)\(c.isValid ? "" : ", not valid")")
        }
        print("active copy: \(parsed.activeCopy.map(String.init) ?? "none")")
        print("boots: \(boots) (\(apps) OTA app partition(s)\(hasFactory ? ", factory app" : ""))")
    }
}
