import ESPCore
import Foundation
import Testing
import TestSupport
@testable import EFuse

/// Issue 17 §2: the S3/C3 eFuse controller as a register model.
@Suite("S3/C3 eFuse controller")
struct FieldMapControllerTests {
    let map = EFuseFieldMap.esp32c3
    let regs = FieldMapControllerRegisters.esp32c3

    func controller(_ cells: EFuseBlockWords? = nil) -> FieldMapController {
        FieldMapController(map: map, registers: regs, cells: cells ?? EFuseBlockWords(map: map))
    }

    /// Writes PGM_DATA (and the RS check words for BLOCK1…10), CONF=0x5A5A, CMD=PGM|block<<2,
    /// then CONF=0x5AA5, CMD=READ — espefuse's sequence.
    @discardableResult
    func burn(_ c: inout FieldMapController, block: Int, words: [UInt32], check: [UInt8]? = nil) -> FieldMapController.WriteEffect {
        let base = map.controllerBase
        for (i, w) in (words + [UInt32](repeating: 0, count: 8 - words.count)).enumerated() {
            c.write(base + regs.programData + UInt32(4 * i), w)
        }
        if block != 0 {
            var data: [UInt8] = []
            for w in words + [UInt32](repeating: 0, count: 8 - words.count) { data.appendLE(w) }
            let bytes = check ?? EFuseRSCode.checkBytes(data)
            for k in 0..<3 { c.write(base + regs.checkValue + UInt32(4 * k), Array(bytes[(4 * k)..<(4 * k + 4)]).loadLE(UInt32.self)) }
        }
        c.write(base + regs.conf, regs.programOpCode)
        let effect = c.write(base + regs.cmd, regs.programCommand | UInt32(block << 2))
        c.write(base + regs.conf, regs.readOpCode)
        c.write(base + regs.cmd, regs.readCommand)
        return effect
    }

    func readBlock(_ c: FieldMapController, _ b: Int) -> [UInt32] {
        (0..<map.blockWordCounts[b]).map { c.read(map.controllerBase + map.readRegisterOffset(block: b) + UInt32(4 * $0)) }
    }

    @Test func programBurnsOnlyTheNamedBlockAndOnlyZeroToOne() {
        var c = controller()
        #expect(burn(&c, block: 3, words: [0x1234_5678, 0, 0xFFFF_0000]) == .programmed(block: 3, changed: true))
        #expect(readBlock(c, 3).prefix(3) == [0x1234_5678, 0, 0xFFFF_0000])
        #expect(readBlock(c, 2).allSatisfy { $0 == 0 })
        // A second burn ORs; nothing is ever cleared.
        burn(&c, block: 3, words: [0x0000_0001])
        #expect(readBlock(c, 3)[0] == 0x1234_5679)
        #expect(c.read(map.controllerBase + regs.cmd) == 0)
    }

    @Test func aWrongCheckValueBurnsNothing() {
        var c = controller()
        let effect = burn(&c, block: 4, words: [0xDEAD_BEEF], check: [UInt8](repeating: 0, count: 12))
        #expect(effect == .checkValueMismatch(block: 4))
        #expect(readBlock(c, 4).allSatisfy { $0 == 0 })
        #expect(c.rsFailures == 1)
    }

    @Test func aCommandWithoutItsOpCodeIsIgnored() {
        var c = controller()
        c.write(map.controllerBase + regs.programData, 0xFF)
        c.write(map.controllerBase + regs.conf, regs.readOpCode)
        #expect(c.write(map.controllerBase + regs.cmd, regs.programCommand) == .none)
        #expect(c.cells == EFuseBlockWords(map: map))
    }

    @Test func writeProtectionKeepsBlocksAndBLOCK0FieldsAsTheyAre() throws {
        var c = controller()
        // WR_DIS bit 22 locks BLOCK_USR_DATA (BLOCK3); bit 4 locks SPI_BOOT_CRYPT_CNT.
        burn(&c, block: 0, words: [(1 << 22) | (1 << 4)])
        burn(&c, block: 3, words: [0xFF])
        #expect(readBlock(c, 3)[0] == 0)
        let cnt = try #require(map.field(named: "SPI_BOOT_CRYPT_CNT"))
        let pad = try #require(map.field(named: "DIS_PAD_JTAG"))
        var w = [UInt32](repeating: 0, count: 6)
        w[2] = 1 << 18   // SPI_BOOT_CRYPT_CNT bit 0
        w[1] = 1 << 19   // DIS_PAD_JTAG (WR_DIS 2, not burned)
        burn(&c, block: 0, words: w)
        #expect(c.cells.integer(cnt) == 0)
        #expect(c.cells.integer(pad) == 1)
    }

    @Test func readProtectedBlocksReadAsZeroAfterTheNextRead() {
        var c = controller()
        burn(&c, block: 5, words: [UInt32](repeating: 0xA5A5_A5A5, count: 8))
        #expect(readBlock(c, 5).allSatisfy { $0 == 0xA5A5_A5A5 })
        burn(&c, block: 0, words: [0, 1 << 1])   // RD_DIS bit 1 hides BLOCK_KEY1 (BLOCK5)
        #expect(readBlock(c, 5).allSatisfy { $0 == 0 })
        #expect(c.cells.word(5, 0) == 0xA5A5_A5A5)   // still burned: the hardware uses it
    }

    /// RS check bytes equal reedsolo's RSCodec(12) (espefuse's encoder) on random blocks.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func reedSolomonCheckBytesMatchReedsolo() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        var cases: [[Int]] = [[Int](repeating: 0, count: 32), [Int](repeating: 255, count: 32)]
        for _ in 0..<30 { cases.append(rng.bytes(32).map(Int.init)) }
        let script = """
        import json, sys, reedsolo
        rs = reedsolo.RSCodec(12)
        print(json.dumps([list(rs.encode(bytes(c)))[32:] for c in json.load(sys.stdin)]))
        """
        let out = try PythonOracle.run(script: script, cases: cases)
        for (c, o) in zip(cases, out) {
            let expected = (o as? [Int]) ?? []
            #expect(EFuseRSCode.checkBytes(c.map { UInt8($0) }).map(Int.init) == expected, "seed \(seed)")
        }
    }
}
