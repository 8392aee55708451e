import EFuse
import ESPCore
import Foundation
import Loader
import Transport

/// `chip info` for the chips whose eFuses are described by an ``EFuseFieldMap`` (ESP32-S3,
/// ESP32-C3): detection through GET_SECURITY_INFO's chip id (as esptool 5.6.0 does), the eFuse
/// blocks through the controller's read registers, the flash id through SPI1. ROM loader only,
/// nothing written except the SPI1 registers of one RDID command.
public struct FieldMapChipFacts: Sendable, Hashable {
    public let name: String
    /// GET_SECURITY_INFO chip id (= the image header chip id).
    public let chipID: UInt32
    /// Chip-detect magic words at 0x40001000 (fallback when GET_SECURITY_INFO is not answered).
    public let magic: [UInt32]
    /// SPI1 base and the USER, USER2, MISO_DLEN and W0 offsets.
    public let spiBase: UInt32
    public let spiUser: UInt32, spiUser2: UInt32, spiMisoDlen: UInt32, spiW0: UInt32
    /// Package names by PKG_VERSION, and the features esptool lists for the family.
    public let packages: [Int: String]
    public let features: [String]

    /// One row per chip (facts from esptool 5.6.0's target descriptions).
    public static let table: [FieldMapChipFacts] = [
        FieldMapChipFacts(name: "esp32s3", chipID: 9, magic: [0x0000_0009], spiBase: 0x6000_2000,
                          spiUser: 0x18, spiUser2: 0x20, spiMisoDlen: 0x28, spiW0: 0x58,
                          packages: [0: "ESP32-S3 (QFN56)", 1: "ESP32-S3-PICO-1 (LGA56)"],
                          features: ["Wi-Fi", "BT 5 (LE)", "Dual Core + LP Core", "240MHz"]),
        FieldMapChipFacts(name: "esp32c3", chipID: 5, magic: [0x6921_506F, 0x1B31_506F, 0x4881_606F, 0x4361_606F],
                          spiBase: 0x6000_2000, spiUser: 0x18, spiUser2: 0x20, spiMisoDlen: 0x28, spiW0: 0x58,
                          packages: [0: "ESP32-C3 (QFN32)", 1: "ESP8685 (QFN28)", 2: "ESP32-C3 AZ (QFN32)", 3: "ESP8686 (QFN24)"],
                          features: ["Wi-Fi", "BT 5 (LE)", "Single Core", "160MHz"]),
    ]

    public static func named(_ name: String) -> FieldMapChipFacts? { table.first { $0.name == name } }
}

extension ChipProbe {
    /// The S3/C3 row for the chip behind `client`: GET_SECURITY_INFO's chip id, else the magic
    /// word. nil for any other chip (the ESP32 answers GET_SECURITY_INFO with an error).
    public static func detectFieldMapChip(_ client: LoaderClient) -> FieldMapChipFacts? {
        if let r = try? client.command(.getSecurityInfo, outputLength: 20), r.data.count >= 20 {
            let id = Array(r.data[12..<16]).loadLE(UInt32.self)
            if let row = FieldMapChipFacts.table.first(where: { $0.chipID == id }) { return row }
        }
        guard let magic = try? client.readRegister(romMagicAddress) else { return nil }
        return FieldMapChipFacts.table.first { $0.magic.contains(magic) }
    }

    /// Every block's read registers (read-protected blocks read as zero, as on the chip), read
    /// until two readings agree.
    public static func readBlocks(_ access: RegisterAccess, map: EFuseFieldMap) throws -> EFuseBlockWords {
        let blocks = try RegisterReadings.agreeing(maxReadings: 6) { () throws -> [[UInt32]] in
            try (0..<map.blockCount).map { b in
                try (0..<map.blockWordCounts[b]).map {
                    try access.readRegister(map.controllerBase + map.readRegisterOffset(block: b) + UInt32(4 * $0))
                }
            }
        }
        guard let blocks else {
            throw FlasherError.badResponse(command: "READ_REG (eFuses)", why: "no two readings of the eFuses agreed")
        }
        return try EFuseBlockWords(map: map, blocks: blocks)
    }

    /// JEDEC id through the chip's SPI1 user-command engine (RDID 0x9F, 24 bits).
    static func flashID(_ c: LoaderClient, _ row: FieldMapChipFacts) throws -> UInt32 {
        let base = row.spiBase
        let user = try c.readRegister(base + row.spiUser), user2 = try c.readRegister(base + row.spiUser2)
        try c.writeRegister(base + row.spiMisoDlen, 23)
        try c.writeRegister(base + row.spiUser, 0x9000_0000)
        try c.writeRegister(base + row.spiUser2, 0x7000_0000 | 0x9F)
        try c.writeRegister(base + row.spiW0, 0)
        try c.writeRegister(base, 1 << 18)
        var done = false
        for _ in 0..<10 where !done { done = try c.readRegister(base) & (1 << 18) == 0 }
        guard done else { throw FlasherError.badResponse(command: "SPI RDID", why: "SPI command did not complete") }
        let id = try c.readRegister(base + row.spiW0) & 0xFF_FFFF
        try c.writeRegister(base + row.spiUser, user)
        try c.writeRegister(base + row.spiUser2, user2)
        return id
    }
}

extension ChipInfo {
    /// The chip info of an S3/C3 from its eFuse blocks and flash id.
    public static func fieldMap(_ words: EFuseBlockWords, map: EFuseFieldMap, row: FieldMapChipFacts,
                                flashID: UInt32, loader: String) -> ChipInfo {
        let summary = EFuseFieldMapSummary(words: words, map: map)
        let pkg = Int(summary.field("PKG_VERSION")?.integer ?? 0)
        let spec = ChipSpec.named(map.chip)
        let sizeCode = Int((flashID >> 16) & 0xFF)
        let size = (0x12...0x1C).contains(sizeCode) ? 1 << sizeCode : 0
        let s = summary.security
        let sec = SecurityState(
            secureBootDigestBurned: !s.secureBootDigestSlots.isEmpty,
            secureBootDigest: summary.keyBlocks.first { $0.digest != nil }?.digest,
            absDone0: false, absDone1: s.secureBootEnabled, flashCryptCnt: s.spiBootCryptCnt,
            flashEncryptionEnabled: s.flashEncryptionEnabled, flashCryptConfig: 0,
            disableDLEncrypt: s.disDownloadManualEncrypt, disableDLDecrypt: false, disableDLCache: false,
            uartDownloadDisabled: s.disDownloadMode, jtagDisabled: s.disPadJTAG, consoleDebugDisabled: false,
            codingScheme: "RS", writeProtect: s.writeProtectedBits.reduce(0) { $0 | 1 << $1 },
            readProtect: s.readProtectedBits.reduce(0) { $0 | 1 << $1 },
            writeProtected: summary.fields.filter { !$0.writeable && $0.width > 0 }.map(\.name),
            readProtected: summary.fields.filter { !$0.readable }.map(\.name))
        var info = ChipInfo(
            chip: spec?.displayName ?? map.chip.uppercased(),
            description: row.packages[pkg] ?? "\(spec?.displayName ?? map.chip) (unknown package \(pkg))",
            revision: summary.revision, majorRevision: summary.majorRevision, minorRevision: summary.minorRevision,
            mac: summary.mac, crystalMHz: 40, features: row.features,
            flashID: NumberParsing.hex(flashID, width: 6),
            flashManufacturer: hex(flashID & 0xFF, 2),
            flashDevice: hex(((flashID >> 8) & 0xFF) << 8 | ((flashID >> 16) & 0xFF), 4),
            flashSize: size, flashSizeName: size >= 1 << 20 ? "\(size >> 20)MB" : "unknown",
            security: sec, loader: loader)
        info.fieldMapSummary = summary
        return info
    }

    private static func hex(_ v: UInt32, _ width: Int) -> String {
        var s = String(v, radix: 16)
        while s.count < width { s = "0" + s }
        return s
    }

    /// `chip info` on a port whose chip is not an ESP32: a fresh connection to the ROM loader,
    /// detection, eFuses and flash id. Throws ``FlasherError/unknownChip(magic:)`` for a chip
    /// without a row in ``FieldMapChipFacts``.
    public static func readFieldMapChip(port portName: String, options: SessionOptions) throws -> ChipInfo {
        // The same connection, detection and reads as the safety check's (FieldMapTarget).
        try FieldMapTarget.connect(port: portName, options: options) { chip, c in
            fieldMap(chip.words, map: chip.map, row: chip.row, flashID: chip.flashID, loader: c.isStub ? "stub" : "ROM")
        }
    }
}
