import EFuse
import ESPCore
import Foundation
import Testing
@testable import VirtualDevice

/// A link whose replies fell out of step with its requests after a burn: from the program
/// command on, the read registers of the burned block read with `extra` bits set, the same in
/// every reading (so two readings agree), until the link is resynchronized. Optionally the chip
/// really burns a bit besides the plan (a stray fuse), which no resync makes go away.
final class OutOfStepAccess: RegisterAccess, CrystalFrequencyReporting, LinkResynchronizing {
    let inner: FieldMapEngineAccess
    let map: EFuseFieldMap
    let regs: FieldMapControllerRegisters
    var crystalHz: Int { inner.crystalHz }
    /// Bits that appear in reads of the burned block's word 1 while out of step.
    var extra: UInt32 = 0
    /// A bit of word 1 the chip burns by itself at the first program command.
    var realStray: UInt32 = 0
    private var outOfStep = false
    private(set) var resyncs = 0
    private var burnedBlock = 0
    private var programmed = false
    struct Unknown: Error {}

    init(chip: String, mac: String) throws {
        inner = try FieldMapEngineAccess(chip: chip, mac: mac)
        guard let map = EFuseFieldMap.named(chip), let regs = FieldMapControllerRegisters.named(chip) else { throw Unknown() }
        self.map = map
        self.regs = regs
    }

    func readRegister(_ address: UInt32) throws -> UInt32 {
        var v = try inner.readRegister(address)
        if outOfStep, address == map.controllerBase + map.readRegisterOffset(block: burnedBlock) + 4 { v |= extra }
        return v
    }

    func writeRegister(_ address: UInt32, _ value: UInt32) throws {
        let command = address == map.controllerBase + regs.cmd ? value & (regs.programCommand | regs.readCommand) : 0
        if command == regs.readCommand, programmed, realStray != 0 {
            // Before the program cycle's reload, the chip burns a fuse of its own (a second
            // program cycle behind the client's back): a real stray bit.
            let base = map.controllerBase, engine = inner.engine
            engine.writeRegister(base + regs.programData + 4, realStray)
            engine.writeRegister(base + regs.conf, regs.programOpCode)
            engine.writeRegister(base + regs.cmd, regs.programCommand | UInt32(burnedBlock) << 2)
            engine.writeRegister(base + regs.programData + 4, 0)
            engine.writeRegister(base + regs.conf, regs.readOpCode)
            realStray = 0
        }
        try inner.writeRegister(address, value)
        if command == regs.programCommand {
            burnedBlock = Int(value >> 2) & 0xF
            outOfStep = extra != 0
            programmed = true
        }
    }

    func resynchronize() throws {
        resyncs += 1
        outOfStep = false
    }
}

/// Issue 15 §3: a burn's read-back is judged after the link is brought back in step, so replies
/// that answered the wrong requests (and agree with each other) are not taken for stray or
/// missing fuses; a fuse really burned besides the plan is still reported.
@Suite struct FieldMapReadBackResyncTests {
    static let chips = ["esp32s3", "esp32c3"]
    static let macs = ["esp32s3": "f4:12:fa:10:20:31", "esp32c3": "58:cf:79:10:20:31"]

    /// The lowest `count` bits of BLOCK0 word 1 that are neither set before nor planned.
    static func unplanned(_ plan: FieldMapBurnPlan, _ before: EFuseBlockWords, count: Int) -> UInt32 {
        let free = ~(before.word(0, 1) | plan.bits[0][1])
        var out: UInt32 = 0
        for bit in 0..<32 where free & (1 << UInt32(bit)) != 0 && out.nonzeroBitCount < count { out |= 1 << UInt32(bit) }
        return out
    }

    @Test("bits that read set only while the link is out of step are not stray bits", arguments: chips)
    func outOfStepReadBackIsReadAgain(chip: String) throws {
        let access = try OutOfStepAccess(chip: chip, mac: try #require(Self.macs[chip]))
        let client = try FieldMapEFuseClient(access: access, chip: chip)
        let (plan, before) = try client.plan(.burn([("DIS_PAD_JTAG", "1")]))
        access.extra = Self.unplanned(plan, before, count: 2)
        let report = try client.execute(plan, before: before)
        #expect(report.allStuck, "\(report.lines)")
        #expect(report.blocks.map(\.strayBits) == [0] && report.blocks.map(\.missingBits) == [0])
        #expect(access.resyncs == 1, "the link was resynchronized once, before judging")
        #expect(access.inner.cells == plan.applied(to: before, map: client.map, hideReadProtected: false))
    }

    @Test("a fuse really burned besides the plan is still reported after the resync", arguments: chips)
    func realStrayBitIsReported(chip: String) throws {
        let access = try OutOfStepAccess(chip: chip, mac: try #require(Self.macs[chip]))
        let client = try FieldMapEFuseClient(access: access, chip: chip)
        let (plan, before) = try client.plan(.burn([("DIS_PAD_JTAG", "1")]))
        access.realStray = Self.unplanned(plan, before, count: 1)
        let report = try client.execute(plan, before: before)
        #expect(!report.allStuck)
        #expect(report.blocks.map(\.strayBits) == [1], "\(report.lines)")
        #expect(access.resyncs == 1)
    }

    @Test("without a resynchronizing link the out-of-step reading is what is judged (the failure this fixes)", arguments: chips)
    func withoutResyncTheFalseStrayShows(chip: String) throws {
        let access = try OutOfStepAccess(chip: chip, mac: try #require(Self.macs[chip]))
        access.extra = 0x0000_0300
        let plain = PlainAccess(access)
        let client = try FieldMapEFuseClient(access: plain, chip: chip)
        let (plan, before) = try client.plan(.burn([("DIS_PAD_JTAG", "1")]))
        access.extra = Self.unplanned(plan, before, count: 2)
        let report = try client.execute(plan, before: before)
        #expect(report.blocks.map(\.strayBits) == [2])
    }
}

/// The same access without ``LinkResynchronizing``.
final class PlainAccess: RegisterAccess, CrystalFrequencyReporting {
    let inner: OutOfStepAccess
    init(_ inner: OutOfStepAccess) { self.inner = inner }
    var crystalHz: Int { inner.crystalHz }
    func readRegister(_ address: UInt32) throws -> UInt32 { try inner.readRegister(address) }
    func writeRegister(_ address: UInt32, _ value: UInt32) throws { try inner.writeRegister(address, value) }
}
