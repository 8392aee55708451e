import ESPCore

/// Where in a CSV something is: 1-based line and column (of the field's first character).
public struct CSVLocation: Sendable, Equatable, Hashable {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

/// Everything that can go wrong building or reading NVS data.
public enum NVSError: Error, Equatable, Sendable {
    /// The CSV text is malformed (bad header, bad UTF-8, ...).
    case csv(String, line: Int, column: Int?, hint: String?)
    /// A row of the CSV has an invalid field.
    case invalidField(String, at: CSVLocation, hint: String?)
    /// Key (or namespace name) longer than 15 bytes.
    case keyTooLong(String, at: CSVLocation)
    /// A value is too large for the NVS format.
    case valueTooLarge(key: String, size: Int, limit: Int, at: CSVLocation?, hint: String)
    /// The entries do not fit in the partition.
    case partitionTooSmall(size: Int, at: CSVLocation?)
    /// Bad `--size`.
    case invalidSize(Int, reason: String)
    /// More than 254 namespaces, or a blob with more than 255 chunks.
    case limitExceeded(String, at: CSVLocation?)
    /// Key material has the wrong length or a bad CRC.
    case invalidKeys(String, hint: String?)
    /// Per-device mode: a problem with one device row of the values CSV.
    case deviceRow(id: String, row: Int, column: Int?, message: String)
}

extension NVSError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .csv(message, line, column, hint):
            return Diagnostic(message, line: line, column: column, hint: hint)
        case let .invalidField(message, at, hint):
            return Diagnostic(message, line: at.line, column: at.column, hint: hint)
        case let .keyTooLong(key, at):
            return Diagnostic("key `\(key)` is \(key.utf8.count) bytes long; NVS keys have at most 15",
                              line: at.line, column: at.column, hint: "shorten the key to 15 characters or fewer")
        case let .valueTooLarge(key, size, limit, at, hint):
            return Diagnostic("value of `\(key)` is \(size) bytes; at most \(limit) fit", line: at?.line,
                              column: at?.column, hint: hint)
        case let .partitionTooSmall(size, at):
            return Diagnostic("the entries do not fit in an NVS partition of \(size) bytes (0x\(String(size, radix: 16)))",
                              line: at?.line, column: at?.column,
                              hint: "increase --size (one 4 KiB page is always kept free)")
        case let .invalidSize(size, reason):
            return Diagnostic("invalid NVS partition size \(size) (0x\(String(size, radix: 16))): \(reason)",
                              hint: "use a multiple of 4096, at least 0x3000 (0x1000 for a read-only partition)")
        case let .limitExceeded(message, at):
            return Diagnostic(message, line: at?.line, column: at?.column)
        case let .invalidKeys(message, hint):
            return Diagnostic(message, hint: hint)
        case let .deviceRow(id, row, column, message):
            return Diagnostic("device `\(id)`: \(message)", line: row, column: column)
        }
    }
}
