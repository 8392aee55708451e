import ESPCore

/// One named eFuse field: `width` bits starting at absolute bit `32·word + bit` of `block`.
public struct EFuseField: Sendable, Hashable {
    public let name: String
    public let block: Int
    public let word: Int
    public let bit: Int
    public let width: Int
    /// WR_DIS bit that locks this field, if any.
    public let writeProtect: Int?
    /// RD_DIS bit (0…3) that makes this field read as zero, if any.
    public let readProtect: Int?
    public let description: String

    public init(_ name: String, block: Int, word: Int, bit: Int, width: Int,
                writeProtect: Int? = nil, readProtect: Int? = nil, _ description: String) {
        self.name = name
        self.block = block
        self.word = word
        self.bit = bit
        self.width = width
        self.writeProtect = writeProtect
        self.readProtect = readProtect
        self.description = description
    }

    /// First absolute bit inside the block.
    public var startBit: Int { word * 32 + bit }
}

/// A chip's eFuse geometry and field map (one static value per chip, see `ESP32EFuseFields.swift`).
public struct EFuseLayout: Sendable {
    public let chip: String
    /// Words per block (BLOCK0 first).
    public let blockWordCounts: [Int]
    /// Address of the eFuse controller.
    public let registerBase: UInt32
    /// Offsets (from `registerBase`) of each block's read registers.
    public let readRegisterOffsets: [UInt32]
    /// Offsets of each block's write (program) registers.
    public let writeRegisterOffsets: [UInt32]
    /// WR_DIS bit locking a whole block (nil for BLOCK0, which is locked per field).
    public let blockWriteProtectBits: [Int?]
    /// RD_DIS bit hiding a whole block.
    public let blockReadProtectBits: [Int?]
    public let fields: [EFuseField]

    public var blockCount: Int { blockWordCounts.count }
    public var totalWords: Int { blockWordCounts.reduce(0, +) }

    public func field(named name: String) -> EFuseField? {
        fields.first { $0.name == name.uppercased() }
    }

    /// Per-word mask of the bits a field covers, for `block`.
    public func mask(of field: EFuseField) -> [UInt32] {
        var words = [UInt32](repeating: 0, count: blockWordCounts[field.block])
        for i in field.startBit..<(field.startBit + field.width) where i / 32 < words.count {
            words[i / 32] |= 1 << UInt32(i % 32)
        }
        return words
    }
}

/// The fuse cells of one chip: what has been programmed, independent of any read protection.
///
/// Semantics (real eFuses): a bit can only go from 0 to 1; programming a bit locked by WR_DIS is
/// silently ignored; a block or field hidden by RD_DIS reads as zero.
public struct EFuseArray: Sendable, Equatable {
    public let layoutChip: String
    /// Raw programmed words, per block.
    public private(set) var blocks: [[UInt32]]

    public init(layout: EFuseLayout) {
        layoutChip = layout.chip
        blocks = layout.blockWordCounts.map { [UInt32](repeating: 0, count: $0) }
    }

    /// Restores an array from its serialized form (``bytes``); throws on a size mismatch.
    public init(layout: EFuseLayout, bytes: [UInt8]) throws(EFuseError) {
        guard bytes.count == layout.totalWords * 4 else {
            throw .badStateSize(expected: layout.totalWords * 4, actual: bytes.count)
        }
        self.init(layout: layout)
        var offset = 0
        for b in 0..<blocks.count {
            for w in 0..<blocks[b].count {
                blocks[b][w] = bytes[offset..<(offset + 4)].loadLE(UInt32.self)
                offset += 4
            }
        }
    }

    /// All words, block by block, little-endian (`efuse.bin` in a device state folder).
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        for block in blocks { for w in block { out.appendLE(w) } }
        return out
    }

    public func rawWord(block: Int, word: Int) -> UInt32 {
        guard block >= 0, block < blocks.count, word >= 0, word < blocks[block].count else { return 0 }
        return blocks[block][word]
    }

    var wrDis: UInt32 { rawWord(block: 0, word: 0) & 0xFFFF }
    var rdDis: UInt32 { (rawWord(block: 0, word: 0) >> 16) & 0xF }

    public func isWriteProtected(bit: Int) -> Bool { wrDis & (1 << UInt32(bit)) != 0 }
    public func isReadProtected(bit: Int) -> Bool { rdDis & (1 << UInt32(bit)) != 0 }

    /// Per-word mask of the bits of `block` that WR_DIS currently locks.
    public func writeLockedMask(block: Int, layout: EFuseLayout) -> [UInt32] {
        var mask = [UInt32](repeating: 0, count: layout.blockWordCounts[block])
        if let bit = layout.blockWriteProtectBits[block], isWriteProtected(bit: bit) {
            return mask.map { _ in 0xFFFF_FFFF }
        }
        for f in layout.fields where f.block == block {
            if let bit = f.writeProtect, isWriteProtected(bit: bit) {
                for (i, m) in layout.mask(of: f).enumerated() { mask[i] |= m }
            }
        }
        return mask
    }

    /// Per-word mask of the bits of `block` that read as they are (not hidden by RD_DIS).
    public func readableMask(block: Int, layout: EFuseLayout) -> [UInt32] {
        var mask = [UInt32](repeating: 0xFFFF_FFFF, count: layout.blockWordCounts[block])
        if let bit = layout.blockReadProtectBits[block], isReadProtected(bit: bit) {
            return mask.map { _ in 0 }
        }
        for f in layout.fields where f.block == block {
            if let bit = f.readProtect, isReadProtected(bit: bit) {
                for (i, m) in layout.mask(of: f).enumerated() { mask[i] &= ~m }
            }
        }
        return mask
    }

    /// Programs `words` (1 = burn) into `block`, honouring WR_DIS as it stood before this call.
    /// Returns the bits that were newly set.
    @discardableResult
    public mutating func program(block: Int, words: [UInt32], layout: EFuseLayout) -> [UInt32] {
        guard block >= 0, block < blocks.count else { return [] }
        let locked = writeLockedMask(block: block, layout: layout)
        var changed = [UInt32](repeating: 0, count: blocks[block].count)
        for w in 0..<min(words.count, blocks[block].count) {
            let add = words[w] & ~locked[w] & ~blocks[block][w]
            blocks[block][w] |= add
            changed[w] = add
        }
        return changed
    }

    /// Programs several blocks in one hardware cycle: write protection is evaluated once, before
    /// any block changes (so WR_DIS burned in this cycle locks only later cycles).
    public mutating func program(all words: [[UInt32]], layout: EFuseLayout) {
        let before = self
        for (b, w) in words.enumerated() where b < blocks.count {
            let locked = before.writeLockedMask(block: b, layout: layout)
            for i in 0..<min(w.count, blocks[b].count) {
                blocks[b][i] |= w[i] & ~locked[i]
            }
        }
    }

    /// What the read registers show for `block`: raw words with read-protected bits as zero.
    public func readable(block: Int, layout: EFuseLayout) -> [UInt32] {
        guard block >= 0, block < blocks.count else { return [] }
        let mask = readableMask(block: block, layout: layout)
        return zip(blocks[block], mask).map { $0 & $1 }
    }

    /// The whole array as the read registers show it (what a host reads over the loader).
    public func readable(layout: EFuseLayout) -> EFuseArray {
        var copy = self
        for b in 0..<blocks.count { copy.blocks[b] = readable(block: b, layout: layout) }
        return copy
    }

    /// A field's value as read through the registers (read protection applied), as bytes
    /// little-endian (bit 0 of the field = bit 0 of byte 0).
    public func value(of field: EFuseField, layout: EFuseLayout, raw: Bool = false) -> [UInt8] {
        let words = raw ? blocks[field.block] : readable(block: field.block, layout: layout)
        var out = [UInt8](repeating: 0, count: (field.width + 7) / 8)
        for i in 0..<field.width {
            let abs = field.startBit + i
            guard abs / 32 < words.count else { break }
            if words[abs / 32] & (1 << UInt32(abs % 32)) != 0 { out[i / 8] |= 1 << UInt8(i % 8) }
        }
        return out
    }

    /// A field of up to 64 bits as an integer.
    public func integer(_ field: EFuseField, layout: EFuseLayout) -> UInt64 {
        value(of: field, layout: layout).prefix(8).loadLE(UInt64.self)
    }

    /// Sets a field's bits directly (factory programming; ignores protection).
    public mutating func factorySet(_ field: EFuseField, value: UInt64) {
        for i in 0..<min(field.width, 64) where value & (1 << UInt64(i)) != 0 {
            let abs = field.startBit + i
            guard abs / 32 < blocks[field.block].count else { break }
            blocks[field.block][abs / 32] |= 1 << UInt32(abs % 32)
        }
    }
}

public enum EFuseError: Error, Equatable, Sendable {
    case badStateSize(expected: Int, actual: Int)
    case badMAC(String)
    case badRevision(Int)
}

extension EFuseError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .badStateSize(expected, actual):
            return Diagnostic("eFuse state has \(actual) bytes, expected \(expected)",
                              hint: "the state folder is damaged; recreate it with `espforge device create`")
        case let .badMAC(text):
            return Diagnostic("'\(text)' is not a MAC address",
                              hint: "write six hexadecimal bytes separated by colons, e.g. 24:0a:c4:12:34:56")
        case let .badRevision(rev):
            return Diagnostic("chip revision \(rev) is not supported", hint: "use 0, 1, 2 or 3")
        }
    }
}

/// MAC helpers: CRC-8 as the ROM checks it, parsing and formatting.
public enum MACAddress {
    /// CRC-8, reflected polynomial 0x8C (x⁸+x⁵+x⁴+1), initial value 0, over the MAC bytes in order.
    public static func crc8(_ bytes: [UInt8]) -> UInt8 {
        var crc: UInt8 = 0
        for b in bytes {
            crc ^= b
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x8C : crc >> 1 }
        }
        return crc
    }

    public static func parse(_ text: String) throws(EFuseError) -> [UInt8] {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { throw .badMAC(text) }
        var out: [UInt8] = []
        for p in parts {
            guard p.count >= 1, p.count <= 2, let v = UInt8(p, radix: 16) else { throw .badMAC(text) }
            out.append(v)
        }
        return out
    }

    public static func format(_ bytes: [UInt8]) -> String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }
}

extension EFuseArray {
    /// Factory state of an ESP32: MAC + CRC, package, revision bits, CPU rating, calibration;
    /// everything else 0 (coding scheme NONE, no protection, no keys).
    /// `revision` is the major revision 0…3 (the third revision bit lives in APB_CTRL_DATE,
    /// outside the eFuses). `package` is the 4-bit package code (1 = D0WD).
    public static func esp32Factory(mac: [UInt8], revision: Int, package: Int = 1) throws(EFuseError) -> EFuseArray {
        guard mac.count == 6 else { throw .badMAC(MACAddress.format(mac)) }
        guard (0...3).contains(revision) else { throw .badRevision(revision) }
        let layout = EFuseLayout.esp32
        var a = EFuseArray(layout: layout)
        func set(_ name: String, _ v: UInt64) {
            if let f = layout.field(named: name) { a.factorySet(f, value: v) }
        }
        // MAC bits: byte5 is the least significant byte of word 1, byte0 sits in word 2 bits 15:8.
        var macValue: UInt64 = 0
        for b in mac { macValue = macValue << 8 | UInt64(b) }
        set("MAC", macValue)
        set("MAC_CRC", UInt64(MACAddress.crc8(mac)))
        set("CHIP_PACKAGE", UInt64(package & 7))
        set("CHIP_PACKAGE_4BIT", UInt64((package >> 3) & 1))
        set("CHIP_CPU_FREQ_RATED", 1)
        set("CHIP_VER_REV1", revision >= 1 ? 1 : 0)
        set("CHIP_VER_REV2", revision >= 2 ? 1 : 0)
        set("CLK8M_FREQ", 0x32)
        set("ADC_VREF", 8)
        return a
    }

    /// The factory MAC as stored (read through protection).
    public func esp32MAC() -> [UInt8] {
        Self.esp32MAC(word1: rawWord(block: 0, word: 1), word2: rawWord(block: 0, word: 2))
    }

    /// The factory MAC from block 0's words 1 and 2, where the ESP32 keeps it.
    public static func esp32MAC(word1 w1: UInt32, word2 w2: UInt32) -> [UInt8] {
        [UInt8((w2 >> 8) & 0xFF), UInt8(w2 & 0xFF), UInt8(w1 >> 24),
         UInt8((w1 >> 16) & 0xFF), UInt8((w1 >> 8) & 0xFF), UInt8(w1 & 0xFF)]
    }

    /// The factory MAC read from a chip with two register reads (block 0 words 1 and 2), without
    /// reading the whole eFuse array: for quick probes and for checking a board is still the same.
    public static func readESP32MAC(from access: any RegisterAccess, layout: EFuseLayout = .esp32) throws -> [UInt8] {
        let base = layout.registerBase + layout.readRegisterOffsets[0]
        return esp32MAC(word1: try access.readRegister(base + 4), word2: try access.readRegister(base + 8))
    }
}
