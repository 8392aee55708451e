import ESPCore
import Foundation

/// The raw words of every block of a chip described by an ``EFuseFieldMap``, as the read
/// registers show them (read-protected blocks read as zero on a real chip).
public struct EFuseBlockWords: Sendable, Equatable {
    public let chip: String
    public private(set) var blocks: [[UInt32]]

    /// All-zero blocks for `map`.
    public init(map: EFuseFieldMap) {
        chip = map.chip
        blocks = map.blockWordCounts.map { [UInt32](repeating: 0, count: $0) }
    }

    /// Blocks from their words; throws when the shape does not match `map`.
    public init(map: EFuseFieldMap, blocks: [[UInt32]]) throws(EFuseFieldMapError) {
        guard blocks.map(\.count) == map.blockWordCounts else {
            throw .badBlockShape(chip: map.chip, expected: map.blockWordCounts, actual: blocks.map(\.count))
        }
        chip = map.chip
        self.blocks = blocks
    }

    public func word(_ block: Int, _ word: Int) -> UInt32 {
        guard block >= 0, block < blocks.count, word >= 0, word < blocks[block].count else { return 0 }
        return blocks[block][word]
    }

    public mutating func setWord(_ block: Int, _ word: Int, _ value: UInt32) {
        guard block >= 0, block < blocks.count, word >= 0, word < blocks[block].count else { return }
        blocks[block][word] = value
    }

    /// A field's bits as little-endian bytes (bit 0 of the field = bit 0 of byte 0).
    public func bytes(of field: EFuseField) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (field.width + 7) / 8)
        for i in 0..<field.width {
            let abs = field.startBit + i
            if word(field.block, abs / 32) & (1 << UInt32(abs % 32)) != 0 {
                out[i / 8] |= 1 << UInt8(i % 8)
            }
        }
        return out
    }

    /// The field as an integer (fields of up to 64 bits).
    public func integer(_ field: EFuseField) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<min(field.width, 64) {
            let abs = field.startBit + i
            if word(field.block, abs / 32) & (1 << UInt32(abs % 32)) != 0 { v |= 1 << UInt64(i) }
        }
        return v
    }

    /// Sets a field of up to 64 bits (for tests and crafted files); bits outside the field stay.
    public mutating func setInteger(_ field: EFuseField, _ value: UInt64) {
        for i in 0..<min(field.width, 64) {
            let abs = field.startBit + i
            let w = abs / 32, mask: UInt32 = 1 << UInt32(abs % 32)
            let cur = word(field.block, w)
            setWord(field.block, w, (value >> UInt64(i)) & 1 == 1 ? cur | mask : cur & ~mask)
        }
    }

    /// Sets a field from little-endian bytes (same order as ``bytes(of:)``).
    public mutating func setBytes(_ field: EFuseField, _ bytes: [UInt8]) {
        for i in 0..<field.width {
            let abs = field.startBit + i
            let w = abs / 32, mask: UInt32 = 1 << UInt32(abs % 32)
            let on = i / 8 < bytes.count && bytes[i / 8] & (1 << UInt8(i % 8)) != 0
            let cur = word(field.block, w)
            setWord(field.block, w, on ? cur | mask : cur & ~mask)
        }
    }

    /// WR_DIS: BLOCK0 word 0.
    public var writeDisable: UInt32 { word(0, 0) }
    public func isWriteProtected(bit: Int) -> Bool { bit >= 0 && bit < 32 && writeDisable & (1 << UInt32(bit)) != 0 }
}

/// The `espefuse --virt --path-efuse-file` file: the controller's whole register space
/// (``EFuseFieldMap/registerSpaceSize`` bytes) stored back to front, i.e. the file reversed is the
/// little-endian register dump starting at the controller base. Only the read registers of the
/// blocks are interpreted; the rest (programming and status registers) is ignored on read and
/// written as zero.
public enum EFuseVirtualFile {
    public static func decode(_ file: [UInt8], map: EFuseFieldMap, name: String = "eFuse file")
        throws(EFuseFieldMapError) -> EFuseBlockWords {
        guard file.count == map.registerSpaceSize else {
            throw .badVirtualFileSize(name: name, chip: map.chip, expected: map.registerSpaceSize, actual: file.count)
        }
        let regs = [UInt8](file.reversed())
        var out = EFuseBlockWords(map: map)
        for b in 0..<map.blockCount {
            let base = Int(map.readRegisterOffset(block: b))
            for w in 0..<map.blockWordCounts[b] {
                out.setWord(b, w, regs[(base + 4 * w)..<(base + 4 * w + 4)].loadLE(UInt32.self))
            }
        }
        return out
    }

    /// Reads and decodes an `espefuse --virt --path-efuse-file` file for `chip`.
    public static func read(_ path: String, chip: String) throws(EFuseFieldMapError) -> (EFuseFieldMap, EFuseBlockWords) {
        guard let map = EFuseFieldMap.named(chip) else { throw .unknownChip(chip) }
        let bytes: [UInt8]
        do { bytes = try BoundedFile.read(path, limit: limit) } catch { throw .file(error) }
        return (map, try decode(bytes, map: map, name: path))
    }

    static let limit = InputLimit("an espefuse virtual eFuse file", maxBytes: 4096,
                                  reason: "the file holds the eFuse controller's 512-byte register space")

    public static func encode(_ words: EFuseBlockWords, map: EFuseFieldMap) -> [UInt8] {
        var regs = [UInt8](repeating: 0, count: map.registerSpaceSize)
        for b in 0..<map.blockCount {
            let base = Int(map.readRegisterOffset(block: b))
            for w in 0..<map.blockWordCounts[b] {
                let v = words.word(b, w)
                for i in 0..<4 { regs[base + 4 * w + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) }
            }
        }
        return regs.reversed()
    }
}

/// Errors of the S3/C3-style field maps and their files.
public enum EFuseFieldMapError: Error, Equatable, Sendable {
    case unknownChip(String)
    case badVirtualFileSize(name: String, chip: String, expected: Int, actual: Int)
    case badBlockShape(chip: String, expected: [Int], actual: [Int])
    case file(FileAccessError)
}

extension EFuseFieldMapError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .unknownChip(chip):
            return Diagnostic("no eFuse field map for chip '\(chip)'",
                              hint: "use one of: \(EFuseFieldMap.all.map(\.chip).joined(separator: ", ")) (the ESP32 is read with --port)")
        case let .badVirtualFileSize(name, chip, expected, actual):
            return Diagnostic("\(name) has \(actual) bytes; an \(chip) eFuse file has \(expected)",
                              hint: "pass the file written by `espefuse --virt --chip \(chip) --path-efuse-file FILE`, for the same chip")
        case let .badBlockShape(chip, expected, actual):
            return Diagnostic("\(chip) eFuse blocks have \(actual) words, expected \(expected)",
                              hint: "pass one array of words per block, BLOCK0 first")
        case let .file(e):
            return e.diagnostic
        }
    }
}

/// One of the six key blocks.
public struct EFuseKeyBlockState: Sendable, Equatable, Codable {
    public var index: Int
    public var block: Int
    public var purpose: Int
    public var purposeName: String
    /// No bit set (as far as the block can be read).
    public var empty: Bool
    public var readProtected: Bool
    public var writeProtected: Bool
    public var purposeWriteProtected: Bool
    /// The public-key digest, hex, for SECURE_BOOT_DIGESTn purposes (public information).
    public var digest: String?
}

/// The security state of an S3/C3-style chip.
public struct EFuseFieldMapSecurity: Sendable, Equatable, Codable {
    public var secureBootEnabled: Bool
    /// Digest slots 0…2 in use (a key block with purpose SECURE_BOOT_DIGESTn), in slot order.
    public var secureBootDigestSlots: [Int]
    /// SECURE_BOOT_KEY_REVOKE0…2.
    public var revokedDigestSlots: [Int]
    public var aggressiveRevoke: Bool
    public var spiBootCryptCnt: Int
    /// An odd number of SPI_BOOT_CRYPT_CNT bits is set.
    public var flashEncryptionEnabled: Bool
    /// Purposes of flash-encryption keys present (XTS_AES_128_KEY or the XTS_AES_256 pair).
    public var flashEncryptionKeyPurposes: [String]
    public var disDownloadManualEncrypt: Bool
    public var enableSecurityDownload: Bool
    public var disUSBJTAG: Bool
    public var disPadJTAG: Bool
    public var disDirectBoot: Bool
    public var disDownloadMode: Bool
    public var writeProtectedBits: [Int]
    public var readProtectedBits: [Int]
}

/// Everything decoded from a chip's blocks through its ``EFuseFieldMap``.
public struct EFuseFieldMapSummary: Sendable, Equatable, Codable {
    public var chip: String
    public var revision: String
    public var majorRevision: Int
    public var minorRevision: Int
    public var mac: String
    public var keyBlocks: [EFuseKeyBlockState]
    public var security: EFuseFieldMapSecurity
    /// Table fields in table order, then the composite values (WAFER_VERSION_MINOR, …).
    public var fields: [EFuseFieldReport]

    public func field(_ name: String) -> EFuseFieldReport? { fields.first { $0.name == name.uppercased() } }
}

extension EFuseFieldMapSummary {
    /// `revealKeys: false` never shows the bytes of a readable key block whose purpose is a secret
    /// key (XTS, HMAC); digests and user data are shown.
    public init(words s: EFuseBlockWords, map: EFuseFieldMap, revealKeys: Bool = false) {
        let rdDis = map.field(named: "RD_DIS").map { Int(s.integer($0)) } ?? 0
        func readProtected(_ bit: Int?) -> Bool { bit.map { rdDis & (1 << $0) != 0 } ?? false }
        func int(_ name: String) -> Int { map.field(named: name).map { Int(s.integer($0)) } ?? 0 }
        func bool(_ name: String) -> Bool { int(name) != 0 }
        let keyRange = map.firstKeyBlock..<(map.firstKeyBlock + EFuseFieldMap.keyBlockCount)
        func purposeOf(block: Int) -> Int { int("KEY_PURPOSE_\(block - map.firstKeyBlock)") }
        func isSecretKey(block: Int) -> Bool {
            keyRange.contains(block) && (map.keyPurposes.first { $0.value == purposeOf(block: block) }?.readProtected ?? false)
        }

        var values: [EFuseFieldReport] = []
        for f in map.fields {
            let wp = f.writeProtect ?? map.blockWriteProtectBits[f.block]
            let rp = f.readProtect ?? map.blockReadProtectBits[f.block]
            let readable = !readProtected(rp)
            let writeable = !(wp.map { s.isWriteProtected(bit: $0) } ?? false)
            let bytes = s.bytes(of: f)
            var integer: UInt64?
            var hex: String?
            var value: String
            if f.width <= 64 { integer = s.integer(f) }
            if f.name.hasSuffix("MAC") && f.width == 48 {
                // The factory MAC is stored last byte first; CUSTOM_MAC in reading order.
                hex = bytes.hexString
                value = MACAddress.format(f.name == "MAC" ? bytes.reversed() : bytes)
            } else if f.width > 64 {
                hex = bytes.hexString
                value = bytes.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
                if !revealKeys, isSecretKey(block: f.block), bytes.contains(where: { $0 != 0 }) {
                    hex = nil
                    value = "(32-byte key, READABLE: not read-protected; not shown)"
                }
            } else if f.width == 1 {
                value = integer == 1 ? "true" : "false"
            } else if f.name.hasPrefix("KEY_PURPOSE_") {
                value = map.purposeName(Int(integer ?? 0)) ?? "unknown (\(integer ?? 0))"
            } else {
                value = String(integer ?? 0)
            }
            if !readable { value = "?" }
            values.append(EFuseFieldReport(
                name: f.name, block: f.block, word: f.word, bit: f.bit, width: f.width, description: f.description,
                integer: integer, hex: hex, value: value, readable: readable, writeable: writeable,
                writeProtectBit: wp, readProtectBit: rp))
        }
        for c in map.composites {
            var v: UInt64 = 0
            for p in c.parts { v |= UInt64(int(p.field)) << UInt64(p.shift) }
            values.append(EFuseFieldReport(
                name: c.name, block: 0, word: 0, bit: 0, width: 0, description: c.description,
                integer: v, hex: nil, value: String(v), readable: true, writeable: true,
                writeProtectBit: nil, readProtectBit: nil))
        }

        var keys: [EFuseKeyBlockState] = []
        for (i, b) in keyRange.enumerated() {
            let p = purposeOf(block: b)
            let name = map.purposeName(p) ?? "unknown (\(p))"
            let words = (0..<map.blockWordCounts[b]).map { s.word(b, $0) }
            let empty = words.allSatisfy { $0 == 0 } && !readProtected(map.blockReadProtectBits[b])
            let isDigest = name.hasPrefix("SECURE_BOOT_DIGEST")
            let blockField = EFuseField("BLOCK_KEY\(i)", block: b, word: 0, bit: 0, width: 256, "")
            keys.append(EFuseKeyBlockState(
                index: i, block: b, purpose: p, purposeName: name, empty: empty,
                readProtected: readProtected(map.blockReadProtectBits[b]),
                writeProtected: map.blockWriteProtectBits[b].map { s.isWriteProtected(bit: $0) } ?? false,
                purposeWriteProtected: map.field(named: "KEY_PURPOSE_\(i)")?.writeProtect
                    .map { s.isWriteProtected(bit: $0) } ?? false,
                digest: isDigest && !empty ? s.bytes(of: blockField).hexString : nil))
        }
        let digestSlots = (0..<3).filter { slot in
            keys.contains { $0.purposeName == "SECURE_BOOT_DIGEST\(slot)" }
        }
        let cnt = int("SPI_BOOT_CRYPT_CNT")
        let fePurposes = ["XTS_AES_128_KEY", "XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"]
        security = EFuseFieldMapSecurity(
            secureBootEnabled: bool("SECURE_BOOT_EN"),
            secureBootDigestSlots: digestSlots,
            revokedDigestSlots: (0..<3).filter { bool("SECURE_BOOT_KEY_REVOKE\($0)") },
            aggressiveRevoke: bool("SECURE_BOOT_AGGRESSIVE_REVOKE"),
            spiBootCryptCnt: cnt,
            flashEncryptionEnabled: cnt.nonzeroBitCount % 2 == 1,
            flashEncryptionKeyPurposes: keys.map(\.purposeName).filter { fePurposes.contains($0) },
            disDownloadManualEncrypt: bool("DIS_DOWNLOAD_MANUAL_ENCRYPT"),
            enableSecurityDownload: bool("ENABLE_SECURITY_DOWNLOAD"),
            disUSBJTAG: bool("DIS_USB_JTAG"),
            disPadJTAG: bool("DIS_PAD_JTAG"),
            disDirectBoot: bool("DIS_DIRECT_BOOT"),
            disDownloadMode: bool("DIS_DOWNLOAD_MODE"),
            writeProtectedBits: (0..<32).filter { s.isWriteProtected(bit: $0) },
            readProtectedBits: (0..<7).filter { rdDis & (1 << $0) != 0 })
        chip = map.chip
        majorRevision = int("WAFER_VERSION_MAJOR")
        minorRevision = values.first { $0.name == "WAFER_VERSION_MINOR" }.map { Int($0.integer ?? 0) } ?? 0
        revision = "v\(majorRevision).\(minorRevision)"
        mac = values.first { $0.name == "MAC" }?.value ?? "?"
        keyBlocks = keys
        fields = values
    }
}

extension EFuseFieldMapSummary {
    /// The text `espforge efuse decode` prints: every field with R/W protection and value, the key
    /// blocks (purpose, state, digest), then the security state.
    public func text(map: EFuseFieldMap) -> String {
        let s = self
        var out = ""
        out += ("Chip: \(s.chip.uppercased()) revision \(s.revision), MAC \(s.mac)") + "\n"
        out += "\n"
        for f in s.fields {
            let perms = (f.readable ? "R" : "-") + "/" + (f.writeable ? "W" : "-")
            let block = f.width == 0 || f.name == map.blockNames[f.block] ? "" : " (\(map.blockNames[f.block]))"
            out += ("\((f.name + block).padding(toLength: 46, withPad: " ", startingAt: 0)) \(perms)  \(f.value)") + "\n"
        }
        func yn(_ b: Bool) -> String { b ? "yes" : "no" }
        func list(_ v: [Int]) -> String { v.isEmpty ? "none" : v.map(String.init).joined(separator: ", ") }
        out += "\n"
        out += ("Key blocks:") + "\n"
        for k in s.keyBlocks {
            var notes: [String] = []
            if k.readProtected { notes.append("read-protected") }
            if k.writeProtected { notes.append("write-protected") }
            if k.purposeWriteProtected { notes.append("purpose locked") }
            let state = k.readProtected ? "unreadable" : (k.empty ? "empty" : "programmed")
            out += ("  BLOCK_KEY\(k.index): \(k.purposeName), \(state)" + (notes.isEmpty ? "" : " (\(notes.joined(separator: ", ")))")
                  + (k.digest.map { "\n    digest \($0)" } ?? "")) + "\n"
        }
        let sec = s.security
        out += "\n"
        out += ("Security:") + "\n"
        out += ("  SECURE_BOOT_EN \(yn(sec.secureBootEnabled)); digest slots \(list(sec.secureBootDigestSlots)); "
              + "revoked \(list(sec.revokedDigestSlots)); aggressive revoke \(yn(sec.aggressiveRevoke))") + "\n"
        out += ("  SPI_BOOT_CRYPT_CNT \(NumberParsing.hex(sec.spiBootCryptCnt, width: 1)) -> flash encryption "
              + "\(sec.flashEncryptionEnabled ? "ON" : "off"); keys: "
              + (sec.flashEncryptionKeyPurposes.isEmpty ? "none" : sec.flashEncryptionKeyPurposes.joined(separator: ", "))) + "\n"
        out += ("  DIS_DOWNLOAD_MANUAL_ENCRYPT \(yn(sec.disDownloadManualEncrypt)), ENABLE_SECURITY_DOWNLOAD "
              + "\(yn(sec.enableSecurityDownload)), DIS_DOWNLOAD_MODE \(yn(sec.disDownloadMode)), DIS_DIRECT_BOOT \(yn(sec.disDirectBoot))") + "\n"
        out += ("  DIS_USB_JTAG \(yn(sec.disUSBJTAG)), DIS_PAD_JTAG \(yn(sec.disPadJTAG))") + "\n"
        out += ("  write-protected (WR_DIS bits): \(list(sec.writeProtectedBits))") + "\n"
        out += ("  read-protected (RD_DIS bits): \(list(sec.readProtectedBits))") + "\n"
        return out
    }
}
