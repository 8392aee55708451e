/// A CSV reader with the rules of Python's `csv` module (excel dialect, non-strict), keeping the
/// line and column of every field so errors can point at them.
///
/// Like nvs_partition_gen, physical lines whose first character is `#` are dropped before the CSV
/// is parsed, and records with no fields at all (blank lines) are skipped.
public struct CSVRecord: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public var text: String
        public var column: Int
    }
    /// 1-based line where the record starts.
    public var line: Int
    public var fields: [Field]
    /// Column just after the record's last character (for "missing field" errors).
    public var endColumn: Int
}

public enum CSVReader {
    public static func records(_ text: String) -> [CSVRecord] {
        var records: [CSVRecord] = []
        // Universal newlines: \r\n and \r become \n.
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(text.unicodeScalars.count)
        var previousCR = false
        for s in text.unicodeScalars {
            if s == "\r" { scalars.append("\n"); previousCR = true; continue }
            if s == "\n" && previousCR { previousCR = false; continue }
            previousCR = false
            scalars.append(s)
        }
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }

        enum State { case startField, inField, inQuoted, quoteInQuoted }
        var state = State.startField
        var fields: [CSVRecord.Field] = []
        var field = String.UnicodeScalarView()
        var fieldColumn = 1
        var recordLine = 1
        var line = 1
        var column = 1
        var atLineStart = true
        var inRecord = false

        func endField() {
            fields.append(.init(text: String(field), column: fieldColumn))
            field = String.UnicodeScalarView()
        }
        var i = 0
        while i < scalars.count {
            // Drop comment lines (physical lines starting with '#').
            if atLineStart && scalars[i] == "#" {
                while i < scalars.count && scalars[i] != "\n" { i += 1 }
                i += 1
                line += 1
                column = 1
                continue
            }
            atLineStart = false
            let c = scalars[i]
            if !inRecord { inRecord = true; recordLine = line; fields = []; fieldColumn = column; state = .startField }
            switch state {
            case .startField:
                fieldColumn = column
                if c == "\"" { state = .inQuoted }
                else if c == "," { endField(); fieldColumn = column + 1 }
                else if c == "\n" {
                    // A blank line yields no fields; otherwise the last (empty) field ends here.
                    if !fields.isEmpty { endField() }
                    records.append(CSVRecord(line: recordLine, fields: fields, endColumn: column))
                    inRecord = false
                } else { field.append(c); state = .inField }
            case .inField:
                if c == "," { endField(); state = .startField; fieldColumn = column + 1 }
                else if c == "\n" {
                    endField()
                    records.append(CSVRecord(line: recordLine, fields: fields, endColumn: column))
                    inRecord = false
                    state = .startField
                } else { field.append(c) }
            case .inQuoted:
                if c == "\"" { state = .quoteInQuoted } else { field.append(c) }
            case .quoteInQuoted:
                if c == "\"" { field.append(c); state = .inQuoted }
                else if c == "," { endField(); state = .startField; fieldColumn = column + 1 }
                else if c == "\n" {
                    endField()
                    records.append(CSVRecord(line: recordLine, fields: fields, endColumn: column))
                    inRecord = false
                    state = .startField
                } else { field.append(c); state = .inField }
            }
            if c == "\n" { line += 1; column = 1; atLineStart = true } else { column += 1 }
            i += 1
        }
        if inRecord {
            if state != .startField || !fields.isEmpty || !field.isEmpty { endField() }
            if !fields.isEmpty { records.append(CSVRecord(line: recordLine, fields: fields, endColumn: column)) }
        }
        return records.filter { !$0.fields.isEmpty }
    }
}
