/// The ESP32 eFuse controller as seen through its registers (base 0x3FF5A000).
///
/// Read registers show a snapshot of the fuse array taken at the last reload (power-on or
/// CONF=0x5AA5 + CMD=1), with read-protected bits as zero. Write registers collect bits to burn;
/// CONF=0x5A5A + CMD=2 ORs all four blocks' write registers into the array (except WR_DIS-locked
/// bits). CMD self-clears, so it always reads 0. A CMD whose CONF does not match is ignored.
public struct EFuseController: Sendable {
    public static let confProgram: UInt32 = 0x5A5A
    public static let confRead: UInt32 = 0x5AA5
    public static let clkOffset: UInt32 = 0x0F8
    public static let confOffset: UInt32 = 0x0FC
    public static let cmdOffset: UInt32 = 0x104
    public static let dacConfOffset: UInt32 = 0x118
    public static let decStatusOffset: UInt32 = 0x11C
    /// Size of the register window.
    public static let windowSize: UInt32 = 0x120

    public let layout: EFuseLayout
    public private(set) var array: EFuseArray
    private var readRegs: [[UInt32]]
    private var writeRegs: [[UInt32]]
    private var clk: UInt32 = 0x0000_FF50 // reset-ish: something non-zero
    private var conf: UInt32 = 0
    private var dacConf: UInt32 = 0x28
    /// Number of program cycles (CMD=2) executed, for statistics.
    public private(set) var programCycles = 0
    /// Set when a program cycle changed the array (the caller persists it).
    public var dirty = false

    public init(layout: EFuseLayout, array: EFuseArray) {
        self.layout = layout
        self.array = array
        readRegs = layout.blockWordCounts.map { [UInt32](repeating: 0, count: $0) }
        writeRegs = readRegs
        reload()
    }

    public var base: UInt32 { layout.registerBase }

    public func contains(_ address: UInt32) -> Bool {
        address >= base && address < base &+ Self.windowSize
    }

    /// Copies the array into the read registers (read protection applied), clears write registers.
    public mutating func reload() {
        for b in 0..<layout.blockCount {
            readRegs[b] = array.readable(block: b, layout: layout)
            writeRegs[b] = [UInt32](repeating: 0, count: layout.blockWordCounts[b])
        }
    }

    private func locate(_ offset: UInt32, _ table: [UInt32]) -> (Int, Int)? {
        for (b, start) in table.enumerated() {
            let count = UInt32(layout.blockWordCounts[b])
            if offset >= start, offset < start + count * 4, (offset - start) % 4 == 0 {
                return (b, Int((offset - start) / 4))
            }
        }
        return nil
    }

    public func read(_ address: UInt32) -> UInt32 {
        let off = address &- base
        if let (b, w) = locate(off, layout.readRegisterOffsets) { return readRegs[b][w] }
        if let (b, w) = locate(off, layout.writeRegisterOffsets) { return writeRegs[b][w] }
        switch off {
        case Self.clkOffset: return clk
        case Self.confOffset: return conf
        case Self.cmdOffset: return 0
        case Self.dacConfOffset: return dacConf
        case Self.decStatusOffset: return 0
        default: return 0
        }
    }

    /// Register write. Returns true when a program cycle burned fuses.
    @discardableResult
    public mutating func write(_ address: UInt32, _ value: UInt32) -> Bool {
        let off = address &- base
        if let (b, w) = locate(off, layout.writeRegisterOffsets) {
            writeRegs[b][w] = value
            return false
        }
        switch off {
        case Self.clkOffset: clk = value
        case Self.confOffset: conf = value
        case Self.dacConfOffset: dacConf = value
        case Self.cmdOffset:
            if value & 0x2 != 0, conf & 0xFFFF == Self.confProgram {
                let before = array
                array.program(all: writeRegs, layout: layout)
                programCycles += 1
                if array != before { dirty = true; return true }
            } else if value & 0x1 != 0, conf & 0xFFFF == Self.confRead {
                reload()
            }
        default: break // read registers and unknown offsets are read-only
        }
        return false
    }
}
