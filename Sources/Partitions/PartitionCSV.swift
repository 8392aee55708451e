import ESPCore

/// ESP-IDF partition CSV input: `Name, Type, SubType, Offset, Size, Flags` per line, `#`
/// comments, blank lines, missing trailing fields, keywords or numbers for types, `K`/`M` sizes,
/// empty offsets placed automatically, negative sizes meaning "ends at", `$VAR` expansion.
extension PartitionTable {
    /// Parses and places a CSV table (no validation yet; see ``validate(options:)``).
    public static func parse(csv text: String, options: PartitionTableOptions = .init())
        throws(PartitionTableError) -> (table: PartitionTable, warnings: [PartitionWarning]) {
        var rows: [Row] = []
        var warnings: [PartitionWarning] = []
        var body = Substring(text)
        if body.hasPrefix("\u{FEFF}") { body = body.dropFirst() }
        for (index, rawLine) in TextLines.split(body).enumerated() {
            let lineNo = index + 1
            let trimmed = rawLine.trimmingCharacters()
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let fields = try splitFields(rawLine, line: lineNo, environment: options.environment)
            if let extra = fields.dropFirst(6).first(where: { !$0.text.isEmpty }) {
                warnings.append(PartitionWarning(.extraFields, "text after the Flags field is ignored: '\(extra.text)'",
                                                 source: .csv(line: lineNo)))
            }
            rows.append(try parseRow(fields, line: lineNo, options: options))
        }
        return (try place(rows, options: options), warnings)
    }

    struct Field {
        var text: String
        var column: Int
    }

    struct Row {
        var name: String
        var type: UInt8
        var subtype: UInt8
        var offset: Int?
        var size: Int
        var flags: UInt32
        var line: Int
        var offsetColumn: Int
        var sizeColumn: Int
    }

    /// Comma-separated fields, trimmed, each with the 1-based column where its text starts,
    /// padded to six fields.
    static func splitFields(_ line: Substring, line lineNo: Int, environment: [String: String])
        throws(PartitionTableError) -> [Field] {
        var fields: [Field] = []
        var column = 1
        for part in line.split(separator: ",", omittingEmptySubsequences: false) {
            let leading = part.prefix { $0 == " " || $0 == "\t" }.count
            let start = column + leading
            let expanded = try expand(String(part), line: lineNo, column: column, environment: environment)
            fields.append(Field(text: expanded.trimmingCharacters(), column: start))
            column += part.count + 1
        }
        // Missing fields are reported at the end of the line.
        while fields.count < 6 { fields.append(Field(text: "", column: column - 1)) }
        return fields
    }

    /// `$NAME` and `${NAME}` from `environment`; an unknown name is an error.
    static func expand(_ text: String, line: Int, column: Int, environment: [String: String])
        throws(PartitionTableError) -> String {
        guard text.contains("$") else { return text }
        let chars = Array(text)
        var out = ""
        var i = 0
        func isNameChar(_ c: Character, first: Bool) -> Bool {
            c.isASCII && (c.isLetter || c == "_" || (!first && c.isNumber))
        }
        while i < chars.count {
            guard chars[i] == "$", i + 1 < chars.count else { out.append(chars[i]); i += 1; continue }
            var j = i + 1
            let braced = chars[j] == "{"
            if braced { j += 1 }
            let nameStart = j
            while j < chars.count, isNameChar(chars[j], first: j == nameStart) { j += 1 }
            let name = String(chars[nameStart..<j])
            if name.isEmpty || (braced && (j >= chars.count || chars[j] != "}")) {
                out.append(chars[i]); i += 1; continue
            }
            guard let value = environment[name] else { throw .unknownVariable(name, line: line, column: column + i) }
            out += value
            i = braced ? j + 1 : j
        }
        return out
    }

    static func parseRow(_ f: [Field], line: Int, options: PartitionTableOptions) throws(PartitionTableError) -> Row {
        let name = f[0].text
        guard name.utf8.count <= 16 else { throw .nameTooLong(name, line: line, column: f[0].column) }

        // Type
        let typeField = f[1]
        guard !typeField.text.isEmpty else { throw .emptyField(field: "type", line: line, column: typeField.column) }
        let typeValue: Int
        if let n = CSVInteger.parse(typeField.text) {
            typeValue = n
        } else if let k = PartitionKeywords.lookup(typeField.text, in: PartitionKeywords.types) {
            typeValue = Int(k)
        } else {
            throw .unknownKeyword(field: "type", text: typeField.text, known: PartitionKeywords.types.map(\.name),
                                  line: line, column: typeField.column)
        }
        guard (0...0xFF).contains(typeValue) else {
            throw .valueOutOfRange(field: "type", value: typeValue, max: 0xFF, line: line, column: typeField.column)
        }
        let type = UInt8(typeValue)

        // Subtype
        let subField = f[2]
        let subtype: UInt8
        if subField.text.isEmpty {
            guard type != PartitionEntry.Kind.app else { throw .emptyAppSubtype(line: line, column: subField.column) }
            subtype = PartitionEntry.DataSubtype.undefined
        } else {
            let known = PartitionKeywords.subtypes(forType: type)
            let value: Int
            if let n = CSVInteger.parse(subField.text) {
                value = n
            } else if let k = PartitionKeywords.lookup(subField.text, in: known) {
                value = Int(k)
            } else {
                throw .unknownKeyword(field: "subtype", text: subField.text, known: known.map(\.name),
                                      line: line, column: subField.column)
            }
            guard (0...0xFF).contains(value) else {
                throw .valueOutOfRange(field: "subtype", value: value, max: 0xFF, line: line, column: subField.column)
            }
            subtype = UInt8(value)
        }

        // Offset and size. The primary bootloader, the recovery bootloader and the partition table
        // entries take their offsets from the layout, whatever the CSV says (`N/A` is usual), and
        // every bootloader entry is as large as the gap between the primary bootloader and the
        // table (as gen_esp32part 1.4+, ESP-IDF v5.5+, does).
        let bootloaderOffset = options.chip.bootloaderOffset
        var offset: Int?
        var size: Int?
        if type == PartitionEntry.Kind.bootloader, subtype == PartitionEntry.BootloaderSubtype.primary {
            offset = bootloaderOffset
        } else if type == PartitionEntry.Kind.bootloader, subtype == PartitionEntry.BootloaderSubtype.recovery {
            guard let recovery = options.recoveryBootloaderOffset else {
                throw .recoveryBootloaderOffsetMissing(name: name, line: line, column: f[3].column)
            }
            offset = recovery
        } else if type == PartitionEntry.Kind.partitionTable, subtype == 0 {
            offset = options.tableOffset
        } else if !f[3].text.isEmpty {
            guard let n = CSVInteger.parse(f[3].text) else {
                throw .invalidNumber(field: "offset", text: f[3].text, line: line, column: f[3].column)
            }
            guard (0...Int(UInt32.max)).contains(n) else {
                throw .valueOutOfRange(field: "offset", value: n, max: Int(UInt32.max), line: line, column: f[3].column)
            }
            offset = n
        }
        if type == PartitionEntry.Kind.bootloader {
            size = options.tableOffset - bootloaderOffset
        } else if type == PartitionEntry.Kind.partitionTable {
            size = sectorSize
        } else if !f[4].text.isEmpty {
            guard let n = CSVInteger.parse(f[4].text) else {
                throw .invalidNumber(field: "size", text: f[4].text, line: line, column: f[4].column)
            }
            guard n <= Int(UInt32.max), n >= -Int(UInt32.max) else {
                throw .valueOutOfRange(field: "size", value: n, max: Int(UInt32.max), line: line, column: f[4].column)
            }
            size = n
        }
        guard let size else { throw .emptyField(field: "size", line: line, column: f[4].column) }

        // Flags
        var flags: UInt32 = 0
        var flagColumn = f[5].column
        for part in f[5].text.split(separator: ":", omittingEmptySubsequences: false) {
            let word = String(part).trimmingCharacters()
            switch word {
            case "encrypted": flags |= PartitionEntry.flagEncrypted
            case "readonly": flags |= PartitionEntry.flagReadOnly
            case "": break
            default: throw .unknownFlag(word, line: line, column: flagColumn)
            }
            flagColumn += part.count + 1
        }
        return Row(name: name, type: type, subtype: subtype, offset: offset, size: size, flags: flags,
                   line: line, offsetColumn: f[3].column, sizeColumn: f[4].column)
    }

    /// Fills in empty offsets: a running pointer starts after the table sector; each entry
    /// without an offset goes at the pointer rounded up to its type's alignment; the pointer
    /// then moves to the entry's end. An explicit offset before the pointer is an error.
    static func place(_ rows: [Row], options: PartitionTableOptions) throws(PartitionTableError) -> PartitionTable {
        var entries: [PartitionEntry] = []
        var sources: [PartitionSource] = []
        var lastEnd = options.firstFreeOffset
        for (index, row) in rows.enumerated() {
            var offset = row.offset ?? 0
            var size = row.size
            let entryForAlignment = PartitionEntry(name: row.name, type: row.type, subtype: row.subtype, offset: 0, size: 0)
            if !entryForAlignment.isPrimaryBootloaderOrTable {
                if let explicit = row.offset {
                    if explicit < lastEnd {
                        throw .offsetBeforePrevious(name: row.name, offset: explicit, previousEnd: lastEnd,
                                                    firstEntry: index == 0, line: row.line, column: row.offsetColumn)
                    }
                } else {
                    let align = entryForAlignment.requiredOffsetAlignment
                    offset = (lastEnd + align - 1) / align * align
                }
                if size < 0 {
                    let endAddress = -size
                    guard endAddress > offset else {
                        throw .negativeSizeBeforeOffset(name: row.name, end: endAddress, offset: offset,
                                                        line: row.line, column: row.sizeColumn)
                    }
                    size = endAddress - offset
                }
                lastEnd = offset + size
            }
            guard offset <= Int(UInt32.max) else {
                throw .valueOutOfRange(field: "offset", value: offset, max: Int(UInt32.max), line: row.line, column: row.offsetColumn)
            }
            guard (0...Int(UInt32.max)).contains(size) else {
                throw .valueOutOfRange(field: "size", value: size, max: Int(UInt32.max), line: row.line, column: row.sizeColumn)
            }
            entries.append(PartitionEntry(name: row.name, type: row.type, subtype: row.subtype,
                                          offset: UInt32(offset), size: UInt32(size), flags: row.flags))
            sources.append(.csv(line: row.line))
        }
        return PartitionTable(entries: entries, sources: sources)
    }
}

extension StringProtocol {
    /// Without the white space Python's `str.strip()` removes (gen_esp32part strips lines and
    /// fields with it): Unicode white space plus the separators U+001C…U+001F, which Python
    /// counts as space and Swift's `isWhitespace` does not (found by PartitionCSVDifferentialTests).
    func trimmingCharacters() -> String {
        func space(_ c: Character) -> Bool {
            c.isWhitespace || c.unicodeScalars.allSatisfy { (0x1C...0x1F).contains($0.value) }
        }
        var s = Substring(self)
        while let f = s.first, space(f) { s = s.dropFirst() }
        while let l = s.last, space(l) { s = s.dropLast() }
        return String(s)
    }
}
