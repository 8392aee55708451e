import ESPCore

/// Bounded reads for the line's input files (each format's largest input, ``InputLimit``).
enum FileIO {
    static func read(_ path: String, limit: InputLimit) throws -> [UInt8] {
        try BoundedFile.read(path, limit: limit)
    }

    /// nil when the file does not exist (optional build files).
    static func readIfPresent(_ path: String, limit: InputLimit) throws -> [UInt8]? {
        do { return try BoundedFile.read(path, limit: limit) } catch where error.reason == .missing { return nil }
    }

    static func readText(_ path: String, limit: InputLimit) throws -> String {
        try BoundedFile.readText(path, limit: limit)
    }
}
