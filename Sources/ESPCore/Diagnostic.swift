/// What went wrong with user input, where, and how to fix it.
///
/// Domain errors (one enum per module) conform to ``DiagnosticConvertible``; the command-line tool
/// renders every diagnostic in one place, adding the file name it was reading.
public struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// Byte offset in the input file, when the problem has one.
    public var offset: Int?
    /// 1-based line (and column) in a text input such as a CSV, when the problem has one.
    public var line: Int?
    public var column: Int?
    /// The input file, when known (usually added by the caller that opened it).
    public var file: String?
    /// A suggestion for fixing it.
    public var hint: String?

    public init(_ message: String, offset: Int? = nil, line: Int? = nil, column: Int? = nil,
                file: String? = nil, hint: String? = nil) {
        self.message = message
        self.offset = offset
        self.line = line
        self.column = column
        self.file = file
        self.hint = hint
    }

    /// One line: `FILE: line N, column M: byte offset 0x…: message`, then the hint on its own line.
    public var description: String {
        var where_: [String] = []
        if let file { where_.append(file) }
        if let line {
            where_.append(column.map { "line \(line), column \($0)" } ?? "line \(line)")
        }
        if let offset { where_.append("byte offset \(offset) (0x\(String(offset, radix: 16)))") }
        var text = where_.isEmpty ? message : where_.joined(separator: ": ") + ": " + message
        if let hint { text += "\n  hint: " + hint }
        return text
    }
}

/// An error that can describe itself to a user.
public protocol DiagnosticConvertible: Error {
    var diagnostic: Diagnostic { get }
}

/// Wraps any error with the file it concerns, so pure cores need not know file names.
public struct FileContextError: Error, DiagnosticConvertible {
    public let file: String
    public let underlying: any Error

    public init(file: String, underlying: any Error) {
        self.file = file
        self.underlying = underlying
    }

    public var diagnostic: Diagnostic {
        var d = (underlying as? DiagnosticConvertible)?.diagnostic ?? Diagnostic(String(describing: underlying))
        if d.file == nil { d.file = file }
        return d
    }
}

/// A plain usage or input problem with a message and optional hint.
public struct UsageError: Error, DiagnosticConvertible {
    public let diagnostic: Diagnostic
    public init(_ message: String, hint: String? = nil) {
        diagnostic = Diagnostic(message, hint: hint)
    }
    public init(_ diagnostic: Diagnostic) { self.diagnostic = diagnostic }
}
