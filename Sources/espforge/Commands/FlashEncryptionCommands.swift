import ArgumentParser
import ESPCore
import FlashEncryption
import Foundation

struct FlashEncryptionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flash-encryption",
        abstract: "Host-side flash encryption and decryption.",
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
        commandName: "keygen",
        abstract: "Generate a random flash encryption key file (mode 0600).",
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

    @Option(help: "Key size in bits: 256 or 512.")
    var bits: Int = 256

    @Option(name: [.short, .customLong("output")], help: "Key file to write.")
    var output: String

    @Flag(help: "Overwrite an existing key file.")
    var force = false

    func run() throws {
        if !force, FileManager.default.fileExists(atPath: output) {
            throw UsageError(Diagnostic("already exists; refusing to overwrite a key file", file: output,
                                        hint: "choose another name, or pass --force if the old key is really unused"))
        }
        let key = try FlashEncryptionKey.generate(bits: bits)
        try FileIO.write(key, to: output, secret: true)
        print("Wrote a \(bits)-bit flash encryption key to \(output) (mode 0600).")
    }
}

/// Options shared by `encrypt` and `decrypt`.
struct FlashCipherOptions: ParsableArguments {
    @Option(help: "Target chip: esp32 (AES-256 with key tweak), esp32s3 or esp32c3 (XTS-AES).")
    var chip: String

    @Option(help: "Flash encryption key file (ESP32: 32 bytes, or 24 for 3/4 coding; XTS: 32, or 64 on esp32s3).")
    var key: String

    @Option(help: "Flash offset the data is written to / was read from (multiple of 16, e.g. 0x10000).")
    var address: String

    @Option(name: .customLong("flash-crypt-conf"),
            help: "FLASH_CRYPT_CONFIG eFuse value, 0x0-0xF (ESP32 only; default 0xF, what ESP-IDF burns).")
    var flashCryptConf: String?

    @Argument(help: "Input file (length a multiple of 16 bytes).")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "Output file.")
    var output: String

    @Flag(help: "Print a JSON summary.")
    var json = false

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

    struct Summary: Codable {
        var operation: String
        var chip: String
        var algorithm: String
        var address: String
        var flashCryptConfig: String?
        var bytes: Int
        var input: String
        var output: String
    }

    func run(_ direction: FlashCipherDirection) throws {
        guard let chipSpec = ChipSpec.named(chip), let start = NumberParsing.integer(address) else {
            throw UsageError("invalid --chip or --address")
        }
        let conf = flashCryptConf.flatMap(NumberParsing.integer) ?? 0xF
        if chipSpec.flashEncryption == .esp32Tweak {
            _ = try ESP32FlashTweak(flashCryptConfig: conf)
        }
        if start < 0 || start % FlashCipher.addressAlignment != 0 {
            throw FlashEncryptionError.misalignedAddress(address: start, alignment: FlashCipher.addressAlignment)
        }
        try refuseOverwrite(of: key, role: "the key file")
        try refuseOverwrite(of: input, role: "the input file")

        let keyBytes = try FileIO.read(key, limit: .key)
        let cipher: FlashCipher
        do {
            cipher = try FlashCipher(chip: chipSpec, key: keyBytes, flashCryptConfig: conf)
        } catch {
            throw FileContextError(file: key, underlying: error)
        }
        // Stream: read a chunk into a small cache-resident buffer, encrypt it in place, write it
        // out. No image-sized buffers, no extra copies. Chunks are a multiple of 16 bytes and every
        // 16-byte block depends only on its own flash address, so chunking cannot change a byte.
        let source = try InputFile(path: input)
        defer { source.finish() }
        let byteCount = source.size
        do {
            try FlashCipher.validate(address: start, length: byteCount)
        } catch {
            throw FileContextError(file: input, underlying: error)
        }
        try Self.writeStreaming(to: output, count: byteCount) { offset, chunk in
            try source.read(into: chunk, at: offset)
            try cipher.apply(direction, inPlace: chunk, at: start + offset)
        }

        let confText = chipSpec.flashEncryption == .esp32Tweak ? "0x" + String(conf, radix: 16, uppercase: true) : nil
        if json {
            try Output.printJSON(Summary(operation: direction.rawValue, chip: chipSpec.name, algorithm: cipher.key.algorithm,
                                         address: NumberParsing.hex(start), flashCryptConfig: confText,
                                         bytes: byteCount, input: input, output: output))
        } else {
            let verb = direction == .encrypt ? "Encrypted" : "Decrypted"
            let conf = confText.map { ", FLASH_CRYPT_CONFIG \($0)" } ?? ""
            print("\(verb) \(byteCount) bytes at \(NumberParsing.hex(start)) with \(cipher.key.algorithm)\(conf) -> \(output)")
        }
    }

    /// Writes `count` bytes, produced `chunkSize` at a time by `produce(offset, buffer)`, to `path`
    /// through ``AtomicFile`` (streaming: the whole content is never held in memory). On any
    /// error `path` is untouched.
    static func writeStreaming(to path: String, count: Int, chunkSize: Int = 1 << 18,
                               produce: (Int, UnsafeMutableRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(chunkSize, max(count, 1)), alignment: 64)
        defer { buffer.deallocate() }
        try AtomicFile.write(to: path) { sink in
            var offset = 0
            while offset < count {
                let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, count - offset)])
                try produce(offset, chunk)
                try sink.write(UnsafeRawBufferPointer(chunk))
                offset += chunk.count
            }
        }
    }

    /// The output must not replace the key (irreplaceable) or the input (running twice would
    /// encrypt twice).
    private func refuseOverwrite(of path: String, role: String) throws {
        let a = URL(fileURLWithPath: output).resolvingSymlinksInPath().standardizedFileURL.path
        let b = URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
        if a == b {
            throw UsageError(Diagnostic("output is \(role)", file: output, hint: "write the result to a new file with -o"))
        }
    }
}

struct FlashEncryptionEncrypt: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encrypt",
        abstract: "Encrypt plaintext for a flash offset (what the chip stores there).",
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
        commandName: "decrypt",
        abstract: "Decrypt flash contents read from an offset back to plaintext.",
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
        commandName: "bench",
        abstract: "Measure in-process flash encryption throughput (MB/s).",
        discussion: """
            Encrypts random data with a random key (neither is written anywhere) for the ESP32 scheme and \
            XTS-AES-128/256, best of several repetitions, and prints MB/s (10^6 bytes per second) for the \
            chosen AES backend. Used by scripts/bench-flashenc.

            Example:
              espforge flash-encryption bench --size 4M --backend portable
            """
    )

    @Option(help: "Data size per run (e.g. 4M).")
    var size: String = "4M"

    @Option(help: "AES implementation: auto, portable or aesni.")
    var backend: String = "auto"

    @Option(help: "Repetitions (the best is reported).")
    var repetitions: Int = 5

    @Flag(help: "Print JSON.")
    var json = false

    struct Row: Codable {
        var scheme: String
        var direction: String
        var backend: String
        var bytes: Int
        var megabytesPerSecond: Double
    }

    func run() throws {
        guard let bytes = NumberParsing.size(size), bytes > 0, bytes % 16 == 0, bytes <= 1 << 30 else {
            throw ValidationError("--size must be a positive multiple of 16 up to 1G")
        }
        let choice: AESBackend
        switch backend.lowercased() {
        case "auto": choice = .automatic
        case "portable": choice = .portable
        case "aesni", "aes-ni": choice = .aesNI
        default: throw ValidationError("--backend must be auto, portable or aesni")
        }
        var rng = SystemRandomNumberGenerator()
        let data = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let cases: [(String, FlashEncryptionScheme, Int, FlashCipherDirection)] = [
            ("esp32", .esp32Tweak, 32, .encrypt), ("esp32", .esp32Tweak, 32, .decrypt),
            ("xts-aes-128", .xtsAES, 32, .encrypt), ("xts-aes-256", .xtsAES, 64, .encrypt),
        ]
        var rows: [Row] = []
        for (name, scheme, keyLength, direction) in cases {
            let keyBytes = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let cipher = try FlashCipher(key: FlashEncryptionKey(keyBytes, scheme: scheme), backend: choice)
            var best = Duration.seconds(1000)
            let clock = ContinuousClock()
            for _ in 0..<max(1, repetitions) {
                let t = try clock.measure { _ = try cipher.apply(direction, to: data, at: 0x10000) }
                best = min(best, t)
            }
            let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) * 1e-18
            rows.append(Row(scheme: name, direction: direction.rawValue, backend: choice.resolved == .aesNI ? "aesni" : "portable",
                            bytes: bytes, megabytesPerSecond: (Double(bytes) / seconds / 1e6 * 10).rounded() / 10))
        }
        if json {
            try Output.printJSON(rows)
        } else {
            for r in rows {
                print("\(r.scheme) \(r.direction) [\(r.backend)]: \(r.megabytesPerSecond) MB/s (\(r.bytes) bytes)")
            }
        }
    }
}

/// An input file read chunk by chunk (regular files), or held in memory (anything else, e.g. a
/// pipe); either way no larger than the largest flash. Errors come from ``BoundedFile``.
final class InputFile {
    let path: String
    let size: Int
    private var fd: Int32 = -1
    private var bytes: [UInt8] = []

    init(path: String) throws {
        self.path = path
        let fd = path == "-" ? dup(0) : open(path, O_RDONLY | O_CLOEXEC)
        var info = stat()
        guard fd >= 0, fstat(fd, &info) == 0 else {
            if fd >= 0 { _ = close(fd) }
            bytes = try FileIO.read(path, limit: .flashContents) // says what is wrong (missing, not readable …)
            size = bytes.count
            return
        }
        let limit = InputLimit.flashContents
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            guard Int(info.st_size) <= limit.maxBytes else {
                _ = close(fd)
                throw FileAccessError(path: path, reason: .tooLarge(size: Int(info.st_size), limit: limit))
            }
            self.fd = fd
            size = Int(info.st_size)
        default:
            // A pipe or device: read it (bounded) to the end; directories get their error there.
            defer { _ = close(fd) }
            bytes = try BoundedFile.read(fd: fd, name: path, limit: limit)
            size = bytes.count
        }
    }

    /// Fills `chunk` with the bytes at `offset`.
    func read(into chunk: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        guard let base = chunk.baseAddress else { return }
        guard fd >= 0 else {
            bytes.withUnsafeBytes { chunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + chunk.count])) }
            return
        }
        var done = 0
        while done < chunk.count {
            let n = pread(fd, base + done, chunk.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw UsageError(Diagnostic(n == 0 ? "file became shorter while being read" : "cannot read: \(String(cString: strerror(errno)))",
                                            file: path))
            }
            done += n
        }
    }

    func finish() {
        if fd >= 0 { _ = close(fd); fd = -1 }
    }
}
