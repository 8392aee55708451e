import ESPCore

/// A strict subset of TOML, enough for `espforge.toml`: tables (`[a]`, `[a.b]`), arrays of tables
/// (`[[a]]`), bare/quoted/dotted keys, basic and literal strings (single line), integers (decimal,
/// `0x`, `0o`, `0b`, `_` separators), booleans, arrays and inline tables. Floats, dates and
/// multi-line strings are rejected with a clear error. Every value remembers its line and column.
public struct TOMLPosition: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) { self.line = line; self.column = column }
    public var description: String { "line \(line), column \(column)" }
}

public indirect enum TOMLValue: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case boolean(Bool)
    case array([TOMLNode])
    case table(TOMLTable)

    public var typeName: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .boolean: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }
}

/// A value and where it starts.
public struct TOMLNode: Sendable, Equatable {
    public var value: TOMLValue
    public var position: TOMLPosition
    public init(_ value: TOMLValue, at position: TOMLPosition) { self.value = value; self.position = position }
}

/// A table keeping its keys in file order.
public struct TOMLTable: Sendable, Equatable {
    public private(set) var keys: [String] = []
    private var values: [String: TOMLNode] = [:]
    private var keyPositions: [String: TOMLPosition] = [:]
    /// Where the table was opened (its header, or the start of the file).
    public var position: TOMLPosition
    /// Set for tables created by a `[header]` (they may not be opened again).
    var explicitlyDefined = false
    /// Set for inline tables and arrays of tables' elements under construction: frozen after use.
    var inline = false

    public init(position: TOMLPosition = TOMLPosition(line: 1, column: 1)) { self.position = position }

    public subscript(key: String) -> TOMLNode? { values[key] }

    /// Where `key` is written (its key, or its table header), when known.
    public func keyPosition(_ key: String) -> TOMLPosition? { keyPositions[key] ?? values[key]?.position }

    mutating func set(_ key: String, _ node: TOMLNode, keyAt: TOMLPosition? = nil) {
        if values[key] == nil { keys.append(key) }
        values[key] = node
        if let keyAt, keyPositions[key] == nil { keyPositions[key] = keyAt }
    }
}

public struct TOMLError: Error, DiagnosticConvertible, Equatable {
    public var message: String
    public var position: TOMLPosition
    public var hint: String?
    public init(_ message: String, at position: TOMLPosition, hint: String? = nil) {
        self.message = message; self.position = position; self.hint = hint
    }
    public var diagnostic: Diagnostic {
        Diagnostic(message, line: position.line, column: position.column, hint: hint)
    }
}

public enum TOML {
    /// Deepest nesting accepted: table and dotted-key levels plus arrays and inline tables. A
    /// manifest needs four or five; the limit keeps the recursive parser (and the values it
    /// builds) far from the stack's end on hostile input such as 20,000 `[`.
    public static let maxDepth = 32

    /// Parses TOML text (bytes must be UTF-8).
    public static func parse(_ bytes: [UInt8]) throws(TOMLError) -> TOMLTable {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            var p = TOMLParser(bytes)
            p.index = firstInvalidUTF8(bytes)
            throw TOMLError("the file is not valid UTF-8 text", at: p.position)
        }
        var parser = TOMLParser(bytes)
        return try parser.document()
    }

    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        try parse(Array(text.utf8))
    }

    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0
        loop: while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s): offset += UTF8.width(s)
            case .emptyInput: break loop
            case .error: return offset
            }
        }
        return offset
    }
}

struct TOMLParser {
    let bytes: [UInt8]
    var index = 0
    /// Tables, dotted-key parts, arrays and inline tables enclosing the current position.
    var depth = 0
    /// Offsets where each line starts, for line/column lookups in O(log n).
    let lineStarts: [Int]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == 0x0A { starts.append(i + 1) }
        lineStarts = starts
    }

    var position: TOMLPosition { positionOf(index) }

    func positionOf(_ offset: Int) -> TOMLPosition {
        let end = max(0, min(offset, bytes.count))
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= end { lo = mid } else { hi = mid - 1 }
        }
        // Columns count characters (UTF-8 lead bytes), not bytes.
        var column = 1
        var i = lineStarts[lo]
        while i < end {
            if bytes[i] & 0xC0 != 0x80 { column += 1 }
            i += 1
        }
        return TOMLPosition(line: lo + 1, column: column)
    }

    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }
    func peek(_ ahead: Int) -> UInt8? { index + ahead < bytes.count ? bytes[index + ahead] : nil }

    func error(_ message: String, hint: String? = nil) -> TOMLError {
        TOMLError(message, at: position, hint: hint)
    }

    static func describe(_ b: UInt8?) -> String {
        guard let b else { return "end of file" }
        switch b {
        case 0x0A: return "end of line"
        case 0x20...0x7E: return "`\(Character(Unicode.Scalar(b)))`"
        default: return "byte 0x\(String(b, radix: 16))"
        }
    }

    mutating func skipSpaces() {
        while let c = peek, c == 0x20 || c == 0x09 { index += 1 }
    }

    /// Skips spaces and a comment; then requires end of line or end of file.
    mutating func endOfLine() throws(TOMLError) {
        skipSpaces()
        if peek == UInt8(ascii: "#") { try comment() }
        if peek == 0x0D && peek(1) == 0x0A { index += 1 }
        guard let c = peek else { return }
        guard c == 0x0A else {
            throw error("unexpected \(Self.describe(c)) after the value", hint: "put one key = value per line; start comments with #")
        }
        index += 1
    }

    mutating func comment() throws(TOMLError) {
        while let c = peek, c != 0x0A {
            if c == 0x0D && peek(1) == 0x0A { return }
            if (c < 0x20 && c != 0x09) || c == 0x7F { throw error("control character in a comment") }
            index += 1
        }
    }

    /// Skips blank lines, spaces, comments and newlines (inside arrays).
    mutating func skipWhitespaceAndComments() throws(TOMLError) {
        while let c = peek {
            if c == 0x20 || c == 0x09 || c == 0x0A { index += 1 }
            else if c == 0x0D && peek(1) == 0x0A { index += 2 }
            else if c == UInt8(ascii: "#") { try comment() }
            else { return }
        }
    }

    // MARK: Document

    mutating func document() throws(TOMLError) -> TOMLTable {
        var root = TOMLTable()
        var current: [String] = []   // path of the table being filled
        while true {
            try skipWhitespaceAndComments()
            guard let c = peek else { break }
            if c == UInt8(ascii: "[") {
                let headerStart = position
                let isArray = peek(1) == UInt8(ascii: "[")
                index += isArray ? 2 : 1
                skipSpaces()
                let path = try keyPath()
                skipSpaces()
                guard peek == UInt8(ascii: "]") else {
                    throw error("expected `]` to close the table header, found \(Self.describe(peek))")
                }
                index += 1
                if isArray {
                    guard peek == UInt8(ascii: "]") else { throw error("expected `]]` to close the array-of-tables header") }
                    index += 1
                }
                try endOfLine()
                if isArray {
                    try Self.appendArrayTable(&root, path: path.map(\.0), at: headerStart, keyPositions: path.map(\.1))
                } else {
                    try Self.defineTable(&root, path: path.map(\.0), at: headerStart, keyPositions: path.map(\.1))
                }
                current = path.map(\.0)
                continue
            }
            // key = value
            depth = current.count
            let path = try keyPath()
            depth = 0
            skipSpaces()
            guard peek == UInt8(ascii: "=") else {
                throw error("expected `=` after the key, found \(Self.describe(peek))", hint: "write `key = value`")
            }
            index += 1
            skipSpaces()
            depth = 0
            try enterNesting(levels: current.count + path.count)
            let node = try value()
            depth = 0
            try endOfLine()
            try Self.assign(&root, tablePath: current, keyPath: path, node: node)
        }
        return root
    }

    // MARK: Keys

    mutating func keyPath() throws(TOMLError) -> [(String, TOMLPosition)] {
        var parts: [(String, TOMLPosition)] = []
        while true {
            skipSpaces()
            let at = position
            parts.append((try simpleKey(), at))
            if depth + parts.count > TOML.maxDepth {
                throw TOMLError("nesting is deeper than \(TOML.maxDepth) levels (tables, dotted keys, arrays and inline tables together)",
                                at: at, hint: "a manifest needs only a few levels; look for unbalanced [ or { and long dotted keys")
            }
            skipSpaces()
            if peek == UInt8(ascii: ".") { index += 1; continue }
            return parts
        }
    }

    mutating func simpleKey() throws(TOMLError) -> String {
        guard let c = peek else { throw error("expected a key, found end of file") }
        if c == UInt8(ascii: "\"") { return try basicString() }
        if c == UInt8(ascii: "'") { return try literalString() }
        let start = index
        while let c = peek, Self.isBareKeyByte(c) { index += 1 }
        guard index > start else {
            throw error("expected a key, found \(Self.describe(peek))",
                        hint: "keys are letters, digits, `_` and `-`, or a quoted string")
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    static func isBareKeyByte(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
            || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }

    // MARK: Values

    mutating func value() throws(TOMLError) -> TOMLNode {
        let at = position
        guard let c = peek else { throw error("expected a value, found end of file") }
        switch c {
        case UInt8(ascii: "\""):
            if peek(1) == UInt8(ascii: "\"") && peek(2) == UInt8(ascii: "\"") {
                throw error("multi-line strings are not supported", hint: "use a single-line \"string\"")
            }
            return TOMLNode(.string(try basicString()), at: at)
        case UInt8(ascii: "'"):
            if peek(1) == UInt8(ascii: "'") && peek(2) == UInt8(ascii: "'") {
                throw error("multi-line strings are not supported", hint: "use a single-line 'string'")
            }
            return TOMLNode(.string(try literalString()), at: at)
        case UInt8(ascii: "["):
            try enterNesting()
            defer { depth -= 1 }
            return TOMLNode(.array(try array()), at: at)
        case UInt8(ascii: "{"):
            try enterNesting()
            defer { depth -= 1 }
            return TOMLNode(.table(try inlineTable()), at: at)
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if matches("true") { index += 4; return TOMLNode(.boolean(true), at: at) }
            if matches("false") { index += 5; return TOMLNode(.boolean(false), at: at) }
            throw error("expected a value, found \(Self.describe(c))", hint: "strings need quotes: \"...\"")
        case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return TOMLNode(.integer(try integer()), at: at)
        default:
            throw error("expected a value, found \(Self.describe(c))",
                        hint: "values are \"strings\", integers, true/false, [arrays] or { inline tables }")
        }
    }

    /// One level deeper, or the nesting error (at the bracket that went too deep).
    mutating func enterNesting(levels: Int = 1) throws(TOMLError) {
        guard depth + levels <= TOML.maxDepth else {
            throw error("nesting is deeper than \(TOML.maxDepth) levels (tables, dotted keys, arrays and inline tables together)",
                        hint: "a manifest needs only a few levels; look for unbalanced [ or {")
        }
        depth += levels
    }

    func matches(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard index + w.count <= bytes.count, Array(bytes[index..<index + w.count]) == w else { return false }
        if let next = index + w.count < bytes.count ? bytes[index + w.count] : nil, Self.isBareKeyByte(next) { return false }
        return true
    }

    mutating func integer() throws(TOMLError) -> Int {
        let start = index
        let startPos = position
        while let c = peek, Self.isBareKeyByte(c) || c == UInt8(ascii: "+") || c == UInt8(ascii: ".")
                || c == UInt8(ascii: ":") {
            index += 1
        }
        let raw = String(decoding: bytes[start..<index], as: UTF8.self)
        func bad(_ why: String, _ hint: String? = nil) -> TOMLError { TOMLError(why, at: startPos, hint: hint) }
        if raw.contains(".") || raw.lowercased().hasSuffix("inf") || raw.lowercased().hasSuffix("nan")
            || (raw.lowercased().contains("e") && !raw.lowercased().hasPrefix("0x")) {
            throw bad("floating-point numbers are not supported: `\(raw)`", "use an integer")
        }
        if raw.contains(":") || raw.filter({ $0 == "-" }).count > 1 {
            throw bad("dates and times are not supported: `\(raw)`", "write it as a \"string\"")
        }
        var body = Substring(raw)
        var negative = false
        if body.hasPrefix("+") { body = body.dropFirst() } else if body.hasPrefix("-") { negative = true; body = body.dropFirst() }
        var radix = 10
        if body.hasPrefix("0x") { radix = 16; body = body.dropFirst(2) }
        else if body.hasPrefix("0o") { radix = 8; body = body.dropFirst(2) }
        else if body.hasPrefix("0b") { radix = 2; body = body.dropFirst(2) }
        if radix != 10 && (negative || raw.hasPrefix("+")) {
            throw bad("a sign is not allowed on hexadecimal, octal or binary integers: `\(raw)`")
        }
        if radix == 10 && body.count > 1 && body.hasPrefix("0") {
            throw bad("leading zeros are not allowed: `\(raw)`", "write 0x… for hexadecimal")
        }
        if body.isEmpty || body.hasPrefix("_") || body.hasSuffix("_") || body.contains("__") {
            throw bad("malformed integer `\(raw)`", "underscores must sit between digits")
        }
        let digits = body.filter { $0 != "_" }
        // Only digits after the one sign (UInt64's parser would take a second sign: `-+0`).
        guard digits.allSatisfy({ $0.isHexDigit }), let magnitude = UInt64(digits, radix: radix) else {
            throw bad("malformed or too large integer `\(raw)`")
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { throw bad("integer out of range: `\(raw)`") }
            return magnitude == UInt64(Int64.max) + 1 ? Int.min : -Int(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { throw bad("integer out of range: `\(raw)`") }
        return Int(magnitude)
    }

    mutating func basicString() throws(TOMLError) -> String {
        let start = position
        index += 1 // opening quote
        var out: [UInt8] = []
        while true {
            guard let c = peek, c != 0x0A, c != 0x0D else {
                throw TOMLError("unterminated string", at: start, hint: "close it with \" on the same line (strings end on the line they start)")
            }
            if c == UInt8(ascii: "\"") { index += 1; break }
            if (c < 0x20 && c != 0x09) || c == 0x7F { throw error("control character in a string", hint: "use an escape such as \\t") }
            if c == UInt8(ascii: "\\") {
                let escAt = position
                index += 1
                guard let e = peek else { throw TOMLError("unterminated string", at: start) }
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let n = e == UInt8(ascii: "u") ? 4 : 8
                    // Exactly n hex digits (UInt32(_:radix:) alone would also take a sign: \u+0e9).
                    guard index + n <= bytes.count,
                          bytes[index..<index + n].allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
                          let v = UInt32(String(decoding: bytes[index..<index + n], as: UTF8.self), radix: 16),
                          let scalar = Unicode.Scalar(v) else {
                        throw TOMLError("invalid \\\(Character(Unicode.Scalar(e))) escape", at: escAt,
                                        hint: "write \\uXXXX or \\UXXXXXXXX with a valid code point")
                    }
                    index += n
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw TOMLError("invalid escape \\\(Self.describe(e).trimmingCharacters("`"))", at: escAt,
                                    hint: "valid escapes: \\\" \\\\ \\n \\t \\r \\b \\f \\uXXXX; or use a 'literal string'")
                }
                continue
            }
            out.append(c)
            index += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    mutating func literalString() throws(TOMLError) -> String {
        let startPos = position
        index += 1
        let start = index
        while true {
            guard let c = peek, c != 0x0A, c != 0x0D else {
                throw TOMLError("unterminated string", at: startPos, hint: "close it with ' on the same line (strings end on the line they start)")
            }
            if c == UInt8(ascii: "'") { break }
            if (c < 0x20 && c != 0x09) || c == 0x7F { throw error("control character in a string") }
            index += 1
        }
        let s = String(decoding: bytes[start..<index], as: UTF8.self)
        index += 1
        return s
    }

    mutating func array() throws(TOMLError) -> [TOMLNode] {
        let start = position
        index += 1
        var items: [TOMLNode] = []
        while true {
            try skipWhitespaceAndComments()
            if peek == UInt8(ascii: "]") { index += 1; return items }
            guard peek != nil else { throw TOMLError("unterminated array", at: start, hint: "close it with ]") }
            items.append(try value())
            try skipWhitespaceAndComments()
            guard peek != nil else { throw TOMLError("unterminated array", at: start, hint: "close it with ]") }
            if peek == UInt8(ascii: ",") { index += 1; continue }
            if peek == UInt8(ascii: "]") { index += 1; return items }
            throw error("expected `,` or `]` in the array, found \(Self.describe(peek))")
        }
    }

    mutating func inlineTable() throws(TOMLError) -> TOMLTable {
        var table = TOMLTable(position: position)
        index += 1
        skipSpaces()
        if peek == UInt8(ascii: "}") { index += 1; table.inline = true; return table }
        while true {
            skipSpaces()
            let path = try keyPath()
            skipSpaces()
            guard peek == UInt8(ascii: "=") else { throw error("expected `=` after the key, found \(Self.describe(peek))") }
            index += 1
            skipSpaces()
            try enterNesting(levels: path.count)
            let node = try value()
            depth -= path.count
            try Self.assign(&table, tablePath: [], keyPath: path, node: node)
            skipSpaces()
            if peek == UInt8(ascii: ",") { index += 1; continue }
            if peek == UInt8(ascii: "}") { index += 1; table.inline = true; return table }
            throw error("expected `,` or `}` in the inline table, found \(Self.describe(peek))",
                        hint: "inline tables stay on one line, with no trailing comma")
        }
    }

    // MARK: Table structure

    /// Walks to the table at `path` (creating implicit tables), descending into the last element
    /// of arrays of tables, and applies `body` to it.
    static func withTable(_ table: inout TOMLTable, _ path: ArraySlice<String>, positions: ArraySlice<TOMLPosition>,
                          create: Bool, _ body: (inout TOMLTable) throws(TOMLError) -> Void) throws(TOMLError) {
        guard let key = path.first, let at = positions.first else { try body(&table); return }
        let restPath = path.dropFirst(), restPos = positions.dropFirst()
        if let existing = table[key] {
            switch existing.value {
            case .table(var sub):
                if sub.inline { throw TOMLError("`\(key)` is an inline table and cannot be extended", at: at) }
                try withTable(&sub, restPath, positions: restPos, create: create, body)
                table.set(key, TOMLNode(.table(sub), at: existing.position))
            case .array(var items):
                guard var last = items.last, case .table(var sub) = last.value, !sub.inline else {
                    throw TOMLError("`\(key)` is already defined as \(existing.value.typeName) at \(existing.position)", at: at)
                }
                try withTable(&sub, restPath, positions: restPos, create: create, body)
                last.value = .table(sub)
                items[items.count - 1] = last
                table.set(key, TOMLNode(.array(items), at: existing.position))
            default:
                throw TOMLError("`\(key)` is already defined as \(existing.value.typeName) at \(existing.position)", at: at)
            }
        } else {
            var sub = TOMLTable(position: at)
            try withTable(&sub, restPath, positions: restPos, create: create, body)
            table.set(key, TOMLNode(.table(sub), at: at))
        }
    }

    static func defineTable(_ root: inout TOMLTable, path: [String], at: TOMLPosition, keyPositions: [TOMLPosition]) throws(TOMLError) {
        guard let last = path.last, let lastAt = keyPositions.last else { return }
        try withTable(&root, path.dropLast()[...], positions: keyPositions.dropLast()[...], create: true) { (parent: inout TOMLTable) throws(TOMLError) in
            if let existing = parent[last] {
                guard case .table(var t) = existing.value else {
                    throw TOMLError("`\(path.joined(separator: "."))` is already defined as \(existing.value.typeName) at \(existing.position)", at: lastAt)
                }
                if t.explicitlyDefined || t.inline {
                    throw TOMLError("table [\(path.joined(separator: "."))] is defined twice (first at \(t.position))", at: at)
                }
                t.explicitlyDefined = true
                t.position = at
                parent.set(last, TOMLNode(.table(t), at: at))
            } else {
                var t = TOMLTable(position: at)
                t.explicitlyDefined = true
                parent.set(last, TOMLNode(.table(t), at: at))
            }
        }
    }

    static func appendArrayTable(_ root: inout TOMLTable, path: [String], at: TOMLPosition, keyPositions: [TOMLPosition]) throws(TOMLError) {
        guard let last = path.last, let lastAt = keyPositions.last else { return }
        try withTable(&root, path.dropLast()[...], positions: keyPositions.dropLast()[...], create: true) { (parent: inout TOMLTable) throws(TOMLError) in
            var element = TOMLTable(position: at)
            element.explicitlyDefined = true
            if let existing = parent[last] {
                guard case .array(var items) = existing.value, items.allSatisfy({ if case .table(let t) = $0.value { return !t.inline } else { return false } }),
                      !items.isEmpty else {
                    throw TOMLError("`\(path.joined(separator: "."))` is already defined as \(existing.value.typeName) at \(existing.position)", at: lastAt)
                }
                items.append(TOMLNode(.table(element), at: at))
                parent.set(last, TOMLNode(.array(items), at: existing.position))
            } else {
                element.position = at
                parent.set(last, TOMLNode(.array([TOMLNode(.table(element), at: at)]), at: at))
            }
        }
    }

    static func assign(_ root: inout TOMLTable, tablePath: [String], keyPath: [(String, TOMLPosition)], node: TOMLNode) throws(TOMLError) {
        let fullPath = tablePath + keyPath.map(\.0)
        let positions = tablePath.map { _ in node.position } + keyPath.map(\.1)
        guard let last = fullPath.last, let lastAt = positions.last else { return }
        // Dotted keys may create tables, but may not reopen tables defined by a header.
        try withTable(&root, fullPath.dropLast()[...], positions: positions.dropLast()[...], create: true) { (parent: inout TOMLTable) throws(TOMLError) in
            if let existing = parent[last] {
                throw TOMLError("key `\(keyPath.map(\.0).joined(separator: "."))` is defined twice (first at \(existing.position))", at: lastAt,
                                hint: "remove one of the two definitions")
            }
            parent.set(last, node, keyAt: lastAt)
        }
    }
}

extension String {
    func trimmingCharacters(_ c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s = s.dropFirst() }
        while s.last == c { s = s.dropLast() }
        return String(s)
    }
}
