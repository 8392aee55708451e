import Crypto
import ESPCore
import Loader
import TestSupport
import Testing
import VirtualDevice

/// The virtual stub erases as the data comes (the erase front of esptool's flasher stub), the ROM
/// loader the whole announced range at FLASH_BEGIN.
@Suite struct StubEraseTests {
    static let base = 0x10000
    static let length = 0x40000

    /// A host in stub mode whose flash holds 0x00 over the whole test range and beyond (so that
    /// every erased sector shows as 0xFF and every untouched one as 0x00).
    func preparedHost() throws -> Host {
        let h = try Host()
        h.engine.device.flash.program(0, [UInt8](repeating: 0, count: 0x80000), timing: TimeModel())
        return h
    }

    func isErased(_ h: Host, _ from: Int, _ to: Int) -> Bool {
        h.engine.device.flash.read(from, to - from)!.allSatisfy { $0 == 0xFF }
    }

    func isUntouched(_ h: Host, _ from: Int, _ to: Int) -> Bool {
        h.engine.device.flash.read(from, to - from)!.allSatisfy { $0 == 0 }
    }

    @Test func uncompressedStreamCutShortErasedOnlyWhereItsDataGot() throws {
        var rng = SeededRandom(seed: testSeed())
        let data = rng.bytes(Self.length)
        let h = try preparedHost()
        try h.startStub()
        #expect(h.ok(try h.command(.flashBegin, [UInt32(Self.length), 64, 0x1000, UInt32(Self.base)])))
        // FLASH_BEGIN starts the first erase only: the 64 KiB block at 0x10000.
        #expect(h.engine.connection.blockErases == 1 && h.engine.connection.sectorErases == 0)
        #expect(isUntouched(h, 0x20000, 0x80000))
        for k in 0..<5 {
            #expect(h.ok(try h.dataBlock(.flashData, seq: UInt32(k), Array(data[(k * 0x1000)..<((k + 1) * 0x1000)]))))
        }
        // The stream is cut here (no more data, no FLASH_END): 20 KiB written, one block erased.
        #expect(h.engine.device.flash.read(Self.base, 0x5000)! == Array(data.prefix(0x5000)))
        #expect(isErased(h, 0x15000, 0x20000))
        #expect(isUntouched(h, 0x20000, 0x80000), "sectors beyond the erase front keep their contents")
        #expect(h.engine.connection.blockErases == 1 && h.engine.connection.sectorErases == 0)

        // A restart at 0x14000 (the first 4 KiB piece to write again): its first erase is the
        // sector 0x14000 only.
        let rest = Array(data[0x4000...])
        #expect(h.ok(try h.command(.flashBegin, [UInt32(rest.count), UInt32(rest.count / 0x1000), 0x1000, 0x14000])))
        #expect(h.engine.connection.sectorErases == 1)
        #expect(h.engine.device.flash.read(0x15000, 0x1000)! == [UInt8](repeating: 0xFF, count: 0x1000),
                "the sector after it was erased by the first stream and not written")
        #expect(isUntouched(h, 0x20000, 0x80000))
        for k in 0..<(rest.count / 0x1000) {
            #expect(h.ok(try h.dataBlock(.flashData, seq: UInt32(k), Array(rest[(k * 0x1000)..<((k + 1) * 0x1000)]))))
        }
        #expect(h.ok(try h.command(.flashEnd, [1])))
        #expect(h.engine.device.flash.read(Self.base, Self.length)! == data)
        #expect(isUntouched(h, Self.base + Self.length, 0x80000), "nothing erased past the region")
        // Erased once: the first stream's block, then 12 sectors up to 0x20000 and three blocks.
        // (Erasing the whole range at each FLASH_BEGIN was 4 blocks + 12 sectors + 3 blocks.)
        #expect(h.engine.connection.blockErases == 4 && h.engine.connection.sectorErases == 12)
    }

    /// esp-flasher-stub starts the next erase while it inflates whenever the flash is idle, so a
    /// compressed stream's erase front runs ahead of its data (at 115200 baud a 1 KiB packet takes
    /// 89 ms on the wire, a block erase 150 ms): cut short, the stream has erased ahead of where
    /// its data got, but never past the announced range.
    @Test func compressedStreamErasesAheadOfItsDataButNotPastTheRegion() throws {
        var rng = SeededRandom(seed: testSeed())
        let data = rng.bytes(Self.length / 2) + [UInt8](repeating: 0x5A, count: Self.length / 2)
        let z = zlibCompress(data)
        let packet = 0x400
        let h = try preparedHost()
        try h.startStub()
        let packets = (z.count + packet - 1) / packet
        #expect(h.ok(try h.command(.flashDeflBegin, [UInt32(data.count), UInt32(packets), UInt32(packet), UInt32(Self.base)])))
        // Two packets in (2 KiB of data), the front is a block ahead of the data: the first block
        // erase started at FLASH_BEGIN, the next while the flash was idle.
        for k in 0..<2 {
            #expect(h.ok(try h.dataBlock(.flashDeflData, seq: UInt32(k), Array(z[(k * packet)..<((k + 1) * packet)]))))
        }
        #expect(h.engine.connection.blockErases == 2, "\(h.engine.connection.blockErases)")
        #expect(isErased(h, Self.base + 0x10000, Self.base + 0x20000))
        #expect(isUntouched(h, Self.base + 0x20000, 0x80000))
        // About 100 KiB of the (mostly incompressible) first half, then the stream is cut.
        for k in 2..<100 {
            #expect(h.ok(try h.dataBlock(.flashDeflData, seq: UInt32(k), Array(z[(k * packet)..<((k + 1) * packet)]))))
        }
        var written = 0
        while written < data.count, h.engine.device.flash.read(Self.base + written, 1)! == [data[written]] { written += 1 }
        #expect(written > 0x10000 && written < 0x30000, "the data got into the second or third block: \(written)")
        #expect(isErased(h, Self.base + written + 0x100, Self.base + Self.length), "erased ahead of the data up to the region's end")
        #expect(isUntouched(h, Self.base + Self.length, 0x80000), "nothing erased past the region")
        #expect(h.engine.connection.blockErases == Self.length / 0x10000 && h.engine.connection.sectorErases == 0)
    }

    /// The stub answers a data block before it writes it; the write runs while the next block
    /// comes in, and the next command waits only for what is left of it.
    @Test func theStubAnswersBeforeItWritesAndTheNextCommandWaitsForTheWrite() throws {
        var rng = SeededRandom(seed: testSeed())
        let data = rng.bytes(0x4000)
        let h = try preparedHost()
        try h.startStub()
        #expect(h.ok(try h.command(.flashBegin, [0x8000, 2, 0x4000, UInt32(Self.base)])))
        let t = TimeModel()
        let before = h.engine.connection.virtualSeconds
        let beforeFlash = h.engine.connection.flashSeconds
        #expect(h.ok(try h.dataBlock(.flashData, seq: 0, data)))
        let answered = h.engine.connection.virtualSeconds - before
        let work = h.engine.connection.flashSeconds - beforeFlash
        // Behind the reply: three sector erases (FLASH_BEGIN started the first of the four this
        // 16 KiB needs; 32 KiB is less than a block) and 64 page programs.
        #expect(abs(work - 3 * t.sectorErase - 64 * t.pageProgram) < 1e-9, "flash work \(work) s")
        let wire = t.wireTime(bytes: SLIP.encode(CommandPacket.dataBlock(.flashData, sequence: 0, payload: data).encode()).count,
                              baud: 115_200)
        // The reply came after the block's wire time (1.4 s at 115200 baud, long enough for the
        // first erase), not after its erases and programs.
        #expect(answered > wire && answered < wire + 0.01, "answered after \(answered) s (wire \(wire) s)")
        // An MD5 right after waits for the write: the data is there.
        let md5 = try h.command(.spiFlashMD5, [UInt32(Self.base), 0x4000, 0, 0])
        #expect(Array(md5.data.prefix(16)) == Array(Insecure.MD5.hash(data: data)))
        #expect(h.engine.device.flash.read(Self.base, 0x4000)! == data)
    }

    /// A write that fails after the stub answered its block is answered to the next command,
    /// which does not run (esp-flasher-stub's carried result).
    @Test func aWriteErrorAfterTheReplyAnswersTheNextCommand() throws {
        let h = try preparedHost()
        try h.startStub()
        let junk = [UInt8](repeating: 0x55, count: 0x400)
        let z = zlibCompress([UInt8](repeating: 1, count: 0x1000))
        #expect(h.ok(try h.command(.flashDeflBegin, [0x1000, 1, 0x400, UInt32(Self.base)])))
        // Not a zlib stream, with a right checksum: answered OK, then the inflate fails.
        #expect(h.ok(try h.dataBlock(.flashDeflData, seq: 0, junk)))
        let next = try h.dataBlock(.flashDeflData, seq: 1, z)
        #expect(next.status(outputLength: 0)?.error == LoaderErrorCode.stubInflate.rawValue, "\(next)")
        // The carried error is answered once; the command after it runs normally.
        #expect(h.ok(try h.command(.readReg, [0x3FF5_A000])))
    }

    @Test func fullStreamErasesTheRangeOnceInTheSameTime() throws {
        var rng = SeededRandom(seed: testSeed())
        let data = rng.bytes(Self.length + 0x3000)
        let h = try preparedHost()
        try h.startStub()
        #expect(h.ok(try h.command(.flashBegin, [UInt32(data.count), UInt32(data.count / 0x4000 + 1), 0x4000, UInt32(Self.base)])))
        var k = 0
        while k * 0x4000 < data.count {
            let block = Array(data[(k * 0x4000)..<min(data.count, (k + 1) * 0x4000)])
            #expect(h.ok(try h.dataBlock(.flashData, seq: UInt32(k), block + [UInt8](repeating: 0xFF, count: 0x4000 - block.count))))
            k += 1
        }
        #expect(h.ok(try h.command(.flashEnd, [1])))
        #expect(h.engine.device.flash.read(Self.base, data.count)! == data)
        let c = h.engine.connection
        // The same erases as erasing the range at FLASH_BEGIN (4 blocks and 3 sectors), the same
        // flash time: 4 x 150 ms + 3 x 45 ms + one page program per 256 bytes.
        #expect(c.blockErases == 4 && c.sectorErases == 3)
        let t = TimeModel()
        let expected = 4 * t.blockErase + 3 * t.sectorErase + Double(data.count / 0x100) * t.pageProgram
        #expect(abs(c.flashSeconds - expected) < 1e-9, "flash time \(c.flashSeconds) s, expected \(expected) s")
        #expect(isUntouched(h, Self.base + data.count, 0x80000))
    }

    @Test func romLoaderStillErasesTheWholeRangeAtFlashBegin() throws {
        let h = try preparedHost()
        #expect(h.ok(try h.command(.spiAttach, [0, 0])))
        #expect(h.ok(try h.command(.flashBegin, [0x21000, 0x84, 0x400, UInt32(Self.base)])))
        #expect(isErased(h, Self.base, Self.base + 0x21000))
        #expect(isUntouched(h, Self.base + 0x21000, 0x80000))
        #expect(h.engine.connection.sectorErases == 0x21 && h.engine.connection.blockErases == 0)
    }
}
