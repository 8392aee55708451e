import EFuse
import ESPCore

/// eFuse reads and burns as the bootloader's `esp_efuse` API does them (batch mode included).
extension BootState {
    func field(_ name: String) -> EFuseField? { layout.field(named: name) }

    /// The cells of field `name` (no read protection applied), low 64 bits.
    func raw(_ name: String) -> UInt64 {
        guard let f = field(name) else { return 0 }
        return device.efuses.value(of: f, layout: layout, raw: true).prefix(8).loadLE(UInt64.self)
    }

    var flashCryptCnt: UInt64 { raw("FLASH_CRYPT_CNT") }
    var flashEncryptionEnabled: Bool { flashCryptCnt.nonzeroBitCount % 2 == 1 }
    var secureBootEnabled: Bool { device.description.chipRevision >= 3 && raw("ABS_DONE_1") != 0 }
    func wrDis(_ bit: Int) -> Bool { device.efuses.isWriteProtected(bit: bit) }
    func rdDis(_ bit: Int) -> Bool { device.efuses.isReadProtected(bit: bit) }
    func blockRaw(_ b: Int) -> [UInt32] { device.efuses.blocks[b] }

    /// Words to program for `name` = `value` (bits set to 1 only).
    func words(_ name: String, _ value: UInt64) -> (Int, [UInt32])? {
        guard let f = field(name) else { return nil }
        var w = [UInt32](repeating: 0, count: layout.blockWordCounts[f.block])
        for i in 0..<min(f.width, 64) where value & (1 << UInt64(i)) != 0 {
            let abs = f.startBit + i
            if abs / 32 < w.count { w[abs / 32] |= 1 << UInt32(abs % 32) }
        }
        return (f.block, w)
    }

    func emptyWords() -> [[UInt32]] { layout.blockWordCounts.map { [UInt32](repeating: 0, count: $0) } }

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
        device.efuses.program(all: all, layout: layout)
        clock += config.timing.efuseProgram
        device.stats.total.efusePrograms += 1
    }

    mutating func batchCommit() {
        if let b = pendingBatch { burn(b) }
        pendingBatch = nil
        I("efuse", "Batch mode. Prepared fields are committed")
    }

    /// The fields whose cells changed since power-on, for the outcome (key blocks never shown).
    func burnedFields() -> [BurnedField] {
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
