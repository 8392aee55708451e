import ArgumentParser
import ESPCore
import Flasher
import Foundation

struct FlashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flash", abstract: "Write, read, erase and verify flash through the serial loader, refusing unsafe writes.",
        discussion: """
            Every write is checked against the chip's eFuses before the first byte is sent (Secure \
            Boot key digest, flash encryption, bootloader offset, flash size, overlaps; flash \
            parameters are kept as built unless asked). Every region is verified by MD5; nothing is \
            reported as written unless its MD5 matched. Several --port options flash several devices \
            at once.

            Example:
              espforge flash write --port /dev/ttyUSB0 --baud 921600 0x1000 bootloader.bin 0x8000 partition-table.bin 0x10000 app.bin
            """,
        subcommands: [FlashWrite.self, FlashRead.self, FlashErase.self, FlashVerify.self]
    )
}

struct FlashWrite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write", abstract: "Write files to flash (compressed through the stub, MD5-verified, with safety rules).",
        discussion: """
            Before anything is sent the plan is checked by the safety rules `espforge preflight` and \
            `provision` use (one engine, stable codes: `espforge preflight --list-rules`; \
            docs/safety-rules.md). --force overrides only the findings whose override cannot brick the \
            chip (never a Secure Boot finding once ABS_DONE_1 is burned, never a signed header rewrite).

            Data is sent compressed only through the flasher stub. Through the ROM loader (--no-stub, \
            or no stub found) ESP32 writes go uncompressed: the ESP32 ROM's compressed write also \
            writes stale bytes after the end of every region (up to the next 32 KiB), which would \
            overwrite the partitions behind it. Bytes after a region's end in its last 4 KiB sector \
            (erased by the write) are read first and written back when they hold data.

            With several --port options every device gets the same plan concurrently; one progress \
            line per device and a summary table (or, with --json, one JSON event per line).

            Example:
              espforge flash write --port virtual:dev1 --port virtual:dev2 --baud 921600 --skip-unchanged \\
                  0x1000 bootloader.bin 0x8000 partition-table.bin 0x20000 app.bin
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .customLong("no-compress"), help: "Send data uncompressed (the default through the ESP32 ROM loader, whose compressed write corrupts the bytes after each region).") var noCompress = false
    @Flag(name: .customLong("skip-unchanged"), help: "Skip regions whose flash MD5 already matches.") var skipUnchanged = false
    @Flag(help: "Let the chip encrypt the data (flash encryption on, download-mode encryption allowed).") var encrypt = false
    @Flag(help: "Override the findings that cannot brick the chip.") var force = false
    @Option(name: .customLong("flash-mode"), help: "keep (default) or qio/qout/dio/dout.") var flashMode = "keep"
    @Option(name: .customLong("flash-freq"), help: "keep (default) or 40m/26m/20m/80m.") var flashFreq = "keep"
    @Option(name: .customLong("flash-size"), help: "keep (default) or 1MB…16MB.") var flashSize = "keep"
    @Argument(help: ArgumentHelp("ADDR FILE pairs.", valueName: "ADDR FILE")) var pairs: [String] = []

    func run() throws {
        let ports = try connection.allPorts()
        let regions = try FlashRegionFiles.read(pairs: pairs)
        var options = try connection.sessionOptions()
        options.compress = !noCompress
        options.skipUnchanged = skipUnchanged
        options.encrypt = encrypt
        func param(_ s: String) -> String? { s.lowercased() == "keep" ? nil : s }
        let request = FlashRequest(regions: regions, flashMode: param(flashMode), flashFrequency: param(flashFreq),
                                   flashSize: param(flashSize), encrypt: encrypt, force: force)
        let printer = ProgressPrinter(devices: ports, json: connection.json)
        let opts = options
        let outcomes = DeviceRunner.run(ports: ports, onEvent: { printer.handle($0) }) { port, emit in
            DeviceRunner.flash(port: port, request: request, options: opts, emit: emit)
        }
        try report(outcomes, json: connection.json)
    }
}

/// Summary table (or JSON summary events); exit 1 if any device failed.
func report(_ outcomes: [DeviceOutcome], json: Bool) throws {
    if json {
        for o in outcomes { printEventLine(FlashSummary.Event(o)) }
    } else {
        print(FlashSummary.table(outcomes), terminator: "")
        for line in FlashSummary.failures(outcomes) { ErrorRenderer.writeStderr("error: " + Diagnostic.terminalSafe(line) + "\n") }
    }
    if outcomes.contains(where: { !$0.ok }) { throw ExitCode(1) }
}

struct FlashRead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read", abstract: "Read flash into a file (stub: streamed and MD5-checked; ROM: 64 bytes per command).",
        discussion: """
            Example:
              espforge flash read --port virtual:dev1 0x0 0x400000 -o flash.bin
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Flash address.") var address: String
    @Argument(help: "Number of bytes (e.g. 0x1000, 4MB).") var size: String
    @Option(name: .shortAndLong, help: "Output file.") var output: String

    func run() throws {
        let port = try connection.singlePort()
        guard let a = NumberParsing.integer(address), a >= 0 else { throw UsageError("'\(address)' is not an address") }
        guard let n = NumberParsing.size(size), n > 0 else { throw UsageError("'\(size)' is not a size") }
        let data = try FlashOperations.read(port: port, options: try connection.sessionOptions(), address: a, size: n)
        try FileIO.write(data, to: output)
        if connection.json {
            printEventLine(FlashEvent(device: port, event: "read", address: a, size: n, detail: output))
        } else {
            print("read \(n) bytes at \(NumberParsing.hex(a)) into \(output)")
        }
    }
}

struct FlashErase: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "erase", abstract: "Erase the whole flash, or ADDR SIZE (4 KiB aligned).",
        discussion: """
            Example:
              espforge flash erase --port virtual:dev1 0x9000 0x6000
              espforge flash erase --port virtual:dev1
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "ADDR SIZE (omit both for the whole chip).") var range: [String] = []

    func run() throws {
        let port = try connection.singlePort()
        guard range.isEmpty || range.count == 2 else { throw UsageError("give ADDR SIZE or nothing") }
        var parsed: (address: Int, size: Int)?
        if !range.isEmpty {
            guard let a = NumberParsing.integer(range[0]), let n = NumberParsing.size(range[1]) else {
                throw UsageError("'\(range[0]) \(range[1])' is not ADDR SIZE", hint: "e.g. 0x9000 0x6000")
            }
            parsed = (a, n)
        }
        try FlashOperations.erase(port: port, options: try connection.sessionOptions(), range: parsed)
        if !connection.json {
            print(parsed.map { "erased \(NumberParsing.hex($0.size)) bytes at \(NumberParsing.hex($0.address))" } ?? "erased the whole flash")
        }
        if connection.json { printEventLine(FlashEvent(device: port, event: "erased")) }
    }
}

struct FlashVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Compare flash with files by MD5 (exit 1 on any difference).",
        discussion: """
            Example:
              espforge flash verify --port virtual:dev1 0x1000 bootloader.bin 0x10000 app.bin
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: ArgumentHelp("ADDR FILE pairs.", valueName: "ADDR FILE")) var pairs: [String] = []

    func run() throws {
        let port = try connection.singlePort()
        let regions = try FlashRegionFiles.read(pairs: pairs)
        let results = try FlashOperations.verify(port: port, options: try connection.sessionOptions(), regions: regions)
        for r in results {
            if connection.json { printEventLine(r) } else {
                print("\(NumberParsing.hex(r.address)) \(r.name): \(r.outcome == .verified ? "OK" : "DIFFERS") (md5 \(r.md5))")
            }
        }
        if results.contains(where: { $0.outcome != .verified }) { throw ExitCode(1) }
    }
}
