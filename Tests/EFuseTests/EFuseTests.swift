import EFuse
import ESPCore
import TestSupport
import Testing

@Suite struct EFuseTests {
    let layout = EFuseLayout.esp32

    @Test func macCRCMatchesRealBoards() throws {
        // A real board: 24:6f:28:7a:d8:84 carries CRC 0x3E; espefuse accepts 0xF5 for 24:0a:c4:12:34:56.
        #expect(MACAddress.crc8(try MACAddress.parse("24:6f:28:7a:d8:84")) == 0x3E)
        #expect(MACAddress.crc8(try MACAddress.parse("24:0a:c4:12:34:56")) == 0xF5)
    }

    @Test func factoryWordsOfD0WDV3() throws {
        let a = try EFuseArray.esp32Factory(mac: MACAddress.parse("24:0a:c4:12:34:56"), revision: 3)
        #expect(a.rawWord(block: 0, word: 0) == 0)
        #expect(a.rawWord(block: 0, word: 1) == 0xC412_3456)
        #expect(a.rawWord(block: 0, word: 2) == 0x00F5_240A)
        #expect(a.rawWord(block: 0, word: 3) == 0x0000_A200)
        #expect(a.rawWord(block: 0, word: 4) == 0x0000_0832)
        #expect(a.rawWord(block: 0, word: 5) == 0x0010_0000)
        #expect(a.rawWord(block: 0, word: 6) == 0)
        #expect(a.esp32MAC() == [0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56])
        for b in 1...3 { #expect(a.blocks[b].allSatisfy { $0 == 0 }) }
    }

    @Test func revisionBits() throws {
        let mac = try MACAddress.parse("24:0a:c4:00:00:01")
        #expect(try EFuseArray.esp32Factory(mac: mac, revision: 0).rawWord(block: 0, word: 3) & 0x8000 == 0)
        let r1 = try EFuseArray.esp32Factory(mac: mac, revision: 1)
        #expect(r1.rawWord(block: 0, word: 3) & 0x8000 != 0 && r1.rawWord(block: 0, word: 5) & 0x10_0000 == 0)
        #expect(throws: EFuseError.badRevision(4)) { try EFuseArray.esp32Factory(mac: mac, revision: 4) }
        #expect(throws: EFuseError.badMAC("24:0a:c4")) { try MACAddress.parse("24:0a:c4") }
        #expect(throws: EFuseError.badMAC("24:0a:c4:00:00:zz")) { try MACAddress.parse("24:0a:c4:00:00:zz") }
    }

    @Test func bitsOnlyGoFromZeroToOne() {
        var a = EFuseArray(layout: layout)
        a.program(block: 3, words: [0x0000_00F0, 0, 0, 0, 0, 0, 0, 0], layout: layout)
        a.program(block: 3, words: [0x0000_000F, 0, 0, 0, 0, 0, 0, 0], layout: layout)
        #expect(a.rawWord(block: 3, word: 0) == 0xFF)
        // "Programming" zeros never clears anything.
        a.program(block: 3, words: [0, 0, 0, 0, 0, 0, 0, 0], layout: layout)
        #expect(a.rawWord(block: 3, word: 0) == 0xFF)
    }

    @Test func writeProtectLocksFieldsAndBlocks() {
        var a = EFuseArray(layout: layout)
        // WR_DIS bit 14 locks JTAG_DISABLE; bit 9 locks BLOCK3.
        a.program(block: 0, words: [(1 << 14) | (1 << 9), 0, 0, 0, 0, 0, 0], layout: layout)
        a.program(block: 0, words: [0, 0, 0, 0, 0, 0, (1 << 6) | (1 << 4)], layout: layout)
        #expect(a.rawWord(block: 0, word: 6) == 1 << 4, "JTAG_DISABLE is locked, ABS_DONE_0 is not")
        a.program(block: 3, words: [1, 2, 3, 4, 5, 6, 7, 8], layout: layout)
        #expect(a.blocks[3].allSatisfy { $0 == 0 })
        // Shared bit 2: FLASH_CRYPT_CNT and UART_DOWNLOAD_DIS together.
        var b = EFuseArray(layout: layout)
        b.program(block: 0, words: [1 << 2, 0, 0, 0, 0, 0, 0], layout: layout)
        b.program(block: 0, words: [(1 << 20) | (1 << 27) | (1 << 5), 0, 0, 0, 0, 0, 0], layout: layout)
        #expect(b.rawWord(block: 0, word: 0) == (1 << 2) | (1 << 5))
    }

    @Test func readProtectedBlocksReadAsZero() {
        var a = EFuseArray(layout: layout)
        let key: [UInt32] = (0..<8).map { 0x1111_1111 &* UInt32($0 + 1) }
        a.program(block: 1, words: key, layout: layout)
        #expect(a.readable(block: 1, layout: layout) == key)
        a.program(block: 0, words: [1 << 16, 0, 0, 0, 0, 0, 0], layout: layout) // RD_DIS bit 0 → BLOCK1
        #expect(a.readable(block: 1, layout: layout).allSatisfy { $0 == 0 })
        #expect(a.blocks[1] == key, "the cells keep their value")
        // RD_DIS bit 3 hides FLASH_CRYPT_CONFIG/CODING_SCHEME/KEY_STATUS/BLK3_PART_RESERVE only.
        a.program(block: 0, words: [0, 0, 0, 1 << 14, 0, 0xF000_0000, 0x0000_0441], layout: layout)
        a.program(block: 0, words: [1 << 19, 0, 0, 0, 0, 0, 0], layout: layout)
        let r = a.readable(block: 0, layout: layout)
        #expect(r[5] == 0 && r[6] == 0x40 && r[3] == 0)
    }

    @Test func controllerProgramAndReloadSemantics() {
        var c = EFuseController(layout: layout, array: EFuseArray(layout: layout))
        let base = layout.registerBase
        c.write(base + 0x034, 1 << 6) // BLK0 WDATA6: JTAG_DISABLE
        // CMD without the program op code in CONF is ignored.
        c.write(base + 0x104, 2)
        #expect(c.array.rawWord(block: 0, word: 6) == 0)
        c.write(base + 0x0FC, 0x5A5A)
        c.write(base + 0x104, 2)
        #expect(c.read(base + 0x104) == 0, "CMD self-clears")
        #expect(c.array.rawWord(block: 0, word: 6) == 1 << 6)
        #expect(c.read(base + 0x018) == 0, "read registers change only on reload")
        c.write(base + 0x0FC, 0x5AA5)
        c.write(base + 0x104, 1)
        #expect(c.read(base + 0x018) == 1 << 6)
        #expect(c.read(base + 0x034) == 0, "reload clears the write registers")
        #expect(c.read(base + 0x11C) == 0)
    }

    @Test func stateBytesRoundTrip() throws {
        let a = try EFuseArray.esp32Factory(mac: MACAddress.parse("24:0a:c4:ab:cd:ef"), revision: 3)
        #expect(a.bytes.count == 124)
        #expect(try EFuseArray(layout: layout, bytes: a.bytes) == a)
        #expect(throws: EFuseError.badStateSize(expected: 124, actual: 3)) {
            try EFuseArray(layout: layout, bytes: [1, 2, 3])
        }
    }

    @Test func fieldTableIsConsistent() {
        for f in layout.fields {
            #expect(f.block < layout.blockCount, "\(f.name)")
            #expect(f.startBit + f.width <= layout.blockWordCounts[f.block] * 32, "\(f.name)")
        }
        // No two BLOCK0 fields overlap.
        var seen = [UInt32](repeating: 0, count: 7)
        for f in layout.fields where f.block == 0 {
            let m = layout.mask(of: f)
            for i in 0..<7 {
                #expect(seen[i] & m[i] == 0, "\(f.name) overlaps")
                seen[i] |= m[i]
            }
        }
    }
}
