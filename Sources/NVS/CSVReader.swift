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
        // Universal newlines: \r\n and \r become \n. Work on UTF-8 bytes: every structural
        // character is ASCII; columns count Unicode scalars (UTF-8 lead bytes).
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var previousCR = false
        for c in text.utf8 {
            if c == 0x0D { bytes.append(0x0A); previousCR = true; continue }
            if c == 0x0A && previousCR { previousCR = false; continue }
            previousCR = false
            bytes.append(c)
        }
        var i = 0
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { i = 3 }

        let quote: UInt8 = 0x22, comma: UInt8 = 0x2C, newline: UInt8 = 0x0A, hash: UInt8 = 0x23
        enum State { case startField, inField, inQuoted, quoteInQuoted }
        var records: [CSVRecord] = []
        var state = State.startField
        var fields: [CSVRecord.Field] = []
        var field: [UInt8] = []
        var fieldColumn = 1
        var recordLine = 1
        var line = 1
        var column = 1
        var atLineStart = true
        var inRecord = false

        func endField() {
            fields.append(.init(text: String(decoding: field, as: UTF8.self), column: fieldColumn))
            field.removeAll(keepingCapacity: true)
        }
        func endRecord() {
            records.append(CSVRecord(line: recordLine, fields: fields, endColumn: column))
            fields = []
            inRecord = false
            state = .startField
        }
        while i < bytes.count {
            // Drop comment lines (physical lines starting with '#').
            if atLineStart && bytes[i] == hash {
                while i < bytes.count && bytes[i] != newline { i += 1 }
                i += 1
                line += 1
                column = 1
                continue
            }
            atLineStart = false
            let c = bytes[i]
            if !inRecord { inRecord = true; recordLine = line; fields = []; fieldColumn = column; state = .startField }
            switch state {
            case .startField:
                fieldColumn = column
                if c == quote { state = .inQuoted }
                else if c == comma { endField() }
                else if c == newline {
                    // A blank line yields no fields; otherwise the last (empty) field ends here.
                    if !fields.isEmpty { endField() }
                    endRecord()
                } else { field.append(c); state = .inField }
            case .inField:
                if c == comma { endField(); state = .startField }
                else if c == newline { endField(); endRecord() }
                else { field.append(c) }
            case .inQuoted:
                if c == quote { state = .quoteInQuoted } else { field.append(c) }
            case .quoteInQuoted:
                if c == quote { field.append(c); state = .inQuoted }
                else if c == comma { endField(); state = .startField }
                else if c == newline { endField(); endRecord() }
                else { field.append(c); state = .inField }
            }
            if c == newline { line += 1; column = 1; atLineStart = true }
            else if c & 0xC0 != 0x80 { column += 1 }
            i += 1
        }
        if inRecord {
            if state == .startField { fieldColumn = column }
            if state != .startField || !fields.isEmpty || !field.isEmpty { endField() }
            if !fields.isEmpty { records.append(CSVRecord(line: recordLine, fields: fields, endColumn: column)) }
        }
        return records.filter { !$0.fields.isEmpty }
    }
}
