import ESPCore
import Foundation

/// Host-side flash encryption of whole files, as `espforge flash-encryption encrypt|decrypt` does
/// it: streamed through a small buffer (no image-sized copies) into an atomically written output.
public enum FlashCipherFiles {
    /// What one run did (``text`` and ``json()`` are what the command prints).
    public struct Summary: Codable, Sendable, Equatable {
        public var operation: String
        public var chip: String
        public var algorithm: String
        public var address: String
        /// The FLASH_CRYPT_CONFIG used (ESP32 only), e.g. "0xF".
        public var flashCryptConfig: String?
        public var bytes: Int
        public var input: String
        public var output: String

        public var text: String {
            let verb = operation == FlashCipherDirection.encrypt.rawValue ? "Encrypted" : "Decrypted"
            let conf = flashCryptConfig.map { ", FLASH_CRYPT_CONFIG \($0)" } ?? ""
            return "\(verb) \(bytes) bytes at \(address) with \(algorithm)\(conf) -> \(output)\n"
        }

        public func json() throws -> String { try JSONText.render(self) }
    }

    /// Encrypts or decrypts the file `input` (`-`: standard input; length a multiple of 16) as
    /// flash contents at `address` with the key in `keyPath`, writing `output`. Refuses an output
    /// that is the key or the input. On any error `output` is untouched.
    public static func apply(_ direction: FlashCipherDirection, chip: ChipSpec, keyPath: String, address start: Int,
                             flashCryptConfig conf: Int = 0xF, input: String, output: String) throws -> Summary {
        if chip.flashEncryption == .esp32Tweak {
            _ = try ESP32FlashTweak(flashCryptConfig: conf)
        }
        if start < 0 || start % FlashCipher.addressAlignment != 0 {
            throw FlashEncryptionError.misalignedAddress(address: start, alignment: FlashCipher.addressAlignment)
        }
        try refuseOverwrite(output, of: keyPath, role: "the key file")
        try refuseOverwrite(output, of: input, role: "the input file")
        let keyBytes = try BoundedFile.read(keyPath, limit: .key)
        let cipher: FlashCipher
        do { cipher = try FlashCipher(chip: chip, key: keyBytes, flashCryptConfig: conf) } catch {
            throw FileContextError(file: keyPath, underlying: error)
        }
        // Every 16-byte block depends only on its own flash address, so chunking cannot change a byte.
        let source = try InputFile(path: input)
        defer { source.finish() }
        do { try FlashCipher.validate(address: start, length: source.size) } catch {
            throw FileContextError(file: input, underlying: error)
        }
        try writeStreaming(to: output, count: source.size) { offset, chunk in
            try source.read(into: chunk, at: offset)
            try cipher.apply(direction, inPlace: chunk, at: start + offset)
        }
        return Summary(operation: direction.rawValue, chip: chip.name, algorithm: cipher.key.algorithm,
                       address: NumberParsing.hex(start),
                       flashCryptConfig: chip.flashEncryption == .esp32Tweak ? "0x" + String(conf, radix: 16, uppercase: true) : nil,
                       bytes: source.size, input: input, output: output)
    }

    /// Writes `count` bytes, produced `chunkSize` at a time by `produce(offset, buffer)`, to `path`
    /// through ``AtomicFile`` (the whole content is never held in memory). On any error `path` is untouched.
    public static func writeStreaming(to path: String, count: Int, chunkSize: Int = 1 << 18,
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

    /// The output must not replace the key (irreplaceable) or the input (running twice would encrypt twice).
    static func refuseOverwrite(_ output: String, of path: String, role: String) throws {
        let a = URL(fileURLWithPath: output).resolvingSymlinksInPath().standardizedFileURL.path
        let b = URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
        if a == b {
            throw UsageError(Diagnostic("output is \(role)", file: output, hint: "write the result to a new file with -o"))
        }
    }
}

extension FlashEncryptionKey {
    /// Writes a new random `bits`-bit key (256 or 512) to `path` with mode 0600. An existing file
    /// is kept (a usage error) unless `overwrite`: a key already burned into devices is irreplaceable.
    public static func generateFile(bits: Int, path: String, overwrite: Bool) throws {
        if !overwrite, FileManager.default.fileExists(atPath: path) {
            throw UsageError(Diagnostic("already exists; refusing to overwrite a key file", file: path,
                                        hint: "choose another name, or pass --force if the old key is really unused"))
        }
        try AtomicFile.write(try generate(bits: bits), to: path, mode: AtomicFile.secretMode)
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
            bytes = try BoundedFile.read(path, limit: .flashContents) // says what is wrong (missing, not readable …)
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

/// In-process throughput of the flash ciphers (`espforge flash-encryption bench`).
public enum FlashCipherBenchmark {
    public struct Row: Codable, Sendable, Equatable {
        public var scheme: String
        public var direction: String
        public var backend: String
        public var bytes: Int
        public var megabytesPerSecond: Double
    }

    /// Encrypts `bytes` random bytes with a random key (neither kept) for the ESP32 scheme (both
    /// directions) and XTS-AES-128/256, the best of `repetitions` runs each.
    public static func run(bytes: Int, backend: AESBackend, repetitions: Int) throws -> [Row] {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let cases: [(String, FlashEncryptionScheme, Int, FlashCipherDirection)] = [
            ("esp32", .esp32Tweak, 32, .encrypt), ("esp32", .esp32Tweak, 32, .decrypt),
            ("xts-aes-128", .xtsAES, 32, .encrypt), ("xts-aes-256", .xtsAES, 64, .encrypt),
        ]
        var rows: [Row] = []
        for (name, scheme, keyLength, direction) in cases {
            let keyBytes = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let cipher = try FlashCipher(key: FlashEncryptionKey(keyBytes, scheme: scheme), backend: backend)
            var best = Duration.seconds(1000)
            let clock = ContinuousClock()
            for _ in 0..<max(1, repetitions) {
                best = min(best, try clock.measure { _ = try cipher.apply(direction, to: data, at: 0x10000) })
            }
            let seconds = Double(best.components.seconds) + Double(best.components.attoseconds) * 1e-18
            rows.append(Row(scheme: name, direction: direction.rawValue, backend: backend.resolved == .aesNI ? "aesni" : "portable",
                            bytes: bytes, megabytesPerSecond: (Double(bytes) / seconds / 1e6 * 10).rounded() / 10))
        }
        return rows
    }

    /// One line per row (what the command prints without --json).
    public static func text(_ rows: [Row]) -> String {
        rows.map { "\($0.scheme) \($0.direction) [\($0.backend)]: \($0.megabytesPerSecond) MB/s (\($0.bytes) bytes)\n" }.joined()
    }
}

extension AESBackend {
    /// The backend named `auto`, `portable` or `aesni` (also `aes-ni`), any case; nil otherwise.
    public init?(name: String) {
        switch name.lowercased() {
        case "auto": self = .automatic
        case "portable": self = .portable
        case "aesni", "aes-ni": self = .aesNI
        default: return nil
        }
    }
}
