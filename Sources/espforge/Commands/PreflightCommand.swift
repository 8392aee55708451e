import ArgumentParser
import ESPCore
import Flasher
import ProductionLine

struct PreflightCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preflight", abstract: "Check a flash plan against the target chip before anything is written.",
        discussion: """
            The plan is ADDR FILE pairs or an ESP-IDF build folder (--build-dir: flasher_args.json, \
            sdkconfig, partition table). The target comes from a virtual device (--state DIR: chip, \
            revision, flash size and eFuses) or from flags (--chip, --flash-size, --chip-rev, and \
            optionally --efuse-summary FILE written by `espefuse summary --format json`, for an \
            ESP32, ESP32-S3 or ESP32-C3 as --chip says; for ESP32-S3/C3 also --efuse-file FILE, an \
            `espefuse --virt --path-efuse-file` file: key blocks and purposes, digest slots and \
            revocations, SPI_BOOT_CRYPT_CNT, download-mode eFuses). The flash \
            options are the ones the write will use (--write-flash-mode/--write-flash-freq/\
            --write-flash-size, default keep; with --build-dir the build's own flash settings). \
            --port reads a chip through its ROM loader (serial port, socket://, virtual:DIR): chip, \
            revision, flash size from the flash id, and the eFuses; nothing is written.

            --simulate is a dry run of the first power-on: the plan is written into a copy of the \
            device (--state DIR, which is never changed; with flags only, a blank ESP32 of the given \
            revision and flash size), as esptool would write it (plaintext, or encrypted with the \
            chip's key for files marked encrypted in flasher_args.json or with --encrypt; the \
            bootloader header rewritten by --write-flash-*), and the copy is powered on with the \
            boot simulator (`espforge device boot`) under the plan's sdkconfig (else the one \
            remembered in DIR), following the reset after in-place encryption. Both boot logs and the \
            predicted outcome are printed: the app that booted or why none did, the eFuses burned, \
            the regions encrypted. Exit status 2 when the static checks pass but no app would boot.

            The rules are the ones `flash` and `provision` apply before writing (one engine): every \
            finding has a stable code (PF001…, FP/FE/RG…), a severity, the offending bytes or fields \
            and a fix; --list-rules prints them all. Exit status 1 if any finding is an error.

            Example:
              espforge preflight --build-dir build --chip esp32 --flash-size 4MB --chip-rev 3
              espforge preflight --chip esp32s3 --efuse-file efuses.bin 0x0 bootloader-signed.bin 0x8000 partitions.bin 0x10000 app-signed.bin
              espforge preflight --state dev1 --write-flash-size 4MB 0x1000 bootloader-signed.bin 0x8000 partitions.bin 0x60000 app-signed.bin
              espforge preflight --simulate --state dev1 --sdkconfig sdkconfig 0x1000 bootloader.bin 0x10000 partitions.bin 0x60000 app.bin
            """
    )

    @Argument(help: "ADDR FILE pairs to be written (instead of or in addition to --build-dir).") var pairs: [String] = []
    @Option(name: .customLong("build-dir"), help: "ESP-IDF build folder (flasher_args.json, sdkconfig).") var buildDir: String?
    @Option(help: "sdkconfig to use (default: found next to the build folder).") var sdkconfig: String?
    @Option(name: .customLong("partition-table-offset"), help: "CONFIG_PARTITION_TABLE_OFFSET (default: from sdkconfig, else where the plan writes a table).")
    var partitionTableOffset: String?

    // Target.
    @Option(help: "Virtual device state folder to check against (chip, revision, flash size, eFuses).") var state: String?
    @Option(help: "Port of the target chip to read (serial device, socket://HOST:PORT or virtual:DIR).") var port: String?
    @Option(help: "With --port: how to enter the loader: default-reset (DTR/RTS), usb-reset or no-reset.") var before = "default-reset"
    @Option(help: "Target chip: esp32, esp32s3, esp32c3.") var chip: String?
    @Option(name: .customLong("flash-size"), help: "Target flash size, e.g. 4MB.") var flashSize: String?
    @Option(name: .customLong("chip-rev"), help: "Target chip revision: 3, 3.0, v3.1 or 301.") var chipRev: String?
    @Option(name: .customLong("efuse-summary"), help: "`espefuse summary --format json` output of the target (ESP32, ESP32-S3, ESP32-C3: give --chip).") var efuseSummary: String?
    @Option(name: .customLong("efuse-file"), help: "ESP32-S3/C3 eFuses: an `espefuse --virt --path-efuse-file` file (as `efuse decode --from-file` reads it).") var efuseFile: String?

    // Write options.
    @Option(name: .customLong("write-flash-mode"), help: "--flash-mode the write will use (default keep).") var writeFlashMode: String?
    @Option(name: .customLong("write-flash-freq"), help: "--flash-freq the write will use (default keep).") var writeFlashFreq: String?
    @Option(name: .customLong("write-flash-size"), help: "--flash-size the write will use (default keep).") var writeFlashSize: String?
    @Flag(help: "The write uses --encrypt (the chip encrypts every file).") var encrypt = false
    @Flag(help: "Also write the plan into a copy of the device and power it on (first-boot dry run).") var simulate = false
    @Option(name: .customLong("rng-seed"), help: ArgumentHelp("Seed for the simulated RNG (tests only).", visibility: .hidden)) var rngSeed: UInt64?
    @Flag(name: .customLong("list-rules"), help: "List the rules and exit.") var listRules = false
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        if listRules {
            if json { return try Output.printJSON(RuleRow.all) }
            return print(FindingText.ruleList(), terminator: "")
        }
        var r = PreflightRequest()
        r.pairs = pairs
        (r.buildDir, r.sdkconfig, r.partitionTableOffset) = (buildDir, sdkconfig, partitionTableOffset)
        (r.state, r.port, r.before) = (state, port, try SessionOptions.resetMode(before))
        (r.chip, r.flashSize, r.chipRevision, r.efuseSummary, r.efuseFile) = (chip, flashSize, chipRev, efuseSummary, efuseFile)
        (r.writeFlashMode, r.writeFlashFreq, r.writeFlashSize) = (writeFlashMode, writeFlashFreq, writeFlashSize)
        (r.encrypt, r.simulate, r.rngSeed) = (encrypt, simulate, rngSeed)
        let outcome = try PreflightRun.run(r)
        if json { try Output.printJSON(outcome.json) } else { print(outcome.text, terminator: "") }
        if !json, let error = outcome.simulationError { throw error }
        if let status = outcome.exitStatus { throw ExitCode(status) }
    }
}
