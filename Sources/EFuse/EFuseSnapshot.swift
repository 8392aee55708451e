import ESPCore

/// What the eFuse read registers showed at one moment: every block's words (read-protected bits
/// read as zero, as on the chip), plus the two registers outside the array that decoding needs.
public struct EFuseSnapshot: Sendable, Equatable {
    /// Readable words per block (BLOCK0 7 words, BLOCK1–3 8 words each).
    public var blocks: [[UInt32]]
    /// APB_CTRL_DATE (0x3FF6607C): bit 31 is the third chip-revision bit.
    public var apbCtrlDate: UInt32
    /// EFUSE_DEC_STATUS bits 11:0 (3/4 coding errors).
    public var decodeStatus: UInt32

    public init(blocks: [[UInt32]], apbCtrlDate: UInt32, decodeStatus: UInt32 = 0) {
        self.blocks = blocks
        self.apbCtrlDate = apbCtrlDate
        self.decodeStatus = decodeStatus
    }

    /// What a chip with `array` shows (read protection applied); for tests and the planner.
    public init(array: EFuseArray, layout: EFuseLayout = .esp32, apbCtrlDate: UInt32 = 0x9604_2000) {
        blocks = (0..<layout.blockCount).map { array.readable(block: $0, layout: layout) }
        self.apbCtrlDate = apbCtrlDate
        decodeStatus = 0
    }

    public static let apbCtrlDateAddress: UInt32 = 0x3FF6_607C

    public func word(_ block: Int, _ word: Int) -> UInt32 {
        guard block >= 0, block < blocks.count, word >= 0, word < blocks[block].count else { return 0 }
        return blocks[block][word]
    }

    public var wrDis: UInt32 { word(0, 0) & 0xFFFF }
    public var rdDis: UInt32 { (word(0, 0) >> 16) & 0xF }
    public func isWriteProtected(bit: Int) -> Bool { bit >= 0 && bit < 16 && wrDis & (1 << UInt32(bit)) != 0 }
    public func isReadProtected(bit: Int) -> Bool { bit >= 0 && bit < 4 && rdDis & (1 << UInt32(bit)) != 0 }

    /// The WR_DIS bit that locks `field` (its own, or its block's).
    public func writeProtectBit(of field: EFuseField, layout: EFuseLayout) -> Int? {
        field.writeProtect ?? layout.blockWriteProtectBits[field.block]
    }

    public func readProtectBit(of field: EFuseField, layout: EFuseLayout) -> Int? {
        field.readProtect ?? layout.blockReadProtectBits[field.block]
    }

    public func isWriteable(_ field: EFuseField, layout: EFuseLayout) -> Bool {
        if let b = layout.blockWriteProtectBits[field.block], isWriteProtected(bit: b) { return false }
        if let b = field.writeProtect, isWriteProtected(bit: b) { return false }
        return true
    }

    public func isReadable(_ field: EFuseField, layout: EFuseLayout) -> Bool {
        if let b = layout.blockReadProtectBits[field.block], isReadProtected(bit: b) { return false }
        if let b = field.readProtect, isReadProtected(bit: b) { return false }
        return true
    }

    /// A field's bits as little-endian bytes (bit 0 of the field = bit 0 of byte 0).
    public func bytes(of field: EFuseField) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (field.width + 7) / 8)
        for i in 0..<field.width {
            let abs = field.startBit + i
            if word(field.block, abs / 32) & (1 << UInt32(abs % 32)) != 0 { out[i / 8] |= 1 << UInt8(i % 8) }
        }
        return out
    }

    /// A field of up to 64 bits as an integer.
    public func integer(_ field: EFuseField) -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in bytes(of: field).prefix(8).enumerated() { v |= UInt64(b) << UInt64(8 * i) }
        return v
    }

    public func integer(named name: String, layout: EFuseLayout = .esp32) -> UInt64 {
        layout.field(named: name).map { integer($0) } ?? 0
    }

    /// Block bytes in block order (byte i = bits 8·(i%4)… of word i/4).
    public func blockBytes(_ block: Int) -> [UInt8] {
        guard block >= 0, block < blocks.count else { return [] }
        var out: [UInt8] = []
        for w in blocks[block] { out.appendLE(w) }
        return out
    }

    /// Major revision from CHIP_VER_REV1, CHIP_VER_REV2 and APB_CTRL_DATE bit 31
    /// (combined 0 → 0, 1 → 1, 3 → 2, 7 → 3, anything else → 0).
    public var majorRevision: Int {
        let b0 = (word(0, 3) >> 15) & 1, b1 = (word(0, 5) >> 20) & 1, b2 = (apbCtrlDate >> 31) & 1
        switch b2 << 2 | b1 << 1 | b0 {
        case 1: return 1
        case 3: return 2
        case 7: return 3
        default: return 0
        }
    }

    public var minorRevision: Int { Int((word(0, 5) >> 24) & 3) }
    /// major·100 + minor, as esptool counts (300 = v3.0).
    public var revision: Int { majorRevision * 100 + minorRevision }
    /// Raw CODING_SCHEME (0 NONE, 1 3/4, 2 REPEAT, 3 NONE).
    public var codingSchemeRaw: Int { Int(word(0, 6) & 3) }
    public var codingSchemeIsNone: Bool { codingSchemeRaw == 0 || codingSchemeRaw == 3 }
    public var flashCryptCount: Int { Int((word(0, 0) >> 20) & 0x7F) }
    public var flashEncryptionEnabled: Bool { flashCryptCount.nonzeroBitCount % 2 == 1 }
    public var package: Int { Int((word(0, 3) >> 9) & 7) | Int((word(0, 3) >> 2) & 1) << 3 }

    public var mac: [UInt8] { EFuseArray.esp32MAC(word1: word(0, 1), word2: word(0, 2)) }
    public var macCRC: UInt8 { UInt8((word(0, 2) >> 16) & 0xFF) }
}

extension EFuseSnapshot {
    /// Reads every block through `access` (no reload: the read registers as they stand).
    public static func read(from access: any RegisterAccess, layout: EFuseLayout = .esp32) throws -> EFuseSnapshot {
        var blocks: [[UInt32]] = []
        for b in 0..<layout.blockCount {
            var words: [UInt32] = []
            for w in 0..<layout.blockWordCounts[b] {
                words.append(try access.readRegister(layout.registerBase + layout.readRegisterOffsets[b] + UInt32(4 * w)))
            }
            blocks.append(words)
        }
        let date = try access.readRegister(apbCtrlDateAddress)
        let dec = try access.readRegister(layout.registerBase + EFuseController.decStatusOffset) & 0xFFF
        return EFuseSnapshot(blocks: blocks, apbCtrlDate: date, decodeStatus: dec)
    }
}
