import ESPCore

/// One field as read from the chip.
public struct EFuseFieldReport: Sendable, Equatable, Codable {
    public var name: String
    public var block: Int
    public var word: Int
    public var bit: Int
    public var width: Int
    public var description: String
    /// Integer value for fields of up to 64 bits (nil for wider fields).
    public var integer: UInt64?
    /// Bytes in block order as hex for fields wider than 64 bits (BLOCK1–3), and for MACs.
    public var hex: String?
    /// Human-readable value (`true`, `0x3`, `24:0a:c4:…`, hex bytes, `?` when read-protected).
    public var value: String
    public var readable: Bool
    public var writeable: Bool
    public var writeProtectBit: Int?
    public var readProtectBit: Int?
}

/// The security-relevant state decoded from the eFuses.
public struct EFuseSecurityState: Sendable, Equatable, Codable {
    /// BLOCK2 holds a (non-zero) Secure Boot V2 public-key digest.
    public var secureBootDigestBurned: Bool
    /// The digest, hex (public information); nil when BLOCK2 is empty or read-protected.
    public var secureBootDigest: String?
    public var blk2ReadProtected: Bool
    public var blk2WriteProtected: Bool
    public var absDone0: Bool
    public var absDone1: Bool
    /// The ROM verifies the bootloader with SBv2 (ABS_DONE_1 on revision ≥ 3).
    public var secureBootV2Enabled: Bool
    public var flashCryptCnt: Int
    public var flashEncryptionEnabled: Bool
    /// BLOCK1 is read-protected or non-zero (esptool's heuristic for "a key is present").
    public var flashEncryptionKeyPresent: Bool
    public var blk1ReadProtected: Bool
    public var blk1WriteProtected: Bool
    /// nil when hidden by RD_DIS bit 3.
    public var flashCryptConfig: Int?
    public var disableDLEncrypt: Bool
    public var disableDLDecrypt: Bool
    public var disableDLCache: Bool
    public var jtagDisabled: Bool
    public var consoleDebugDisabled: Bool
    public var uartDownloadDisabled: Bool
    /// "NONE", "3/4" or "REPEAT"; nil when hidden by RD_DIS bit 3.
    public var codingScheme: String?
    public var writeProtectedBits: [Int]
    public var readProtectedBits: [Int]
}

/// Everything `espforge efuse summary` shows.
public struct EFuseSummary: Sendable, Equatable, Codable {
    public var chip: String
    public var revision: String
    public var majorRevision: Int
    public var minorRevision: Int
    public var package: Int
    public var mac: String
    public var macCRCValid: Bool
    public var security: EFuseSecurityState
    /// Every field of the chip's table, in table order.
    public var fields: [EFuseFieldReport]
    public var decodeErrors: Bool

    public func field(_ name: String) -> EFuseFieldReport? { fields.first { $0.name == name.uppercased() } }
}

extension EFuseSummary {
    /// `revealKeys: false` keeps a readable (unprotected) flash encryption key in BLOCK1 out of the
    /// report: it says a key is there and readable, never what it is.
    public init(snapshot s: EFuseSnapshot, layout: EFuseLayout = .esp32, revealKeys: Bool = false) {
        func bool(_ n: String) -> Bool { s.integer(named: n, layout: layout) != 0 }
        var reports: [EFuseFieldReport] = []
        for f in layout.fields {
            let readable = s.isReadable(f, layout: layout)
            let bytes = s.bytes(of: f)
            var integer: UInt64?
            var hex: String?
            var value: String
            if f.width <= 64 { integer = s.integer(f) }
            if f.name == "MAC" {
                hex = s.mac.hexString
                value = MACAddress.format(s.mac)
            } else if f.name == "CUSTOM_MAC" {
                hex = bytes.hexString
                value = MACAddress.format(bytes)
            } else if f.width > 64 {
                hex = bytes.hexString
                value = bytes.map { b in b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }.joined(separator: " ")
            } else if f.width == 1 {
                value = integer == 1 ? "true" : "false"
            } else {
                value = NumberParsing.hex(integer ?? 0, width: 1)
            }
            if !readable && bytes.allSatisfy({ $0 == 0 }) { value = "?" }
            if f.name == "BLOCK1", readable, !revealKeys, bytes.contains(where: { $0 != 0 }) {
                hex = nil
                value = "(32-byte flash encryption key, READABLE: not read-protected; not shown)"
            }
            reports.append(EFuseFieldReport(
                name: f.name, block: f.block, word: f.word, bit: f.bit, width: f.width, description: f.description,
                integer: integer, hex: hex, value: value, readable: readable,
                writeable: s.isWriteable(f, layout: layout),
                writeProtectBit: s.writeProtectBit(of: f, layout: layout),
                readProtectBit: s.readProtectBit(of: f, layout: layout)))
        }
        let blk2 = s.blockBytes(2)
        let blk2RP = s.isReadProtected(bit: 1)
        let digestBurned = blk2.contains { $0 != 0 }
        let codingHidden = s.isReadProtected(bit: 3)
        let codingNames = ["NONE", "3/4", "REPEAT", "NONE"]
        security = EFuseSecurityState(
            secureBootDigestBurned: digestBurned,
            secureBootDigest: digestBurned ? blk2.hexString : nil,
            blk2ReadProtected: blk2RP,
            blk2WriteProtected: s.isWriteProtected(bit: 8),
            absDone0: bool("ABS_DONE_0"),
            absDone1: bool("ABS_DONE_1"),
            secureBootV2Enabled: bool("ABS_DONE_1") && s.majorRevision >= 3,
            flashCryptCnt: s.flashCryptCount,
            flashEncryptionEnabled: s.flashEncryptionEnabled,
            flashEncryptionKeyPresent: s.isReadProtected(bit: 0) || s.blockBytes(1).contains { $0 != 0 },
            blk1ReadProtected: s.isReadProtected(bit: 0),
            blk1WriteProtected: s.isWriteProtected(bit: 7),
            flashCryptConfig: codingHidden ? nil : Int(s.integer(named: "FLASH_CRYPT_CONFIG", layout: layout)),
            disableDLEncrypt: bool("DISABLE_DL_ENCRYPT"),
            disableDLDecrypt: bool("DISABLE_DL_DECRYPT"),
            disableDLCache: bool("DISABLE_DL_CACHE"),
            jtagDisabled: bool("JTAG_DISABLE"),
            consoleDebugDisabled: bool("CONSOLE_DEBUG_DISABLE"),
            uartDownloadDisabled: bool("UART_DOWNLOAD_DIS"),
            codingScheme: codingHidden ? nil : codingNames[s.codingSchemeRaw],
            writeProtectedBits: (0..<16).filter { s.isWriteProtected(bit: $0) },
            readProtectedBits: (0..<4).filter { s.isReadProtected(bit: $0) })
        chip = layout.chip
        majorRevision = s.majorRevision
        minorRevision = s.minorRevision
        revision = "v\(s.majorRevision).\(s.minorRevision)"
        package = s.package
        mac = MACAddress.format(s.mac)
        macCRCValid = MACAddress.crc8(s.mac) == s.macCRC
        fields = reports
        decodeErrors = s.decodeStatus != 0
    }
}
