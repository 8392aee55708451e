import ArgumentParser
import ESPCore
import Foundation
import Partitions

struct PartitionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partitions", abstract: "Build, show and validate partition tables.",
        discussion: """
            Reads and writes ESP-IDF partition tables: the CSV format of gen_esp32part.py and the \
            binary table flashed at 0x8000. Built tables are byte-identical to ESP-IDF's.
            """,
        subcommands: [PartitionsBuild.self, PartitionsShow.self, PartitionsCheck.self]
    )
}

/// Options shared by the commands that lay out or check a table.
struct PartitionLayoutOptions: ParsableArguments {
    @Option(help: "Flash size the table must fit in, e.g. 4MB (default: not checked).") var flashSize: String?
    @Option(help: "Flash offset of the partition table.") var offset: String = "0x8000"
    @Option(help: "Chip (gives the bootloader offset): \(ChipSpec.all.map(\.name).joined(separator: ", ")).") var chip: String = "esp32"
    @Flag(help: "Require app partition sizes to be multiples of 64 KiB (Secure Boot V1).") var secureV1 = false
    @Option(help: "Bootloader image to be flashed; checks that it ends before the partition table.") var bootloader: String?

    @Option(help: "Flash offset of the recovery bootloader (for a 'bootloader, recovery' entry), as gen_esp32part.") var recoveryBootloaderOffset: String?

    func options(md5: Bool = true) throws -> PartitionTableOptions {
        try PartitionTableOptions(chipName: chip, tableOffset: offset, flashSize: flashSize, md5: md5, secureBootV1: secureV1,
                                  environment: ProcessInfo.processInfo.environment, bootloaderPath: bootloader,
                                  recoveryBootloaderOffset: recoveryBootloaderOffset)
    }
}

struct PartitionsBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Build a binary partition table from an ESP-IDF partition CSV.",
        discussion: """
            The CSV has one partition per line: Name, Type, SubType, Offset, Size, Flags. Types and \
            subtypes are keywords (app, data, ota_0, nvs, …) or numbers; sizes may use K and M; an \
            empty offset places the partition after the previous one (apps on 64 KiB, others on \
            4 KiB boundaries); flags are encrypted and readonly, joined with ':'. The table is \
            checked (overlaps, alignment, flash size, otadata, duplicate names) and written as \
            0xC00 bytes: 32-byte entries, an MD5 entry, 0xFF padding. Security mistakes such as an \
            encrypted nvs partition are reported as warnings.

            Example:
              espforge partitions build partitions.csv -o table.bin --flash-size 4MB
            """
    )

    @Argument(help: "Partition table CSV.") var csv: String
    @Option(name: .shortAndLong, help: "Output binary table.") var output: String
    @OptionGroup var layout: PartitionLayoutOptions
    @Flag(help: "Do not append the MD5 entry (like gen_esp32part --disable-md5sum).") var noMD5 = false

    func run() throws {
        let options = try layout.options(md5: !noMD5)
        let text = try FileIO.readText(csv, limit: .partitionTable)
        let build: PartitionTableBuild
        do {
            build = try PartitionTableBuild(csv: text, options: options)
        } catch {
            throw FileContextError(file: csv, underlying: error)
        }
        for w in build.warnings { ErrorRenderer.warn(withFile(w.diagnostic, csv)) }
        try FileIO.write(build.binary, to: output)
        print("wrote \(output): \(build.table.entries.count) partitions, \(build.binary.count) bytes\(noMD5 ? "" : " with MD5")")
    }
}

func withFile(_ d: Diagnostic, _ file: String) -> Diagnostic {
    var d = d
    if d.file == nil { d.file = file }
    return d
}

struct PartitionsShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Print a partition table as CSV (or JSON).",
        discussion: """
            Reads a binary partition table (or a CSV, whose automatic offsets are then filled in) \
            and prints it in gen_esp32part's CSV form, which `partitions build` turns back into the \
            same binary. A wrong MD5, an unknown entry magic or a truncated entry is an error naming \
            its byte offset; layout problems are printed as warnings.

            Example:
              espforge partitions show partition-table.bin
              espforge partitions show partition-table.bin --json
              espforge partitions show flash-dump.bin --at 0x8000
            """
    )

    @Argument(help: "Binary partition table (or CSV).") var table: String
    @Flag(help: "Print JSON instead of CSV.") var json = false
    @Option(help: "Read the table at this byte offset of the file (e.g. 0x8000 in a flash dump).") var at: String?
    @OptionGroup var layout: PartitionLayoutOptions

    func run() throws {
        let options = try layout.options()
        var base: Int?
        if let at {
            guard let n = NumberParsing.integer(at) else { throw UsageError("--at '\(at)' is not an offset", hint: "for example 0x8000") }
            base = n
        }
        let loaded = try PartitionTableFile.load(table, options: options, at: base)
        let (problem, warnings) = loaded.review(options: options)
        if let problem { ErrorRenderer.warn(withFile(problem.diagnostic, table)) }
        for w in warnings { ErrorRenderer.warn(withFile(w.diagnostic, table)) }
        if json { print(try loaded.report(warnings: warnings).json()) } else { print(loaded.table.csv(), terminator: "") }
    }
}

struct PartitionsCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Validate a partition table (CSV or binary) without writing anything.",
        discussion: """
            Runs every check `partitions build` runs — overlaps, alignment (apps on 64 KiB, \
            everything else on 4 KiB), flash size, table and bootloader area, duplicate names, \
            otadata count and size, OTA apps without otadata, NVS sizes — and the security \
            warnings. Exits 1 on the first error, naming the CSV line (or the binary entry's offset).

            Example:
              espforge partitions check partitions.csv --flash-size 4MB
            """
    )

    @Argument(help: "Partition table CSV or binary.") var table: String
    @OptionGroup var layout: PartitionLayoutOptions

    func run() throws {
        let options = try layout.options()
        let loaded = try PartitionTableFile.load(table, options: options)
        let warnings: [PartitionWarning]
        do {
            warnings = loaded.warnings + (try loaded.table.validate(options: options))
            if !loaded.isBinary { _ = try loaded.table.binary(md5: true) }
        } catch {
            throw FileContextError(file: table, underlying: error)
        }
        for w in warnings { ErrorRenderer.warn(withFile(w.diagnostic, table)) }
        let note = warnings.isEmpty ? "" : ", \(warnings.count) warning(s)"
        print("ok: \(table): \(loaded.table.entries.count) partitions\(note)")
    }
}
