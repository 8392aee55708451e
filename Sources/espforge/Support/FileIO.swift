import ESPCore

/// File access at the edge of the tool: every read is bounded by its format's largest input
/// (``InputLimit``), every write goes through ``AtomicFile``. Errors name the file and say what
/// to do.
enum FileIO {
    /// Reads a whole file (`-`: standard input) of at most `limit` bytes.
    static func read(_ path: String, limit: InputLimit) throws -> [UInt8] {
        try BoundedFile.read(path, limit: limit)
    }

    /// Like ``read(_:limit:)``, but nil when the file does not exist (optional build files).
    static func readIfPresent(_ path: String, limit: InputLimit) throws -> [UInt8]? {
        do { return try BoundedFile.read(path, limit: limit) } catch where error.reason == .missing { return nil }
    }

    static func readText(_ path: String, limit: InputLimit) throws -> String {
        try BoundedFile.readText(path, limit: limit)
    }

    /// Writes `bytes` atomically. `secret: true` creates the file with mode 0600 before any byte
    /// is written, for private keys and symmetric keys.
    static func write(_ bytes: [UInt8], to path: String, secret: Bool = false) throws {
        try AtomicFile.write(bytes, to: path, mode: secret ? AtomicFile.secretMode : AtomicFile.publicMode)
    }

    static func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path)
    }
}
