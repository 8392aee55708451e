import ArgumentParser
import ESPCore
import FlashEncryption

struct FlashEncryptionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flash-encryption", abstract: "Host-side flash encryption and decryption.",
        discussion: """
            Encrypts flash contents on the host with a key that is (or will be) burned into eFuse, so a \
            factory can write ciphertext directly instead of letting the bootloader encrypt in place on \
            first boot. Output is byte-identical to espsecure encrypt-flash-data / decrypt-flash-data \
            (esptool 5.6.0): ESP32 uses AES-256 with the per-32-byte key tweak selected by \
            FLASH_CRYPT_CONFIG; ESP32-S3 and ESP32-C3 use XTS-AES (128-bit, or 256-bit on the S3).

            Example:
              espforge flash-encryption keygen -o flash_key.bin
              espforge flash-encryption encrypt --chip esp32 --key flash_key.bin \\
                  --address 0x1000 bootloader.bin -o bootloader-enc.bin
            """,
        subcommands: [FlashEncryptionKeygen.self, FlashEncryptionEncrypt.self, FlashEncryptionDecrypt.self,
                      FlashEncryptionBench.self]
    )
}

struct FlashEncryptionKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Generate a random flash encryption key file (mode 0600).",
        discussion: """
            Writes --bits/8 bytes from the operating system's cryptographically secure random generator. \
            256 bits: ESP32 (AES-256) and XTS-AES-128 chips (ESP32-C3, ESP32-S3); 512 bits: XTS-AES-256 \
            (ESP32-S3). The file is created with mode 0600 and the key is never printed. An existing file \
            is not overwritten unless --force is given: a key already burned into devices is \
            irreplaceable.

            Example:
              espforge flash-encryption keygen --bits 512 -o s3_flash_key.bin
            """
    )

    @Option(help: "Key size in bits: 256 or 512.") var bits: Int = 256
    @Option(name: [.short, .customLong("output")], help: "Key file to write.") var output: String
    @Flag(help: "Overwrite an existing key file.") var force = false

    func run() throws {
        try FlashEncryptionKey.generateFile(bits: bits, path: output, overwrite: force)
        print("Wrote a \(bits)-bit flash encryption key to \(output) (mode 0600).")
    }
}

/// Options shared by `encrypt` and `decrypt`.
struct FlashCipherOptions: ParsableArguments {
    @Option(help: "Target chip: esp32 (AES-256 with key tweak), esp32s3 or esp32c3 (XTS-AES).") var chip: String
    @Option(help: "Flash encryption key file (ESP32: 32 bytes, or 24 for 3/4 coding; XTS: 32, or 64 on esp32s3).") var key: String
    @Option(help: "Flash offset the data is written to / was read from (multiple of 16, e.g. 0x10000).") var address: String
    @Option(name: .customLong("flash-crypt-conf"),
            help: "FLASH_CRYPT_CONFIG eFuse value, 0x0-0xF (ESP32 only; default 0xF, what ESP-IDF burns).")
    var flashCryptConf: String?
    @Argument(help: "Input file (length a multiple of 16 bytes).") var input: String
    @Option(name: [.short, .customLong("output")], help: "Output file.") var output: String
    @Flag(help: "Print a JSON summary.") var json = false

    func validate() throws {
        guard let chipSpec = ChipSpec.named(chip) else {
            throw ValidationError("unknown chip '\(chip)'; known: \(ChipSpec.all.map(\.name).joined(separator: ", "))")
        }
        guard NumberParsing.integer(address) != nil else {
            throw ValidationError("--address '\(address)' is not a number (use e.g. 0x10000)")
        }
        if let conf = flashCryptConf {
            guard NumberParsing.integer(conf) != nil else {
                throw ValidationError("--flash-crypt-conf '\(conf)' is not a number (use 0x0-0xF)")
            }
            guard chipSpec.flashEncryption == .esp32Tweak else {
                throw ValidationError("--flash-crypt-conf applies to ESP32 only; \(chipSpec.displayName) uses XTS-AES")
            }
        }
    }

    func run(_ direction: FlashCipherDirection) throws {
        guard let chipSpec = ChipSpec.named(chip), let start = NumberParsing.integer(address) else {
            throw UsageError("invalid --chip or --address")
        }
        let summary = try FlashCipherFiles.apply(direction, chip: chipSpec, keyPath: key, address: start,
                                                 flashCryptConfig: flashCryptConf.flatMap(NumberParsing.integer) ?? 0xF,
                                                 input: input, output: output)
        if json { print(try summary.json()) } else { print(summary.text, terminator: "") }
    }
}

struct FlashEncryptionEncrypt: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encrypt", abstract: "Encrypt plaintext for a flash offset (what the chip stores there).",
        discussion: """
            Same output as `espsecure encrypt-flash-data` (add --aes-xts there for XTS chips). The address \
            matters: ESP32 changes the AES key every 32 bytes of flash, XTS-AES uses the 128-byte unit \
            address as tweak. The input length must be a multiple of 16 bytes: espforge never pads with \
            random bytes (pad with 0xFF yourself). Encrypt each image at its own flash offset.

            Example:
              espforge flash-encryption encrypt --chip esp32 --key key.bin \\
                  --address 0x10000 app.bin -o app-enc.bin
              espforge flash-encryption encrypt --chip esp32s3 --key key512.bin \\
                  --address 0x0 bootloader.bin -o bootloader-enc.bin
            """
    )

    @OptionGroup var options: FlashCipherOptions

    func run() throws { try options.run(.encrypt) }
}

struct FlashEncryptionDecrypt: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decrypt", abstract: "Decrypt flash contents read from an offset back to plaintext.",
        discussion: """
            Same output as `espsecure decrypt-flash-data`. Use the key, chip, FLASH_CRYPT_CONFIG and the \
            flash offset the data was read from.

            Example:
              espforge flash-encryption decrypt --chip esp32 --key key.bin \\
                  --address 0x10000 dump.bin -o app.bin
            """
    )

    @OptionGroup var options: FlashCipherOptions

    func run() throws { try options.run(.decrypt) }
}

struct FlashEncryptionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure in-process flash encryption throughput (MB/s).",
        discussion: """
            Encrypts random data with a random key (neither is written anywhere) for the ESP32 scheme and \
            XTS-AES-128/256, best of several repetitions, and prints MB/s (10^6 bytes per second) for the \
            chosen AES backend. Used by scripts/bench-flashenc.

            Example:
              espforge flash-encryption bench --size 4M --backend portable
            """
    )

    @Option(help: "Data size per run (e.g. 4M).") var size: String = "4M"
    @Option(help: "AES implementation: auto, portable or aesni.") var backend: String = "auto"
    @Option(help: "Repetitions (the best is reported).") var repetitions: Int = 5
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        guard let bytes = NumberParsing.size(size), bytes > 0, bytes % 16 == 0, bytes <= 1 << 30 else {
            throw ValidationError("--size must be a positive multiple of 16 up to 1G")
        }
        guard let choice = AESBackend(name: backend) else { throw ValidationError("--backend must be auto, portable or aesni") }
        let rows = try FlashCipherBenchmark.run(bytes: bytes, backend: choice, repetitions: repetitions)
        if json { print(try JSONText.render(rows)) } else { print(FlashCipherBenchmark.text(rows), terminator: "") }
    }
}
