import ESPCore
import Partitions

/// Whether the bootloader encrypts (first boot) or reads through decryption (afterwards) a
/// region of flash.
public enum EncryptionExpectation: String, Sendable, Hashable, Codable {
    /// Always encrypted.
    case always
    /// Encrypted when it holds a valid plaintext image (bootloader, app partitions); an empty
    /// app slot stays as it is.
    case ifValidImage
    /// Encrypted when it holds a valid plaintext partition table.
    case ifValidPartitionTable
    /// Never touched by flash encryption (left plaintext).
    case never

    /// Whether content of this kind ends up encrypted, given whether it is valid.
    public func isEncrypted(contentIsValid: Bool) -> Bool {
        switch self {
        case .always: return true
        case .ifValidImage, .ifValidPartitionTable: return contentIsValid
        case .never: return false
        }
    }
}

/// One region of flash and what flash encryption does with it.
public struct EncryptionArea: Sendable, Hashable, Codable {
    /// `bootloader`, `partition table`, or the partition's name.
    public var name: String
    public var offset: Int
    public var size: Int
    public var expectation: EncryptionExpectation
    /// Why, in a few words (e.g. `app partition`, `data/nvs_keys`, `encrypted flag`).
    public var reason: String
    /// The partition entry, for partition areas.
    public var partition: PartitionEntry?

    public var end: Int { offset + size }
    public func contains(_ address: Int) -> Bool { address >= offset && address < end }
}

/// The areas of one flash layout, sorted by offset, plus problems found in the table.
public struct EncryptionLayout: Sendable, Equatable {
    public var areas: [EncryptionArea]
    /// Entries that will misbehave under flash encryption (e.g. an NVS partition flagged encrypted).
    public var warnings: [Diagnostic]

    /// The area containing `address`, if any (flash outside every area is never encrypted).
    public func area(containing address: Int) -> EncryptionArea? {
        areas.first { $0.contains(address) }
    }
}

/// The single rule set for "which flash does ESP-IDF flash encryption cover", shared by host-side
/// encryption of a flash plan and the first-boot simulator. Mirrors the bootloader's first-boot
/// pass (spec §3 step 3):
/// - the bootloader region (chip's bootloader offset up to the partition table), if it holds a
///   valid plaintext image (on chip only the image's own length, signature sector included, is
///   rewritten; the area is the space it may occupy);
/// - the partition table sector (4 KiB), if it holds a valid plaintext table;
/// - app partitions (type 0x00) and bootloader partitions (type 0x02): if they hold a valid image;
/// - extra partition-table partitions (type 0x03): if they hold a valid table;
/// - data/ota (otadata), data/tee_ota and data/nvs_keys: always;
/// - any other partition with the `encrypted` flag: always;
/// - everything else, notably data/nvs, never.
/// Not modelled: the Secure Boot V1 IV/digest sector at 0x0 (ESP32, SBv1 only).
/// App partitions: the whole partition is encrypted (IDF default; with
/// CONFIG_SECURE_FLASH_ENCRYPT_ONLY_IMAGE_LEN_IN_APP_PART only the image).
public enum EncryptionRules {
    /// Size of the partition table sector.
    public static let partitionTableSize = 0x1000

    /// What flash encryption does with a partition, and why.
    public static func expectation(for entry: PartitionEntry) -> (EncryptionExpectation, reason: String) {
        typealias K = PartitionEntry.Kind
        typealias D = PartitionEntry.DataSubtype
        switch (entry.type, entry.subtype) {
        case (K.app, _):
            return (.ifValidImage, "app partition")
        case (K.bootloader, _):
            return (.ifValidImage, "bootloader partition")
        case (K.partitionTable, _):
            return (.ifValidPartitionTable, "partition table partition")
        case (K.data, D.ota):
            return (.always, "data/ota (otadata)")
        case (K.data, D.teeOta):
            return (.always, "data/tee_ota")
        case (K.data, D.nvsKeys):
            return (.always, "data/nvs_keys")
        default:
            if entry.isEncrypted { return (.always, "encrypted flag") }
            return (.never, entry.type == K.data && entry.subtype == D.nvs
                    ? "data/nvs (uses NVS encryption instead)" : "not flagged encrypted")
        }
    }

    /// The areas of a flash layout for `chip`: bootloader, partition table, then each partition.
    public static func layout(partitions: [PartitionEntry], chip: ChipSpec,
                              partitionTableOffset: Int = 0x8000) -> EncryptionLayout {
        var areas: [EncryptionArea] = []
        if partitionTableOffset > chip.bootloaderOffset {
            areas.append(EncryptionArea(name: "bootloader", offset: chip.bootloaderOffset,
                                        size: partitionTableOffset - chip.bootloaderOffset,
                                        expectation: .ifValidImage, reason: "second-stage bootloader"))
        }
        areas.append(EncryptionArea(name: "partition table", offset: partitionTableOffset, size: partitionTableSize,
                                    expectation: .ifValidPartitionTable, reason: "primary partition table"))
        var warnings: [Diagnostic] = []
        for entry in partitions {
            let (expectation, reason) = expectation(for: entry)
            areas.append(EncryptionArea(name: entry.name, offset: Int(entry.offset), size: Int(entry.size),
                                        expectation: expectation, reason: reason, partition: entry))
            if entry.type == PartitionEntry.Kind.data, entry.subtype == PartitionEntry.DataSubtype.nvs, entry.isEncrypted {
                warnings.append(Diagnostic(
                    "partition '\(entry.name)' (data/nvs) is flagged encrypted: the bootloader would encrypt it with the flash key "
                        + "and NVS cannot work on flash-encrypted pages",
                    hint: "remove the `encrypted` flag; protect NVS with NVS encryption (an nvs_keys partition) instead"))
            }
        }
        areas.sort { $0.offset < $1.offset }
        return EncryptionLayout(areas: areas, warnings: warnings)
    }
}

extension FlashCipher {
    /// Encrypts the regions of a plaintext flash plan that the bootloader expects encrypted and
    /// leaves the others as they are. A region must lie inside one area or wholly outside all of
    /// them (flash outside every area is plaintext). For `.ifValidImage` areas `isValidImage`
    /// decides (default: the region starts with the image magic byte 0xE9); for
    /// `.ifValidPartitionTable` areas `isValidPartitionTable` (default: first entry magic 0xAA 0x50).
    public func encryptExpected(_ plan: [FlashRegion], layout: EncryptionLayout,
                                isValidImage: ([UInt8]) -> Bool = { $0.first == 0xE9 },
                                isValidPartitionTable: ([UInt8]) -> Bool = { $0.count >= 2 && $0[0] == 0xAA && $0[1] == 0x50 })
        throws -> [FlashRegion] {
        try Self.validate(plan)
        return try plan.map { region in
            let decision = try Self.expectation(of: region, in: layout)
            let encrypt: Bool
            switch decision {
            case .ifValidImage: encrypt = isValidImage(region.data)
            case .ifValidPartitionTable: encrypt = isValidPartitionTable(region.data)
            case .always, .never: encrypt = decision.isEncrypted(contentIsValid: true)
            }
            guard encrypt else { return region }
            var r = region
            r.data = try apply(.encrypt, to: region.data, at: region.address)
            return r
        }
    }

    /// The expectation that governs a whole region: the region must lie inside one area, or touch
    /// only areas that are never encrypted (gaps between areas are never encrypted either).
    static func expectation(of region: FlashRegion, in layout: EncryptionLayout) throws -> EncryptionExpectation {
        let start = region.address, end = region.end
        let touched = layout.areas.filter { $0.offset < end && start < $0.end }
        if touched.allSatisfy({ $0.expectation == .never }) { return .never }
        if touched.count == 1, let area = touched.first, area.offset <= start, end <= area.end {
            return area.expectation
        }
        let first = touched.first { $0.expectation != .never }
        let boundary = first.map { $0.offset > start ? $0.offset : $0.end } ?? start
        throw FlashEncryptionError.regionStraddlesEncryptionBoundary(address: start, length: region.data.count, boundary: boundary)
    }
}
