import ArgumentParser
import ESPCore
import ProductionLine

struct EFuseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "efuse", abstract: "Read, decode and burn ESP32 eFuses (plan first, read back after).",
        discussion: """
            Every burn is planned against what the chip shows right now and validated before the \
            first register is written: bits only go from 0 to 1, write-protected fields cannot \
            change, key blocks must be blank, Secure Boot V2 needs chip revision v3.0 and coding \
            scheme NONE, BLOCK2 is never read-protected. Without --yes a burn prints the plan \
            (never key material) and exits with status 2. With --yes it burns, reloads, reads back \
            and reports what stuck; status 3 means some bits did not stick. Status 1 is a refused \
            request or another error.

            Ports: a serial device (/dev/ttyUSB0), socket://HOST:PORT (e.g. a QEMU or remote \
            serial bridge; no reset lines, so use --before no-reset with the chip already in \
            download mode) or virtual:DIR (a virtual device folder, in-process). --before picks \
            the reset into the ROM loader as for `chip` and `flash`.

            ESP32-S3 / ESP32-C3: the chip on --port is detected (--chip esp32s3|esp32c3 makes \
            sure it is that one); the commands take the S3/C3 forms (NAME=VALUE on its field map, \
            BLOCK_KEYn KEYFILE PURPOSE triples) and burn through the eFuse controller with the same \
            plan / --yes / read-back. --chip esp32s3|esp32c3 --virt-file FILE instead of --port \
            burns an `espefuse --virt` eFuse file offline, leaving it byte-identical to what \
            espefuse 5.6.0 writes. See docs/efuse-s3-c3.md.

            Example:
              espforge efuse summary --port virtual:dev1
              espforge efuse burn-key-digest --port virtual:dev1 --key signing_key.pem --yes
              espforge efuse burn --port virtual:dev1 ABS_DONE_1=1 --yes
              espforge efuse burn-key --port virtual:s3dev BLOCK_KEY0 key.bin XTS_AES_128_KEY --yes
              espforge efuse burn-key --chip esp32s3 --virt-file efuse.bin BLOCK_KEY0 key.bin XTS_AES_128_KEY --yes
            """,
        subcommands: [EFuseSummaryCommand.self, EFuseBurnCommand.self, EFuseBurnKeyDigest.self, EFuseBurnKey.self,
                      EFuseWriteProtect.self, EFuseReadProtect.self, EFuseDecodeCommand.self]
    )
}

struct EFusePortOptions: ParsableArguments {
    @Option(help: "The chip: serial device, socket://HOST:PORT or virtual:DIR (ESP32, ESP32-S3 or ESP32-C3, detected).") var port: String?
    @Option(help: "Baud rate for serial ports (ignored for virtual:).") var baud: Int?
    @Option(help: "Before connecting: default-reset (DTR/RTS), usb-reset (USB-Serial-JTAG) or no-reset (ignored for virtual:).") var before = "default-reset"
    @Option(help: "esp32, esp32s3 or esp32c3: with --port, the chip the board must be (refused if it is another); with --virt-file, the file's chip.") var chip: String?
    @Option(name: .customLong("virt-file"), help: "An ESP32-S3/C3 virtual eFuse file (espefuse --virt --path-efuse-file format), burned offline.") var virtFile: String?

    /// What the command works on (``EFuseToolTarget/open(port:baud:before:chip:virtFile:)``).
    func target() throws -> EFuseToolTarget {
        try EFuseToolTarget.open(port: port, baud: baud, before: before, chip: chip, virtFile: virtFile)
    }
}

enum EFuseExit {
    static let notConfirmed: Int32 = 2
    static let notStuck: Int32 = 3
}

enum EFuseCLI {
    /// Runs `burn` through the library (plan printed, burned only with --yes) and maps the outcome to the exit status.
    static func burn(_ burn: EFuseToolBurn, _ options: EFusePortOptions, yes: Bool, dryRun: Bool = false) throws {
        let outcome = try EFuseTool.burn(burn, on: try options.target(), confirmed: yes, dryRun: dryRun, emit: { print($0) })
        switch outcome {
        case .notConfirmed: throw ExitCode(EFuseExit.notConfirmed)
        case .burned(allStuck: false):
            ErrorRenderer.writeStderr("error: not everything stuck; see the read-back above\n")
            throw ExitCode(EFuseExit.notStuck)
        case .nothingToDo, .dryRun, .burned(allStuck: true): return
        }
    }
}

struct EFuseSummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary", abstract: "Show every eFuse field and the chip's security state.",
        discussion: """
            Reads all four blocks through the eFuse read registers and decodes every field of the \
            ESP32 table with its value and protection (R/W: readable / writeable), then the \
            security state: Secure Boot V2 digest and ABS_DONE_1, FLASH_CRYPT_CNT and whether flash \
            encryption is on, the DISABLE_DL_* bits, JTAG, console, UART download, coding scheme, \
            MAC and chip revision. Read-protected fields read as zero and are shown as `?`. A \
            flash encryption key left readable in BLOCK1 is reported but not shown unless \
            --show-key. --json prints the same as one JSON object.

            ESP32-S3 / ESP32-C3 (detected on --port, or --chip CHIP --virt-file FILE): every field \
            of the chip's table, the six key blocks with their purposes and the security state \
            (Secure Boot, digest slots, revocations, SPI_BOOT_CRYPT_CNT, download and JTAG bits).

            Example:
              espforge efuse summary --port virtual:dev1 --json
            """
    )
    @OptionGroup var options: EFusePortOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .customLong("show-key"), help: "Print a readable (unprotected) flash encryption key in BLOCK1.") var showKey = false

    func run() throws {
        let summary = try EFuseTool.summary(try options.target(), revealKeys: showKey)
        if json { print(summary.json) } else { print(summary.text, terminator: "") }
    }
}

struct EFuseBurnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "burn", abstract: "Burn eFuse fields: NAME=VALUE ...",
        discussion: """
            VALUE is the field's new total value in decimal or 0x hex; it must keep every bit \
            that is already set. CUSTOM_MAC takes a MAC (aa:bb:cc:dd:ee:ff) and also burns \
            CUSTOM_MAC_CRC and MAC_VERSION=1. BLOCK3 takes 64 hex digits in block order. Keys and \
            digests use burn-key / burn-key-digest; protections use write-protect / read-protect. \
            FLASH_CRYPT_CNT: an odd number of set bits means flash encryption is on. Without --yes \
            the plan is printed and the exit status is 2; --dry-run prints it and exits 0.

            Example:
              espforge efuse burn --port virtual:dev1 JTAG_DISABLE=1 DISABLE_DL_DECRYPT=1 FLASH_CRYPT_CNT=1 --yes
            """
    )
    @OptionGroup var options: EFusePortOptions
    @Argument(help: "NAME=VALUE pairs.") var assignments: [String]
    @Flag(name: .customLong("dry-run"), help: "Print the plan and exit 0 without burning.") var dryRun = false
    @Flag(help: "Burn without asking (eFuse burns cannot be undone).") var yes = false

    func run() throws {
        try EFuseCLI.burn(.fields(assignments), options, yes: yes, dryRun: dryRun)
    }
}

struct EFuseBurnKeyDigest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "burn-key-digest", abstract: "Burn a Secure Boot V2 public-key digest into BLOCK2.",
        discussion: """
            Computes the SHA-256 digest of the RSA-3072 public key (from a private or public PEM), \
            as `espforge secure-boot digest` and espefuse do, and burns it into BLOCK2 in natural \
            byte order, then write-protects BLOCK2 (WR_DIS bit 8) unless --no-write-protect. BLOCK2 \
            stays readable: the ROM reads the digest on every boot. Needs chip revision v3.0 or \
            later, coding scheme NONE and an empty BLOCK2. Enable Secure Boot V2 afterwards with \
            `espforge efuse burn ABS_DONE_1=1`.

            Example:
              espforge efuse burn-key-digest --port virtual:dev1 --key signing_pub.pem --yes
            """
    )
    @OptionGroup var options: EFusePortOptions
    @Option(help: "ESP32: RSA-3072 private or public key PEM.") var key: String?
    @Argument(help: "S3/C3: BLOCK_KEYn KEYFILE SECURE_BOOT_DIGESTn, one to three triples.") var triples: [String] = []
    @Flag(name: .customLong("no-write-protect"), help: "Leave the digest block(s) writable.") var noWriteProtect = false
    @Flag(help: "Burn without asking (eFuse burns cannot be undone).") var yes = false

    func run() throws {
        try EFuseCLI.burn(.keyDigests(esp32Key: key, triples: triples, noWriteProtect: noWriteProtect), options, yes: yes)
    }
}

struct EFuseBurnKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "burn-key", abstract: "Burn a flash encryption key into BLOCK1.",
        discussion: """
            The 32-byte key file (as `espforge flash-encryption keygen` or espsecure writes it) is \
            burned byte-reversed, which is how the chip and espsecure expect it, then BLOCK1 is \
            read-protected (RD_DIS bit 0) and write-protected (WR_DIS bit 7) unless \
            --no-protect-key. The key is never printed. Needs coding scheme NONE and an empty \
            BLOCK1. Flash encryption turns on when FLASH_CRYPT_CNT gets an odd number of bits.

            Example:
              espforge efuse burn-key --port virtual:dev1 flash_encryption flash_key.bin --yes
            """
    )
    @OptionGroup var options: EFusePortOptions
    @Argument(help: "ESP32: PURPOSE KEYFILE (flash_encryption, 32 bytes). S3/C3: BLOCK_KEYn KEYFILE PURPOSE triples.") var arguments: [String]
    @Flag(name: .customLong("no-protect-key"), help: "ESP32: leave BLOCK1 readable and writable.") var noProtectKey = false
    @Flag(name: .customLong("no-read-protect"), help: "S3/C3: leave secret keys readable.") var noReadProtect = false
    @Flag(name: .customLong("no-write-protect"), help: "S3/C3: leave the key blocks writable.") var noWriteProtect = false
    @Flag(help: "Burn without asking (eFuse burns cannot be undone).") var yes = false

    func run() throws {
        try EFuseCLI.burn(.keys(arguments: arguments, protectESP32Key: !noProtectKey, noReadProtect: noReadProtect,
                                noWriteProtect: noWriteProtect), options, yes: yes)
    }
}

struct EFuseWriteProtect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write-protect", abstract: "Write-protect eFuse fields or blocks (burn their WR_DIS bits).",
        discussion: """
            WR_DIS bits are shared: the plan lists every field a bit locks (e.g. bit 15 locks \
            CONSOLE_DEBUG_DISABLE and all DISABLE_DL_* bits). Already protected names are noted \
            and skipped.

            Example:
              espforge efuse write-protect --port virtual:dev1 DISABLE_DL_ENCRYPT FLASH_CRYPT_CNT --yes
            """
    )
    @OptionGroup var options: EFusePortOptions
    @Argument(help: "Field or block names.") var names: [String]
    @Flag(help: "Burn without asking (eFuse burns cannot be undone).") var yes = false

    func run() throws {
        guard !names.isEmpty else { throw UsageError("no field names given", hint: "e.g. write-protect DISABLE_DL_ENCRYPT") }
        try EFuseCLI.burn(.writeProtect(names), options, yes: yes)
    }
}

struct EFuseReadProtect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read-protect", abstract: "Read-protect eFuse blocks (burn their RD_DIS bits).",
        discussion: """
            RD_DIS bit 0 hides BLOCK1, bit 2 BLOCK3, bit 3 FLASH_CRYPT_CONFIG, CODING_SCHEME, \
            KEY_STATUS and BLK3_PART_RESERVE. BLOCK2 is refused: it holds the Secure Boot V2 \
            digest the ROM must read.

            Example:
              espforge efuse read-protect --port virtual:dev1 BLOCK3 --yes
            """
    )
    @OptionGroup var options: EFusePortOptions
    @Argument(help: "Field or block names.") var names: [String]
    @Flag(help: "Burn without asking (eFuse burns cannot be undone).") var yes = false

    func run() throws {
        guard !names.isEmpty else { throw UsageError("no field names given", hint: "e.g. read-protect BLOCK3") }
        try EFuseCLI.burn(.readProtect(names), options, yes: yes)
    }
}
