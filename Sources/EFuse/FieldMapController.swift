import ESPCore

/// The eFuse controller of an ESP32-S3 / ESP32-C3 (chips with an ``EFuseFieldMap``) as a pure
/// register model, as esptool and espefuse drive it through READ_REG / WRITE_REG.
///
/// - The fuse array (``cells``) is what is burned. The read registers show a snapshot of it taken
///   at power-on and after each READ command (CONF = 0x5AA5, CMD = READ_CMD), with read-protected
///   blocks (RD_DIS) as zero.
/// - PGM_DATA0…7 and PGM_CHECK_VALUE0…2 hold what to burn. CONF = 0x5A5A then CMD = PGM_CMD with
///   the block number in bits 5:2 burns that one block: BLOCK0 takes PGM_DATA0…5; BLOCK1…10 take
///   all eight data words and only when the check words are the block's Reed–Solomon (44, 32)
///   check bytes, as espefuse computes them (otherwise nothing is burned and ``rsFailures``
///   counts it; a real chip would burn the bits and report the block as failed on read — see
///   docs/virtual-device-chips.md). Bits under a burned WR_DIS bit (the block's, or for BLOCK0
///   the field's) stay as they are. Fuses only go from 0 to 1.
/// - CMD self-clears: it always reads 0 (the operation is instant). A CMD whose CONF does not
///   match is ignored.
///
/// Per-chip register offsets are data (``FieldMapControllerRegisters``).
public struct FieldMapController: Sendable {
    public let map: EFuseFieldMap
    public let registers: FieldMapControllerRegisters
    /// The burned fuses (read-protected blocks included).
    public private(set) var cells: EFuseBlockWords
    /// What the read registers show.
    public private(set) var shown: EFuseBlockWords
    /// Program cycles that burned, and program cycles refused for a wrong RS check value.
    public private(set) var programCycles = 0
    public private(set) var rsFailures = 0
    /// Volatile registers outside the read registers (PGM_DATA, CHECK_VALUE, CONF, timing…).
    private var volatile: [UInt32]
    /// A fault: fuses that never burn (a weak bit, a failing supply), by block and word. A program
    /// cycle leaves them 0, so a burn reads back without them (`efuse-stuck=` in ``FaultPlan``).
    public var stuckBits: [FuseWord: UInt32] = [:]

    /// One word of one block.
    public struct FuseWord: Sendable, Hashable {
        public var block: Int
        public var word: Int
        public init(block: Int, word: Int) { self.block = block; self.word = word }
    }

    public init(map: EFuseFieldMap, registers: FieldMapControllerRegisters, cells: EFuseBlockWords) {
        self.map = map
        self.registers = registers
        self.cells = cells
        shown = cells
        volatile = [UInt32](repeating: 0, count: map.registerSpaceSize / 4)
        powerOn()
    }

    /// The controller of `chip` ("esp32s3", "esp32c3"), or nil for a chip without one.
    public init?(chip: String, cells: EFuseBlockWords) {
        guard let map = EFuseFieldMap.named(chip), let regs = FieldMapControllerRegisters.named(map.chip),
              cells.blocks.map(\.count) == map.blockWordCounts else { return nil }
        self.init(map: map, registers: regs, cells: cells)
    }

    public var base: UInt32 { map.controllerBase }

    public func contains(_ address: UInt32) -> Bool {
        address >= base && address < base &+ UInt32(map.registerSpaceSize)
    }

    /// Reset: volatile registers to their reset values, read registers reloaded.
    public mutating func powerOn() {
        volatile = [UInt32](repeating: 0, count: map.registerSpaceSize / 4)
        setVolatile(registers.clock, registers.clockReset)
        setVolatile(registers.dacConf, registers.dacConfReset)
        setVolatile(registers.readTiming, registers.readTimingReset)
        setVolatile(registers.writeTiming1, registers.writeTiming1Reset)
        setVolatile(registers.writeTiming2, registers.writeTiming2Reset)
        setVolatile(registers.date, registers.dateValue)
        reload()
    }

    /// The read registers take a new snapshot of the cells (read protection applied).
    public mutating func reload() {
        shown = Self.readable(cells, map: map)
    }

    /// `cells` as the read registers show them: blocks whose RD_DIS bit is burned read as zero.
    public static func readable(_ cells: EFuseBlockWords, map: EFuseFieldMap) -> EFuseBlockWords {
        var out = cells
        let rdDis = map.field(named: "RD_DIS").map { cells.integer($0) } ?? 0
        for (b, bit) in map.blockReadProtectBits.enumerated() {
            guard let bit, rdDis & (1 << UInt64(bit)) != 0 else { continue }
            for w in 0..<map.blockWordCounts[b] { out.setWord(b, w, 0) }
        }
        return out
    }

    private func readRegister(_ off: UInt32) -> (block: Int, word: Int)? {
        guard off >= map.firstReadRegisterOffset, off % 4 == 0 else { return nil }
        var index = Int((off - map.firstReadRegisterOffset) / 4)
        for (b, count) in map.blockWordCounts.enumerated() {
            if index < count { return (b, index) }
            index -= count
        }
        return nil
    }

    private func volatileWord(_ off: UInt32) -> UInt32 {
        let i = Int(off / 4)
        return i < volatile.count ? volatile[i] : 0
    }

    private mutating func setVolatile(_ off: UInt32, _ value: UInt32) {
        let i = Int(off / 4)
        if i < volatile.count { volatile[i] = value }
    }

    public func read(_ address: UInt32) -> UInt32 {
        let off = address &- base
        if let (b, w) = readRegister(off) { return shown.word(b, w) }
        if off == registers.cmd { return 0 }
        return volatileWord(off & ~3)
    }

    /// What a register write did.
    public enum WriteEffect: Sendable, Equatable {
        case none
        /// A program cycle for `block`; `changed` when fuses went from 0 to 1.
        case programmed(block: Int, changed: Bool)
        /// A program cycle refused: the check words are not the block's RS check bytes.
        case checkValueMismatch(block: Int)
        case reloaded
    }

    /// Register write with the controller's side effects.
    @discardableResult
    public mutating func write(_ address: UInt32, _ value: UInt32) -> WriteEffect {
        let off = address &- base
        guard off % 4 == 0, Int(off) < map.registerSpaceSize else { return .none }
        if readRegister(off) != nil { return .none }
        if registers.rsErrors.contains(off) || registers.repeatErrors.contains(off) || off == registers.status
            || off == registers.date { return .none }
        if off == registers.cmd {
            let conf = volatileWord(registers.conf) & 0xFFFF
            if value & registers.programCommand != 0, conf == registers.programOpCode {
                return program(block: Int((value >> 2) & 0xF))
            }
            if value & registers.readCommand != 0, conf == registers.readOpCode {
                reload()
                return .reloaded
            }
            return .none
        }
        setVolatile(off, value)
        return .none
    }

    /// The words PGM_DATA0…7 and the 12 check bytes of PGM_CHECK_VALUE0…2.
    private var programWords: [UInt32] { (0..<8).map { volatileWord(registers.programData + UInt32(4 * $0)) } }
    private var checkBytes: [UInt8] {
        var out: [UInt8] = []
        for k in 0..<3 { out.appendLE(volatileWord(registers.checkValue + UInt32(4 * k))) }
        return out
    }

    private mutating func program(block b: Int) -> WriteEffect {
        guard b >= 0, b < map.blockCount else { return .none }
        let data = programWords
        if b != 0 {
            var bytes: [UInt8] = []
            for w in data { bytes.appendLE(w) }
            guard EFuseReedSolomon.checkValue(bytes) == checkBytes else {
                rsFailures += 1
                return .checkValueMismatch(block: b)
            }
        }
        programCycles += 1
        let mask = writableMask(block: b)
        var changed = false
        for w in 0..<map.blockWordCounts[b] {
            let old = cells.word(b, w)
            let new = old | (data[w] & mask[w] & ~(stuckBits[FuseWord(block: b, word: w)] ?? 0))
            if new != old { cells.setWord(b, w, new); changed = true }
        }
        return .programmed(block: b, changed: changed)
    }

    /// Per word of `block`, the bits a program cycle may still change (WR_DIS applied).
    public func writableMask(block b: Int) -> [UInt32] {
        let count = map.blockWordCounts[b]
        if let bit = map.blockWriteProtectBits[b], cells.isWriteProtected(bit: bit) {
            return [UInt32](repeating: 0, count: count)
        }
        var mask = [UInt32](repeating: 0xFFFF_FFFF, count: count)
        for f in map.fields where f.block == b {
            guard let bit = f.writeProtect, cells.isWriteProtected(bit: bit) else { continue }
            for i in 0..<f.width {
                let abs = f.startBit + i
                if abs / 32 < count { mask[abs / 32] &= ~(1 << UInt32(abs % 32)) }
            }
        }
        return mask
    }
}
