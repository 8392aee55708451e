/// Names of partition types and subtypes as ESP-IDF's CSV format spells them, and the integer
/// syntax its fields accept. Facts: ../shared/spec/partitions-nvs.md §1–2.
public enum PartitionKeywords {
    /// Type keywords in the order ESP-IDF looks them up (the first match wins when rendering).
    public static let types: [(name: String, value: UInt8)] = [
        ("bootloader", PartitionEntry.Kind.bootloader),
        ("partition_table", PartitionEntry.Kind.partitionTable),
        ("app", PartitionEntry.Kind.app),
        ("data", PartitionEntry.Kind.data),
    ]

    static let appSubtypes: [(name: String, value: UInt8)] = {
        var list: [(String, UInt8)] = [("factory", 0x00), ("test", 0x20)]
        for slot in 0..<16 { list.append(("ota_\(slot)", 0x10 + UInt8(slot))) }
        for slot in 0..<2 { list.append(("tee_\(slot)", 0x30 + UInt8(slot))) }
        return list
    }()

    static let dataSubtypes: [(name: String, value: UInt8)] = [
        ("ota", 0x00), ("phy", 0x01), ("nvs", 0x02), ("coredump", 0x03), ("nvs_keys", 0x04),
        ("efuse", 0x05), ("undefined", 0x06), ("esphttpd", 0x80), ("fat", 0x81), ("spiffs", 0x82),
        ("littlefs", 0x83), ("tee_ota", 0x90),
    ]

    static let bootloaderSubtypes: [(name: String, value: UInt8)] = [
        ("primary", 0x00), ("ota", 0x01), ("recovery", 0x02),
    ]

    static let tableSubtypes: [(name: String, value: UInt8)] = [("primary", 0x00), ("ota", 0x01)]

    /// Subtype keywords valid for `type` (empty for custom types, whose subtypes are numeric).
    public static func subtypes(forType type: UInt8) -> [(name: String, value: UInt8)] {
        switch type {
        case PartitionEntry.Kind.app: return appSubtypes
        case PartitionEntry.Kind.data: return dataSubtypes
        case PartitionEntry.Kind.bootloader: return bootloaderSubtypes
        case PartitionEntry.Kind.partitionTable: return tableSubtypes
        default: return []
        }
    }

    /// `app`, `data`, … or nil for a custom type.
    public static func typeName(_ type: UInt8) -> String? {
        types.first { $0.value == type }?.name
    }

    /// `nvs`, `ota_0`, … or nil when the subtype has no keyword under `type`.
    public static func subtypeName(type: UInt8, subtype: UInt8) -> String? {
        subtypes(forType: type).first { $0.value == subtype }?.name
    }

    /// The CSV rendering of a type: its keyword, else decimal (as gen_esp32part prints it).
    public static func typeText(_ type: UInt8) -> String { typeName(type) ?? String(type) }

    /// The CSV rendering of a subtype: its keyword, else decimal.
    public static func subtypeText(type: UInt8, subtype: UInt8) -> String {
        subtypeName(type: type, subtype: subtype) ?? String(subtype)
    }

    static func lookup(_ text: String, in list: [(name: String, value: UInt8)]) -> UInt8? {
        let key = text.lowercased()
        return list.first { $0.name == key }?.value
    }

    /// Every type and subtype keyword (for the "name looks like a keyword" warning).
    static var allSubtypeNames: Set<String> {
        Set((appSubtypes + dataSubtypes + bootloaderSubtypes + tableSubtypes).map(\.name))
    }
}

/// Integers as gen_esp32part's CSV fields accept them: Python `int(text, 0)` syntax (decimal
/// without leading zeros, `0x`/`0o`/`0b` prefixes, `_` between digits, optional sign), optionally
/// followed by one or more `k`/`m` suffixes (×1024, ×1024², case-insensitive).
public enum CSVInteger {
    public static func parse(_ text: String) -> Int? {
        let lower = text.lowercased()
        if lower.hasSuffix("k") || lower.hasSuffix("m") {
            let factor = lower.hasSuffix("k") ? 1024 : 1024 * 1024
            guard let base = parse(String(text.dropLast())) else { return nil }
            let (product, overflow) = base.multipliedReportingOverflow(by: factor)
            return overflow ? nil : product
        }
        return pythonInt(lower)
    }

    /// Python `int(text, 0)` on already lower-cased text.
    static func pythonInt(_ text: String) -> Int? {
        var s = Substring(text)
        var negative = false
        if s.hasPrefix("-") { negative = true; s = s.dropFirst() } else if s.hasPrefix("+") { s = s.dropFirst() }
        var radix = 10
        if s.hasPrefix("0x") { radix = 16; s = s.dropFirst(2) }
        else if s.hasPrefix("0o") { radix = 8; s = s.dropFirst(2) }
        else if s.hasPrefix("0b") { radix = 2; s = s.dropFirst(2) }
        if radix != 10, s.hasPrefix("_") { s = s.dropFirst() } // Python allows 0x_1F
        guard !s.isEmpty, !s.hasPrefix("_"), !s.hasSuffix("_"), !s.contains("__") else { return nil }
        let digits = s.filter { $0 != "_" }
        // Decimal numbers may not have leading zeros (except zero itself).
        if radix == 10, digits.count > 1, digits.first == "0", digits.contains(where: { $0 != "0" }) { return nil }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }),
              let magnitude = Int(digits, radix: radix) else { return nil }
        return negative ? -magnitude : magnitude
    }
}
