import ESPCore

/// Where a partition entry came from: a CSV row or an entry of a binary table.
public enum PartitionSource: Sendable, Hashable {
    /// 1-based line of a CSV file.
    case csv(line: Int)
    /// 0-based entry index in a binary table (its bytes start at `index × 32`).
    case binary(index: Int)
    /// Built in code.
    case none

    func apply(to d: inout Diagnostic, column: Int? = nil) {
        switch self {
        case let .csv(line):
            d.line = line
            d.column = column
        case let .binary(index): d.offset = index * PartitionTable.entrySize
        case .none: break
        }
    }
}

/// Everything that makes a partition table unusable, with where it is and how to fix it.
public enum PartitionTableError: Error, Equatable, Sendable {
    // CSV syntax
    case invalidNumber(field: String, text: String, line: Int, column: Int)
    case unknownKeyword(field: String, text: String, known: [String], line: Int, column: Int)
    case emptyField(field: String, line: Int, column: Int)
    case emptyAppSubtype(line: Int, column: Int)
    case unknownFlag(String, line: Int, column: Int)
    case unknownVariable(String, line: Int, column: Int)
    case nameTooLong(String, line: Int, column: Int)
    case valueOutOfRange(field: String, value: Int, max: Int, line: Int, column: Int)
    case negativeSizeBeforeOffset(name: String, end: Int, offset: Int, line: Int, column: Int)
    /// An explicit offset lies before the end of the previous entry (CSV order must follow addresses).
    case offsetBeforePrevious(name: String, offset: Int, previousEnd: Int, firstEntry: Bool, line: Int, column: Int)
    /// A `bootloader, recovery` entry without `--recovery-bootloader-offset`.
    case recoveryBootloaderOffsetMissing(name: String, line: Int, column: Int)

    // Table layout
    case tableOffsetMisaligned(tableOffset: Int)
    case tableOverlapsBootloader(tableOffset: Int, bootloaderOffset: Int, chip: String)
    case bootloaderTooLarge(bootloaderOffset: Int, bootloaderSize: Int, tableOffset: Int)
    case tooLarge(entries: Int, bytes: Int, max: Int)
    case misalignedOffset(name: String, offset: Int, alignment: Int, source: PartitionSource)
    case misalignedSize(name: String, size: Int, alignment: Int, source: PartitionSource)
    case emptyPartition(name: String, source: PartitionSource)
    case duplicateName(String, sources: [PartitionSource])
    case belowTable(name: String, offset: Int, firstFree: Int, source: PartitionSource)
    case overlap(name: String, offset: Int, other: String, otherStart: Int, otherEnd: Int, source: PartitionSource)
    case pastFlashEnd(name: String, end: Int, flashSize: Int, source: PartitionSource)
    case multipleOtadata(subtype: String, sources: [PartitionSource])
    case otadataSize(name: String, size: Int, source: PartitionSource)
    case otaAppsWithoutOtadata(name: String, source: PartitionSource)
    case readOnlyNotAllowed(name: String, subtype: String, source: PartitionSource)
    case nvsTooSmallForReadWrite(name: String, size: Int, source: PartitionSource)

    // Binary input
    case truncatedEntry(offset: Int, length: Int)
    case badMagic(offset: Int, found: UInt16)
    case md5Mismatch(offset: Int, computed: String, stored: String)
    case invalidLabel(offset: Int)
}

extension PartitionTableError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        func hex(_ v: Int) -> String { "0x" + String(v, radix: 16) }
        func csv(_ message: String, _ line: Int, _ column: Int, hint: String? = nil) -> Diagnostic {
            Diagnostic(message, line: line, column: column, hint: hint)
        }
        func at(_ source: PartitionSource, _ message: String, hint: String? = nil) -> Diagnostic {
            var d = Diagnostic(message, hint: hint)
            source.apply(to: &d)
            return d
        }
        switch self {
        case let .invalidNumber(field, text, line, column):
            return csv("\(field) '\(text)' is not a number", line, column,
                       hint: "write decimal (4096), hex (0x1000) or a size with K/M (4K, 1M)")
        case let .unknownKeyword(field, text, known, line, column):
            let list = known.isEmpty ? "this type has no named subtypes; use a number" : "known: " + known.joined(separator: ", ")
            return csv("\(field) '\(text)' is not valid", line, column, hint: list)
        case let .emptyField(field, line, column):
            return csv("the \(field) field is empty", line, column,
                       hint: "each row is: Name, Type, SubType, Offset, Size, Flags")
        case let .emptyAppSubtype(line, column):
            return csv("an app partition needs a subtype", line, column, hint: "use factory, ota_0 … ota_15 or test")
        case let .unknownFlag(flag, line, column):
            return csv("unknown flag '\(flag)'", line, column,
                       hint: "flags are 'encrypted' and 'readonly', separated by ':'")
        case let .unknownVariable(name, line, column):
            return csv("unknown variable '$\(name)'", line, column, hint: "set it in the environment or write the value")
        case let .nameTooLong(name, line, column):
            return csv("name '\(name)' is \(name.utf8.count) bytes long; at most 16 fit", line, column,
                       hint: "shorten the name")
        case let .valueOutOfRange(field, value, max, line, column):
            return csv("\(field) \(value < 0 ? String(value) : hex(value)) is out of range (0…\(hex(max)))", line, column)
        case let .negativeSizeBeforeOffset(name, end, offset, line, column):
            return csv("partition '\(name)': negative size -\(hex(end)) means 'ends at \(hex(end))', but it starts at \(hex(offset))",
                       line, column)
        case let .offsetBeforePrevious(name, offset, previousEnd, firstEntry, line, column):
            if firstEntry {
                return csv("partition '\(name)' at \(hex(offset)) overlaps the partition table, which occupies the sector before \(hex(previousEnd))",
                           line, column, hint: "use offset \(hex(previousEnd)) or higher, or leave the offset empty")
            }
            return csv("partition '\(name)' at \(hex(offset)) overlaps the previous partition, which ends at \(hex(previousEnd))",
                       line, column, hint: "list partitions in address order, or leave the offset empty for automatic placement")
        case let .recoveryBootloaderOffsetMissing(name, line, column):
            return csv("partition '\(name)' is a recovery bootloader, but no recovery bootloader offset was given", line, column,
                       hint: "pass --recovery-bootloader-offset (ESP-IDF's CONFIG_BOOTLOADER_RECOVERY_OFFSET, the address the eFuse names)")
        case let .tableOffsetMisaligned(tableOffset):
            return Diagnostic("partition table offset \(hex(tableOffset)) is not a multiple of 0x1000",
                              hint: "the table occupies one 4 KiB flash sector; the default is 0x8000")
        case let .tableOverlapsBootloader(tableOffset, bootloaderOffset, chip):
            return Diagnostic("partition table offset \(hex(tableOffset)) leaves no room for the \(chip) bootloader at \(hex(bootloaderOffset))",
                              hint: "the table must start at least one sector after the bootloader offset (default 0x8000)")
        case let .bootloaderTooLarge(bootloaderOffset, bootloaderSize, tableOffset):
            return Diagnostic("the bootloader (\(hex(bootloaderSize)) bytes at \(hex(bootloaderOffset))) ends at \(hex(bootloaderOffset + bootloaderSize)), past the partition table at \(hex(tableOffset))",
                              hint: "move the partition table up (--offset, CONFIG_PARTITION_TABLE_OFFSET) or shrink the bootloader; Secure Boot and flash encryption make it larger")
        case let .tooLarge(entries, bytes, max):
            return Diagnostic("\(entries) partitions need \(bytes) bytes, but a table holds less than \(max)",
                              hint: "at most 95 entries fit (94 with the MD5 entry)")
        case let .misalignedOffset(name, offset, alignment, source):
            return at(source, "partition '\(name)' offset \(hex(offset)) is not aligned to \(hex(alignment))",
                      hint: alignment == 0x10000 ? "app partitions must start on a 64 KiB boundary"
                                                 : "partitions must start on a 4 KiB boundary")
        case let .misalignedSize(name, size, alignment, source):
            return at(source, "partition '\(name)' size \(hex(size)) is not a multiple of \(hex(alignment))")
        case let .emptyPartition(name, source):
            return at(source, "partition '\(name)' has size 0")
        case let .duplicateName(name, sources):
            var d = Diagnostic("partition name '\(name)' is used \(sources.count) times",
                               hint: "partition names must be unique" + Self.listLines(sources))
            sources.last?.apply(to: &d)
            return d
        case let .belowTable(name, offset, firstFree, source):
            return at(source, "partition '\(name)' at \(hex(offset)) lies below \(hex(firstFree)), inside the bootloader or partition table area",
                      hint: "partitions start after the partition table sector")
        case let .overlap(name, offset, other, otherStart, otherEnd, source):
            return at(source, "partition '\(name)' at \(hex(offset)) overlaps '\(other)' (\(hex(otherStart))–\(hex(otherEnd - 1)))")
        case let .pastFlashEnd(name, end, flashSize, source):
            return at(source, "partition '\(name)' ends at \(hex(end)), past the end of the \(flashSize >> 20) MB flash (\(hex(flashSize)))",
                      hint: "shrink or move it, or give the real flash size with --flash-size")
        case let .multipleOtadata(subtype, sources):
            var d = Diagnostic("found \(sources.count) data/\(subtype) partitions; only one is allowed" + Self.listLines(sources))
            sources.last?.apply(to: &d)
            return d
        case let .otadataSize(name, size, source):
            return at(source, "otadata partition '\(name)' has size \(hex(size)); it must be exactly 0x2000",
                      hint: "the OTA data partition holds two 4 KiB sectors")
        case let .otaAppsWithoutOtadata(name, source):
            return at(source, "OTA app partition '\(name)' but no otadata (data, ota) partition",
                      hint: "add: otadata, data, ota, , 0x2000")
        case let .readOnlyNotAllowed(name, subtype, source):
            return at(source, "partition '\(name)' (data/\(subtype)) is always written at run time and cannot be readonly")
        case let .nvsTooSmallForReadWrite(name, size, source):
            return at(source, "nvs partition '\(name)' of size \(hex(size)) must be flagged readonly",
                      hint: "a read/write NVS partition needs at least 0x3000 bytes")
        case let .truncatedEntry(offset, length):
            return Diagnostic("the table ends inside an entry (\(length) of 32 bytes)", offset: offset,
                              hint: "a partition table is a sequence of 32-byte entries")
        case let .badMagic(offset, found):
            return Diagnostic("entry has magic \(hex(Int(found))); expected 0x50aa (partition) or 0xebeb (MD5)", offset: offset,
                              hint: "this is not a partition table, or it is corrupted or encrypted")
        case let .md5Mismatch(offset, computed, stored):
            return Diagnostic("MD5 of the entries does not match: stored \(stored), computed \(computed)", offset: offset,
                              hint: "the table is corrupted; the bootloader will refuse it")
        case let .invalidLabel(offset):
            return Diagnostic("partition label is not valid UTF-8", offset: offset + 12)
        }
    }

    static func listLines(_ sources: [PartitionSource]) -> String {
        let lines = sources.compactMap { s -> String? in
            if case let .csv(line) = s { return String(line) }
            return nil
        }
        return lines.isEmpty ? "" : " (lines \(lines.joined(separator: ", ")))"
    }
}

/// A table that works but is probably not what was meant.
public struct PartitionWarning: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case nvsEncrypted, nvsKeysNotEncrypted, nvsKeysTooSmall, nameLooksLikeKeyword, unknownFlags,
             extraFields, otadataWithoutOtaApps, noApp, otaSlotsNotContiguous, duplicateAppSubtype,
             noEndMarker, noMD5, misalignedDataOffset
    }
    public let kind: Kind
    public let message: String
    public let source: PartitionSource
    public let hint: String?

    public init(_ kind: Kind, _ message: String, source: PartitionSource, hint: String? = nil) {
        self.kind = kind
        self.message = message
        self.source = source
        self.hint = hint
    }

    public var diagnostic: Diagnostic {
        var d = Diagnostic(message, hint: hint)
        source.apply(to: &d)
        return d
    }

    public var description: String { diagnostic.description }
}
