import ArgumentParser
import EFuse
import Flasher
import ESPCore
import ProductionLine
import SecureBoot

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

    /// The chip and file of an offline burn, or nil for a chip over --port.
    func virtual() throws -> (chip: String, file: String)? {
        guard let virtFile else { return nil }
        guard port == nil else { throw UsageError("--port and --virt-file cannot be used together", hint: "--virt-file burns an S3/C3 eFuse file offline; --port talks to a chip") }
        guard let chip else { throw UsageError("--virt-file needs --chip", hint: "add --chip esp32s3 or --chip esp32c3") }
        return (chip, virtFile)
    }

    /// What the command works on: an S3/C3 eFuse file, an S3/C3 over the port, or an ESP32.
    func target() throws -> EFuseTarget {
        if let v = try virtual() { return .fieldMap(.file(chip: v.chip, path: v.file)) }
        guard let port else { throw UsageError("missing --port", hint: "give --port PORT, or --chip esp32s3|esp32c3 --virt-file FILE") }
        switch try EFusePort.open(port: port, baud: baud, before: try SessionOptions.resetMode(before), chip: chip) {
        case let .esp32(client): return .esp32(client)
        case let .fieldMap(client): return .fieldMap(.port(client, name: port))
        }
    }
}

enum EFuseTarget {
    enum FieldMap {
        case file(chip: String, path: String)
        case port(FieldMapEFuseClient, name: String)
    }

    case esp32(EFuseClient)
    case fieldMap(FieldMap)
}

/// The ESP32 client of `target` (the S3/C3 cases are handled before this is asked for).
func esp32(_ target: EFuseTarget) throws -> EFuseClient {
    guard case let .esp32(client) = target else {
        throw UsageError("this form of the command is for the ESP32", hint: "see `espforge efuse help` for the ESP32-S3/C3 arguments")
    }
    return client
}

enum EFuseExit {
    static let notConfirmed: Int32 = 2
    static let notStuck: Int32 = 3
}

enum EFuseCLI {
    /// Plans, prints the plan, and burns only with `yes`. Never prints key material.
    static func run(_ requests: [EFuseBurnRequest], client: EFuseClient, options: EFusePortOptions, yes: Bool, dryRun: Bool = false) throws {
        try finish(try EFuseBurnRun.run(requests, client: client, portName: options.port ?? "", confirmed: yes,
                                        dryRun: dryRun, emit: { print($0) }))
    }

    /// An S3/C3 burn: offline on a virtual eFuse file, or on the chip over the port.
    static func runFieldMap(_ operation: FieldMapBurnOperation, _ target: EFuseTarget.FieldMap, yes: Bool, dryRun: Bool = false) throws {
        switch target {
        case let .file(chip, path):
            try finish(try FieldMapVirtualBurn.run(operation, chip: chip, file: path, confirmed: yes, dryRun: dryRun, emit: { print($0) }))
        case let .port(client, name):
            try finish(try FieldMapPortBurn.run(operation, client: client, portName: name, confirmed: yes, dryRun: dryRun, emit: { print($0) }))
        }
    }

    static func finish(_ outcome: EFuseBurnRun.Outcome) throws {
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
        let client: EFuseClient
        switch try options.target() {
        case let .fieldMap(.file(chip, path)):
            let (map, words) = try EFuseVirtualFile.read(path, chip: chip)
            let s = EFuseFieldMapSummary(words: words, map: map, revealKeys: showKey)
            if json { try Output.printJSON(s) } else { print(s.text(map: map), terminator: "") }
            return
        case let .fieldMap(.port(c, _)):
            let s = try c.summary(revealKeys: showKey)
            if json { try Output.printJSON(s) } else { print(s.text(map: c.map), terminator: "") }
            return
        case let .esp32(c): client = c
        }
        let summary = try client.summary(revealKeys: showKey)
        if json { print(try summary.json()) } else { print(summary.text, terminator: "") }
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
        let target = try options.target()
        if case let .fieldMap(fm) = target {
            let pairs = try assignments.map { a -> (name: String, value: String) in
                guard let eq = a.firstIndex(of: "="), eq != a.startIndex else {
                    throw UsageError("'\(a)' is not NAME=VALUE", hint: "e.g. SECURE_BOOT_EN=1 SPI_BOOT_CRYPT_CNT=1")
                }
                return (String(a[..<eq]), String(a[a.index(after: eq)...]))
            }
            try EFuseCLI.runFieldMap(.burn(pairs), fm, yes: yes, dryRun: dryRun)
            return
        }
        let requests = try EFuseBurnRequest.fields(assignments)
        try EFuseCLI.run(requests, client: try esp32(target), options: options, yes: yes, dryRun: dryRun)
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
        let target = try options.target()
        if case let .fieldMap(fm) = target {
            guard key == nil else { throw UsageError("--key is for the ESP32", hint: "on an ESP32-S3/C3 give BLOCK_KEYn KEYFILE SECURE_BOOT_DIGESTn triples") }
            let requests = try EFuseKeyArguments.triples(triples, command: "burn-key-digest") { file in
                do { return try KeyMaterial.load(file: file).verifyingKey.keyDigest() } catch { throw FileContextError(file: file, underlying: error) }
            }
            try EFuseCLI.runFieldMap(.burnKeyDigests(requests, noWriteProtect: noWriteProtect), fm, yes: yes)
            return
        }
        guard let key, triples.isEmpty else {
            throw UsageError("the ESP32 takes --key PEM", hint: "e.g. burn-key-digest --port virtual:dev1 --key signing_key.pem")
        }
        let digest = try SecureBootKeyFiles.esp32KeyDigest(file: key)
        try EFuseCLI.run([.secureBootDigest(digest, writeProtect: !noWriteProtect)], client: try esp32(target), options: options, yes: yes)
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
        let target = try options.target()
        if case let .fieldMap(fm) = target {
            let requests = try EFuseKeyArguments.triples(arguments, command: "burn-key") { file in
                try BoundedFile.read(file, limit: .key)
            }
            do {
                try EFuseCLI.runFieldMap(.burnKeys(requests, noReadProtect: noReadProtect, noWriteProtect: noWriteProtect),
                                        fm, yes: yes)
            } catch let e as FieldMapBurnError {
                if case let .badKeyLength(block, _, _, _) = e,
                   let i = requests.firstIndex(where: { $0.block.uppercased() == block }) {
                    throw FileContextError(file: arguments[3 * i + 1], underlying: e)
                }
                throw e
            }
            return
        }
        guard arguments.count == 2 else {
            throw UsageError("the ESP32 takes PURPOSE KEYFILE", hint: "e.g. burn-key --port virtual:dev1 flash_encryption flash_key.bin")
        }
        let purpose = arguments[0], keyFile = arguments[1]
        let request = try EFuseBurnRequest.key(purpose: purpose, keyFile: keyFile, protect: !noProtectKey)
        do {
            try EFuseCLI.run([request], client: try esp32(target), options: options, yes: yes)
        } catch let e as EFusePlanError {
            if case .badKeyLength = e { throw FileContextError(file: keyFile, underlying: e) }
            throw e
        }
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
        let target = try options.target()
        if case let .fieldMap(fm) = target {
            try EFuseCLI.runFieldMap(.writeProtect(names), fm, yes: yes)
            return
        }
        try EFuseCLI.run(names.map { .writeProtect($0) }, client: try esp32(target), options: options, yes: yes)
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
        let target = try options.target()
        if case let .fieldMap(fm) = target {
            try EFuseCLI.runFieldMap(.readProtect(names), fm, yes: yes)
            return
        }
        try EFuseCLI.run(names.map { .readProtect($0) }, client: try esp32(target), options: options, yes: yes)
    }
}

/// `BLOCK FILE PURPOSE` triples of the S3/C3 burn-key and burn-key-digest.
enum EFuseKeyArguments {
    static func triples(_ args: [String], command: String,
                        load: (String) throws -> [UInt8]) throws -> [FieldMapBurnPlanner.KeyRequest] {
        guard !args.isEmpty, args.count % 3 == 0 else {
            throw UsageError("\(command) takes BLOCK FILE PURPOSE triples (\(args.count) arguments given)",
                             hint: "e.g. \(command) --port PORT BLOCK_KEY0 \(command == "burn-key" ? "key.bin XTS_AES_128_KEY" : "sb.pem SECURE_BOOT_DIGEST0") (or --chip esp32s3 --virt-file efuse.bin instead of --port)")
        }
        return try stride(from: 0, to: args.count, by: 3).map { i in
            FieldMapBurnPlanner.KeyRequest(block: args[i], data: try load(args[i + 1]), purpose: args[i + 2])
        }
    }
}
