import EFuse
import ESPCore

/// eFuse reads and burns as the bootloader's `esp_efuse` API does them (batch mode included).
extension BootState {
    /// Field `name` of the chip's eFuse map (ESP32 layout or the S3/C3 field map).
    func field(_ name: String) -> EFuseField? {
        if let map = chip.map { return map.field(named: name) }
        return layout.field(named: name)
    }

    /// Minor chip revision (S3/C3: WAFER_VERSION_MINOR; 0 on the ESP32).
    var minorRevision: Int { chip.map == nil ? 0 : (device.description.minorRevision ?? 0) }

    /// Words per eFuse block of the chip.
    var blockWordCounts: [Int] { chip.map?.blockWordCounts ?? layout.blockWordCounts }

    /// The cells of field `name` (no read protection applied), low 64 bits.
    func raw(_ name: String) -> UInt64 {
        guard let f = field(name) else { return 0 }
        if chip.map != nil { return cells.integer(f) }
        return device.efuses.value(of: f, layout: layout, raw: true).prefix(8).loadLE(UInt64.self)
    }

    /// The S3/C3 cells (a blank set for a device that lost them).
    var cells: EFuseBlockWords {
        if let c = device.cells { return c }
        return chip.map.map { EFuseBlockWords(map: $0) } ?? EFuseBlockWords(map: .esp32s3)
    }

    /// The flash-encryption counter: FLASH_CRYPT_CNT (ESP32) or SPI_BOOT_CRYPT_CNT (S3/C3).
    var flashCryptCnt: UInt64 { raw(chip.map == nil ? "FLASH_CRYPT_CNT" : "SPI_BOOT_CRYPT_CNT") }
    var flashEncryptionEnabled: Bool { flashCryptCnt.nonzeroBitCount % 2 == 1 }
    var secureBootEnabled: Bool {
        if chip.map != nil { return raw("SECURE_BOOT_EN") != 0 }
        return device.description.chipRevision >= 3 && raw("ABS_DONE_1") != 0
    }
    func wrDis(_ bit: Int) -> Bool {
        chip.map != nil ? cells.isWriteProtected(bit: bit) : device.efuses.isWriteProtected(bit: bit)
    }
    func rdDis(_ bit: Int) -> Bool {
        if chip.map != nil {
            return bit >= 0 && bit < 7 && raw("RD_DIS") & (1 << UInt64(bit)) != 0
        }
        return device.efuses.isReadProtected(bit: bit)
    }
    func blockRaw(_ b: Int) -> [UInt32] {
        if let map = chip.map { return (0..<map.blockWordCounts[b]).map { cells.word(b, $0) } }
        return device.efuses.blocks[b]
    }

    /// Words to program for `name` = `value` (bits set to 1 only).
    func words(_ name: String, _ value: UInt64) -> (Int, [UInt32])? {
        guard let f = field(name) else { return nil }
        var w = [UInt32](repeating: 0, count: blockWordCounts[f.block])
        for i in 0..<min(f.width, 64) where value & (1 << UInt64(i)) != 0 {
            let abs = f.startBit + i
            if abs / 32 < w.count { w[abs / 32] |= 1 << UInt32(abs % 32) }
        }
        return (f.block, w)
    }

    func emptyWords() -> [[UInt32]] { blockWordCounts.map { [UInt32](repeating: 0, count: $0) } }

    mutating func batchBegin() {
        pendingBatch = emptyWords()
        I("efuse", "Batch mode of writing fields is enabled")
    }

    mutating func batchCancel() {
        pendingBatch = nil
        I("efuse", "Batch mode of writing fields is cancelled")
    }

    /// Writes a field (into the open batch, or burns it at once).
    mutating func write(_ name: String, _ value: UInt64) {
        guard let (block, w) = words(name, value) else { return }
        writeBlockWords(block, w)
    }

    mutating func writeBlockWords(_ block: Int, _ w: [UInt32]) {
        if pendingBatch != nil {
            for i in 0..<w.count { pendingBatch?[block][i] |= w[i] }
        } else {
            var all = emptyWords()
            all[block] = w
            burn(all)
        }
    }

    mutating func burn(_ all: [[UInt32]]) {
        if let map = chip.map { programCells(all, map: map) } else { device.efuses.program(all: all, layout: layout) }
        clock += config.timing.efuseProgram
        device.stats.total.efusePrograms += 1
    }

    mutating func batchCommit() {
        if let b = pendingBatch { burn(b) }
        pendingBatch = nil
        I("efuse", "Batch mode. Prepared fields are committed")
    }

    /// S3/C3 programming: bits only go from 0 to 1; a block whose WR_DIS bit is set keeps its
    /// cells, and in BLOCK0 a field whose own WR_DIS bit is set keeps its bits.
    private mutating func programCells(_ all: [[UInt32]], map: EFuseFieldMap) {
        var c = cells
        let protectedBefore = c
        for (b, words) in all.enumerated() where b < map.blockCount {
            if b > 0, let wp = map.blockWriteProtectBits[b], protectedBefore.isWriteProtected(bit: wp) { continue }
            for (i, w) in words.enumerated() where w != 0 && i < map.blockWordCounts[b] {
                var add = w
                if b == 0 {
                    for f in map.fields where f.block == 0 {
                        guard let wp = f.writeProtect, protectedBefore.isWriteProtected(bit: wp) else { continue }
                        for bit in f.startBit..<(f.startBit + f.width) where bit / 32 == i {
                            add &= ~(1 << UInt32(bit % 32))
                        }
                    }
                }
                c.setWord(b, i, c.word(b, i) | add)
            }
        }
        device.cells = c
    }

    /// The fields whose cells changed since power-on, for the outcome (key blocks never shown).
    func burnedFields() -> [BurnedField] {
        if let map = chip.map { return burnedCells(map) }
        var out: [BurnedField] = []
        for f in layout.fields where f.name != "CUSTOM_MAC_CRC" && f.name != "CUSTOM_MAC" && f.name != "SECURE_VERSION"
            && f.name != "MAC_VERSION" {
            let a = initialEFuses.value(of: f, layout: layout, raw: true)
            let b = device.efuses.value(of: f, layout: layout, raw: true)
            guard a != b else { continue }
            func show(_ v: [UInt8]) -> String {
                if f.width > 64 {
                    // Keys are never shown: only whether the block is programmed.
                    return v.allSatisfy { $0 == 0 } ? "empty" : (f.block == 1 ? "programmed (secret)" : v.hexString)
                }
                return "0x" + String(v.prefix(8).loadLE(UInt64.self), radix: 16)
            }
            out.append(BurnedField(name: f.name, before: show(a), after: show(b)))
        }
        return out
    }
}

extension BootState {
    /// S3/C3: the fields whose cells changed, key blocks shown as empty / programmed only.
    func burnedCells(_ map: EFuseFieldMap) -> [BurnedField] {
        guard let before = initialCells else { return [] }
        let after = cells
        var out: [BurnedField] = []
        for f in map.fields {
            let a = before.bytes(of: f), b = after.bytes(of: f)
            guard a != b else { continue }
            func show(_ v: [UInt8]) -> String {
                if f.width > 64 { return v.allSatisfy { $0 == 0 } ? "empty" : "programmed" }
                return "0x" + String(v.prefix(8).loadLE(UInt64.self), radix: 16)
            }
            out.append(BurnedField(name: f.name, before: show(a), after: show(b)))
        }
        return out
    }
}
