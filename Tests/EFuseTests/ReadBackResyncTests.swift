import EFuse
import ESPCore
import Testing

/// The ESP32 eFuse client over a link whose replies fell out of step after a program command:
/// reads of `word` of BLOCK0 show `extra` bits, the same every time, until a resync.
final class OutOfStepESP32Access: RegisterAccess, LinkResynchronizing {
    let inner: EngineAccess
    let base: UInt32 = 0x3FF5_A000
    var word = 1
    var extra: UInt32 = 0
    private var outOfStep = false
    private(set) var resyncs = 0
    init() throws { inner = try EngineAccess() }

    func readRegister(_ address: UInt32) throws -> UInt32 {
        var v = try inner.readRegister(address)
        if outOfStep, address == base + EFuseLayout.esp32.readRegisterOffsets[0] + UInt32(4 * word) { v |= extra }
        return v
    }

    func writeRegister(_ address: UInt32, _ value: UInt32) throws {
        try inner.writeRegister(address, value)
        if address == base + EFuseController.cmdOffset, value == 2, extra != 0 { outOfStep = true }
    }

    func resynchronize() throws {
        resyncs += 1
        outOfStep = false
    }
}

/// Issue 15 §3: the ESP32 client judges a burned block after resynchronizing the link, as the
/// S3/C3 client does; a bit really burned beyond the plan is still reported.
@Suite struct ReadBackResyncTests {
    /// `count` bits of BLOCK0 `word` that are neither set before nor planned.
    static func unplanned(_ plan: EFuseBurnPlan, word: Int, count: Int) -> UInt32 {
        var taken = plan.before.blocks[0][word]
        for (b, words) in plan.cycles where b == 0 && word < words.count { taken |= words[word] }
        var out: UInt32 = 0
        for bit in 0..<32 where taken & (1 << UInt32(bit)) == 0 && out.nonzeroBitCount < count { out |= 1 << UInt32(bit) }
        return out
    }

    @Test("bits that read set only while the link is out of step are not stray bits")
    func outOfStepIsReadAgain() throws {
        let access = try OutOfStepESP32Access()
        let client = EFuseClient(access: access)
        let plan = try client.plan([.field(name: "JTAG_DISABLE", value: "1")])
        access.extra = Self.unplanned(plan, word: access.word, count: 2)
        let report = try client.execute(plan)
        #expect(report.allStuck, "\(report.strayBits)")
        #expect(report.strayBits.isEmpty && access.resyncs == 1)
    }

    @Test("a bit really burned beyond the plan in the burned block is still reported after the resync")
    func realStrayStillReported() throws {
        let access = try OutOfStepESP32Access()
        let client = EFuseClient(access: access)
        let plan = try client.plan([.field(name: "JTAG_DISABLE", value: "1")])
        let bit = Self.unplanned(plan, word: 1, count: 1)
        access.inner.strayBeforeProgram = (access.base + EFuseLayout.esp32.writeRegisterOffsets[0] + 4, bit)
        let report = try client.execute(plan)
        #expect(!report.allStuck)
        #expect(report.strayBits == [0: 1])
        #expect(access.resyncs == 1)
    }
}
