import Crypto
import ESPCore

/// How a table is laid out and checked.
public struct PartitionTableOptions: Sendable {
    /// Flash offset of the partition table sector (`CONFIG_PARTITION_TABLE_OFFSET`).
    public var tableOffset: Int = 0x8000
    /// The chip (gives the bootloader offset).
    public var chip: ChipSpec = .esp32
    /// When set, every partition must end within this many bytes of flash.
    public var flashSize: Int?
    /// Append the MD5 entry (ESP-IDF default).
    public var md5: Bool = true
    /// Secure Boot V1 requires app partition sizes to be multiples of 64 KiB (otherwise 4 KiB).
    public var secureBootV1: Bool = false
    /// Values for `$NAME` / `${NAME}` in the CSV.
    public var environment: [String: String] = [:]
    /// Size of the bootloader image to be flashed at the chip's bootloader offset, when known:
    /// it must end at or before the partition table.
    public var bootloaderSize: Int?
    /// Flash offset of the recovery bootloader (gen_esp32part `--recovery-bootloader-offset`,
    /// ESP-IDF `CONFIG_BOOTLOADER_RECOVERY_OFFSET`): where a `bootloader, recovery` entry goes.
    /// Without it such an entry is an error; it changes nothing else.
    public var recoveryBootloaderOffset: Int?

    public init(tableOffset: Int = 0x8000, chip: ChipSpec = .esp32, flashSize: Int? = nil, md5: Bool = true,
                secureBootV1: Bool = false, environment: [String: String] = [:]) {
        self.tableOffset = tableOffset
        self.chip = chip
        self.flashSize = flashSize
        self.md5 = md5
        self.secureBootV1 = secureBootV1
        self.environment = environment
    }

    /// First flash address after the partition table sector.
    public var firstFreeOffset: Int { tableOffset + PartitionTable.sectorSize }
}

/// An ESP partition table: entries in table order, each with where it came from.
public struct PartitionTable: Sendable, Equatable {
    public static let entrySize = 32
    /// Bytes of table data gen_esp32part writes (the rest of the sector is left for a signature).
    public static let maxLength = 0xC00
    public static let sectorSize = 0x1000
    public static let entryMagic: UInt16 = 0x50AA
    public static let md5Magic: UInt16 = 0xEBEB

    public var entries: [PartitionEntry]
    /// Parallel to `entries`.
    public var sources: [PartitionSource]

    public init(entries: [PartitionEntry], sources: [PartitionSource]? = nil) {
        self.entries = entries
        self.sources = sources ?? Array(repeating: .none, count: entries.count)
    }

    func source(_ i: Int) -> PartitionSource { i < sources.count ? sources[i] : .none }

    // MARK: Binary

    /// The binary table: 32-byte entries, the MD5 entry when `md5`, then 0xFF up to 0xC00 bytes.
    public func binary(md5: Bool = true) throws(PartitionTableError) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.maxLength)
        for e in entries { out += Self.encode(e) }
        if md5 {
            let digest = Array(Insecure.MD5.hash(data: out))
            out += [0xEB, 0xEB] + [UInt8](repeating: 0xFF, count: 14) + digest
        }
        guard out.count < Self.maxLength else {
            throw .tooLarge(entries: entries.count, bytes: out.count, max: Self.maxLength)
        }
        out += [UInt8](repeating: 0xFF, count: Self.maxLength - out.count)
        return out
    }

    /// One 32-byte entry. Labels longer than 16 bytes are cut (the CSV parser rejects them).
    public static func encode(_ e: PartitionEntry) -> [UInt8] {
        var b = [UInt8]()
        b.reserveCapacity(entrySize)
        b.appendLE(entryMagic)
        b.append(e.type)
        b.append(e.subtype)
        b.appendLE(e.offset)
        b.appendLE(e.size)
        let label = Array(e.name.utf8.prefix(16))
        b += label + [UInt8](repeating: 0, count: 16 - label.count)
        b.appendLE(e.flags)
        return b
    }

    /// Result of reading a binary table.
    public struct Parsed: Sendable, Equatable {
        public enum MD5Status: String, Sendable, Equatable, Codable {
            /// An MD5 entry was present and matched.
            case valid
            /// No MD5 entry (tables from old tools, or built with MD5 disabled).
            case absent
            /// An MD5 entry was present but not checked.
            case unchecked
        }
        public var table: PartitionTable
        public var md5: MD5Status
        /// Bytes up to and including the end marker (or the input length when it has none).
        public var length: Int
        public var warnings: [PartitionWarning]
    }

    /// Reads a binary table as the bootloader and gen_esp32part do: 32-byte entries until an
    /// all-0xFF entry; an entry starting `EB EB` carries the MD5 of the entries before it. A table
    /// that simply ends at a 32-byte boundary without the end marker is accepted with a warning.
    public static func parse(binary bytes: [UInt8], verifyMD5: Bool = true) throws(PartitionTableError) -> Parsed {
        var entries: [PartitionEntry] = []
        var sources: [PartitionSource] = []
        var warnings: [PartitionWarning] = []
        var md5 = Insecure.MD5()
        var status = Parsed.MD5Status.absent
        var offset = 0
        while offset < bytes.count {
            let end = offset + entrySize
            guard end <= bytes.count else { throw .truncatedEntry(offset: offset, length: bytes.count - offset) }
            let chunk = Array(bytes[offset..<end])
            if chunk.allSatisfy({ $0 == 0xFF }) {
                if status == .absent {
                    warnings.append(PartitionWarning(.noMD5, "the table has no MD5 entry", source: .none,
                                                     hint: "tables built by current ESP-IDF carry one; the bootloader accepts either"))
                }
                return Parsed(table: PartitionTable(entries: entries, sources: sources), md5: status,
                              length: end, warnings: warnings)
            }
            let magic = chunk.loadLE(UInt16.self)
            if magic == md5Magic {
                if verifyMD5 {
                    let computed = Array(md5.finalize())
                    let stored = Array(chunk[16..<32])
                    guard computed == stored else {
                        throw .md5Mismatch(offset: offset, computed: computed.hexString, stored: stored.hexString)
                    }
                    status = .valid
                } else {
                    status = .unchecked
                }
                offset = end
                continue
            }
            guard magic == entryMagic else { throw .badMagic(offset: offset, found: magic) }
            md5.update(data: chunk)
            let labelBytes = chunk[12..<28].prefix { $0 != 0 }
            guard let name = String(validating: labelBytes, as: UTF8.self) else { throw .invalidLabel(offset: offset) }
            let entry = PartitionEntry(name: name, type: chunk[2], subtype: chunk[3],
                                       offset: chunk[4..<8].loadLE(UInt32.self),
                                       size: chunk[8..<12].loadLE(UInt32.self),
                                       flags: chunk[28..<32].loadLE(UInt32.self))
            let index = entries.count
            let known = PartitionEntry.flagEncrypted | PartitionEntry.flagReadOnly
            if entry.flags & ~known != 0 {
                warnings.append(PartitionWarning(.unknownFlags,
                    "partition '\(name)' has unknown flag bits 0x\(String(entry.flags & ~known, radix: 16))",
                    source: .binary(index: index), hint: "a newer table format? they are not shown in CSV output"))
            }
            entries.append(entry)
            sources.append(.binary(index: index))
            offset = end
        }
        warnings.append(PartitionWarning(.noEndMarker, "the table has no end-of-table marker (32 bytes of 0xFF); the input ends after \(entries.count) entries",
                                         source: .none, hint: "on flash the erased bytes after it act as the marker"))
        if status == .absent {
            warnings.append(PartitionWarning(.noMD5, "the table has no MD5 entry", source: .none))
        }
        return Parsed(table: PartitionTable(entries: entries, sources: sources), md5: status,
                      length: bytes.count, warnings: warnings)
    }

    // MARK: CSV output

    /// The table as gen_esp32part prints it: a two-line header, then
    /// `name,type,subtype,0xOFFSET,SIZE,flags` with sizes as `NM`/`NK` when whole.
    public func csv() -> String {
        var rows = ["# ESP-IDF Partition Table", "# Name, Type, SubType, Offset, Size, Flags"]
        for e in entries {
            rows.append([
                e.name,
                PartitionKeywords.typeText(e.type),
                PartitionKeywords.subtypeText(type: e.type, subtype: e.subtype),
                "0x" + String(e.offset, radix: 16),
                Self.sizeText(Int(e.size)),
                Self.flagsText(e.flags),
            ].joined(separator: ","))
        }
        return rows.joined(separator: "\n") + "\n"
    }

    static func sizeText(_ size: Int) -> String {
        if size % 0x100000 == 0 { return "\(size / 0x100000)M" }
        if size % 0x400 == 0 { return "\(size / 0x400)K" }
        return "0x" + String(size, radix: 16)
    }

    public static func flagsText(_ flags: UInt32) -> String {
        var names: [String] = []
        if flags & PartitionEntry.flagEncrypted != 0 { names.append("encrypted") }
        if flags & PartitionEntry.flagReadOnly != 0 { names.append("readonly") }
        return names.joined(separator: ":")
    }

    // MARK: Queries

    /// OTA app partitions (`ota_0` … `ota_15`), in table order.
    public var otaApps: [PartitionEntry] {
        entries.filter { $0.type == PartitionEntry.Kind.app && (0x10...0x1F).contains($0.subtype) }
    }

    /// The data/ota partition, if any.
    public var otadata: PartitionEntry? {
        entries.first { $0.type == PartitionEntry.Kind.data && $0.subtype == PartitionEntry.DataSubtype.ota }
    }

    public func entry(named name: String) -> PartitionEntry? { entries.first { $0.name == name } }
}

extension PartitionEntry {
    /// Offset alignment ESP-IDF requires: 64 KiB for apps, 4 KiB for everything else.
    public var requiredOffsetAlignment: Int { type == Kind.app ? 0x10000 : 0x1000 }

    var isPrimaryBootloaderOrTable: Bool {
        (type == Kind.bootloader || type == Kind.partitionTable) && subtype == 0
    }

    /// End address (exclusive), without overflow.
    public var end: Int { Int(offset) + Int(size) }
}
