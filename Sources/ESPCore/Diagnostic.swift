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

extension Diagnostic {
    /// The longest run of non-space characters shown as is; longer runs (a whole bad input
    /// quoted in a message) are cut to an excerpt.
    public static let maxRunLength = 64
    /// The longest message, hint or file name shown; the middle of longer text is left out.
    public static let maxTextLength = 480

    /// `text` safe for a terminal: control characters (C0, DEL, C1 — escape sequences, NULs,
    /// carriage returns) written as `\xNN`/`\n`/`\t`/`\r`/`\u{…}`, runs of more than
    /// ``maxRunLength`` non-space characters cut to an excerpt, and at most ``maxTextLength``
    /// characters in all.
    public static func terminalSafe(_ text: String) -> String {
        let scalars = text.unicodeScalars
        var out = ""
        var shown = 0            // characters appended to `out`, roughly
        var left = 0             // scalars not shown because the text was too long
        var start = scalars.startIndex
        while start <= scalars.endIndex {
            let end = scalars[start...].firstIndex(of: " ") ?? scalars.endIndex
            if shown > maxTextLength {
                left += scalars.distance(from: start, to: end) + (end < scalars.endIndex ? 1 : 0)
            } else {
                let run = Substring(scalars[start..<end])
                let length = scalars.distance(from: start, to: end)
                let piece: String
                if length <= maxRunLength {
                    piece = escapeControls(run)
                } else {
                    // Keep the start and the last few characters (often a closing quote).
                    let head = Substring(run.unicodeScalars.prefix(maxRunLength - 16))
                    let tail = Substring(run.unicodeScalars.suffix(8))
                    piece = escapeControls(head) + "…(\(length - maxRunLength + 8) more)…" + escapeControls(tail)
                }
                out += piece
                shown += piece.unicodeScalars.count
                if end < scalars.endIndex { out += " "; shown += 1 }
            }
            guard end < scalars.endIndex else { break }
            start = scalars.index(after: end)
        }
        if left > 0 { out += "…(\(left) more characters left out)" }
        return out
    }

    static func escapeControls(_ text: Substring) -> String {
        var escaped = ""
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x0A: escaped += "\\n"
            case 0x09: escaped += "\\t"
            case 0x0D: escaped += "\\r"
            case 0x00..<0x20, 0x7F:
                let hex = String(scalar.value, radix: 16)
                escaped += "\\x" + (hex.count == 1 ? "0" : "") + hex
            case 0x80..<0xA0, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
                // C1 controls and bidirectional overrides (they reorder what the terminal shows).
                escaped += "\\u{" + String(scalar.value, radix: 16) + "}"
            default:
                escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// This diagnostic with every text field made ``terminalSafe(_:)`` (what the renderer prints).
    public var terminalSafe: Diagnostic {
        var d = self
        d.message = Self.terminalSafe(message)
        d.file = file.map(Self.terminalSafe)
        d.hint = hint.map(Self.terminalSafe)
        return d
    }
}
