import Crypto
import EFuse
import ESPCore
import Loader
import TestSupport
import Testing
import VirtualDevice
import CZlib
import Foundation

/// A minimal host driving the engine in memory (no sockets).
final class Host {
    let engine: ProtocolEngine
    var decoder = SLIPDecoder()

    init(flashSize: Int = 4 << 20, mac: String = "24:0a:c4:12:34:56") throws {
        engine = ProtocolEngine(device: try Device.create(DeviceDescription(mac: mac, flashSize: flashSize)))
        engine.beginConnection()
    }

    /// Raw frames the device sends in reply to `packet`.
    func frames(_ packet: CommandPacket, chunk: Int = 0) -> [[UInt8]] {
        let wire = SLIP.encode(packet.encode())
        var out: [UInt8] = []
        if chunk > 0 {
            var i = 0
            while i < wire.count { out += engine.receive(wire[i..<min(wire.count, i + chunk)]); i += chunk }
        } else {
            out = engine.receive(wire)
        }
        return decoder.frames(out)
    }

    func send(raw frame: [UInt8]) -> [[UInt8]] { decoder.frames(engine.receive(SLIP.encode(frame))) }

    func command(_ op: Opcode, _ words: [UInt32] = [], extra: [UInt8] = []) throws -> ResponsePacket {
        var d: [UInt8] = []
        for w in words { d.appendLE(w) }
        let f = frames(CommandPacket(op, data: d + extra))
        #expect(f.count >= 1)
        return try ResponsePacket.decode(f[0])
    }

    func ok(_ r: ResponsePacket, output: Int = 0) -> Bool { r.status(outputLength: output).map { $0.status == 0 } ?? false }

    func readReg(_ a: UInt32) throws -> UInt32 { try command(.readReg, [a]).value }

    func writeReg(_ a: UInt32, _ v: UInt32, mask: UInt32 = 0xFFFF_FFFF) throws {
        let r = try command(.writeReg, [a, v, mask, 0])
        #expect(ok(r))
    }

    func dataBlock(_ op: Opcode, seq: UInt32, _ payload: [UInt8]) throws -> ResponsePacket {
        let f = frames(.dataBlock(op, sequence: seq, payload: payload))
        return try ResponsePacket.decode(f[0])
    }

    /// Uploads a fake stub and runs it: the device answers OHAI and switches to stub mode.
    func startStub() throws {
        #expect(ok(try command(.memBegin, [16, 1, 0x1800, 0x4009_0000])))
        #expect(ok(try dataBlock(.memData, seq: 0, [UInt8](repeating: 0x11, count: 16))))
        let f = frames(CommandPacket(.memEnd, data: [0, 0, 0, 0, 0x58, 0x05, 0x09, 0x40]))
        #expect(f.count == 2)
        #expect(f.last == Array("OHAI".utf8))
        #expect(engine.mode == .stub)
    }
}

func zlibCompress(_ data: [UInt8]) -> [UInt8] {
    var destLen = compressBound(uLong(data.count))
    var dest = [UInt8](repeating: 0, count: Int(destLen))
    let rc = compress2(&dest, &destLen, data, uLong(data.count), 9)
    #expect(rc == Z_OK)
    return Array(dest.prefix(Int(destLen)))
}

@Suite struct NORFlashTests {
    @Test func programOnlyClearsBits() {
        var f = NORFlash(size: 0x10000)
        let t = TimeModel()
        f.program(0x10, [0xF0, 0x0F], timing: t)
        f.program(0x10, [0x3C, 0xFF], timing: t)
        #expect(f.read(0x10, 2) == [0x30, 0x0F])
        f.eraseSectors(0x10, 1, timing: t)
        #expect(f.read(0, 0x1000)!.allSatisfy { $0 == 0xFF })
        #expect(f.program(0xFFFF, [0, 0], timing: t) == nil, "out of range")
    }

    @Test func eraseGranularityAndTiming() {
        var f = NORFlash(size: 0x40000)
        let t = TimeModel()
        for s in stride(from: 0, to: 0x40000, by: 0x100) { f.program(s, [UInt8](repeating: 0, count: 0x100), timing: t) }
        #expect(f.pagePrograms == 0x400)
        // 0x0F000..0x21000: one sector, one 64 KiB block, one sector.
        let time = f.eraseRegion(0xF800, 0x11000, timing: t)
        #expect(f.sectorErases == 2 && f.blockErases == 1)
        #expect(abs(time! - (2 * 0.045 + 0.150)) < 1e-9)
        #expect(f.read(0xE000, 0x1000)!.allSatisfy { $0 == 0 })
        #expect(f.read(0xF000, 0x12000)!.allSatisfy { $0 == 0xFF })
        #expect(f.read(0x21000, 0x1000)!.allSatisfy { $0 == 0 })
        // A 300-byte program starting mid-page touches 2 pages.
        var g = NORFlash(size: 0x1000)
        g.program(0x80, [UInt8](repeating: 0, count: 300), timing: t)
        #expect(g.pagePrograms == 2)
    }
}

@Suite struct EngineTests {
    @Test func syncGetsEightRepliesWithROMValue() throws {
        let h = try Host()
        let f = h.frames(CommandPacket(.sync, data: LoaderProtocol.syncPayload), chunk: 1)
        #expect(f.count == 8)
        for frame in f {
            let r = try ResponsePacket.decode(frame)
            #expect(r.opcode == 0x08 && r.value == 0x2012_0707 && r.data == [0, 0, 0, 0])
        }
    }

    @Test func registersAnEsptoolReads() throws {
        let h = try Host()
        #expect(try h.readReg(0x4000_1000) == 0x00F0_1D83)
        #expect(try h.readReg(0x3FF5_A004) == 0xC412_3456)
        #expect(try h.readReg(0x3FF5_A008) == 0x00F5_240A)
        #expect(try h.readReg(0x3FF6_607C) >> 31 == 1)
        #expect(try h.readReg(0x3FF4_0014) == 0x0030_015B)
        let cali = (try h.readReg(0x3FF5_F06C) >> 7) & 0x1FF_FFFF
        #expect(Int(cali) * 15625 * 50 / 40 == 40_000_000)
        #expect(try h.readReg(0x3FF4_4038) & 0x20 == 0, "3.3 V flash strap")
        // Unknown addresses behave as RAM.
        try h.writeReg(0x3FFE_0000, 0x1234_5678)
        #expect(try h.readReg(0x3FFE_0000) == 0x1234_5678)
        try h.writeReg(0x3FFE_0000, 0xFF00_0000, mask: 0xFF00_0000)
        #expect(try h.readReg(0x3FFE_0000) == 0xFF34_5678)
    }

    @Test func unsupportedCommandsAnswerLikeTheROM() throws {
        let h = try Host()
        let r = try h.command(.getSecurityInfo)
        #expect(r.opcode == 0x14 && r.data == [1, 5, 0, 0])
        let e = try h.command(.eraseFlash)
        #expect(e.data == [1, 5, 0, 0], "stub-only command on the ROM")
        let unknown = try ResponsePacket.decode(h.frames(CommandPacket(opcode: 0x77))[0])
        #expect(unknown.data == [1, 5, 0, 0])
    }

    @Test func spiEngineReadsJEDECIdAndSFDP() throws {
        let h = try Host()
        let base: UInt32 = 0x3FF4_2000
        try h.writeReg(base + 0x2C, 23)          // MISO_DLEN
        try h.writeReg(base + 0x1C, 0x9000_0000) // USER: COMMAND | MISO
        try h.writeReg(base + 0x24, 0x7000_009F) // USER2: RDID
        try h.writeReg(base + 0x80, 0)
        try h.writeReg(base + 0x00, 1 << 18)
        #expect(try h.readReg(base) & (1 << 18) == 0)
        #expect(try h.readReg(base + 0x80) == 0x0016_40EF)
        try h.writeReg(base + 0x2C, 31)
        try h.writeReg(base + 0x20, 0x5C00_0007)
        try h.writeReg(base + 0x1C, 0xF000_0000)
        try h.writeReg(base + 0x24, 0x7000_005A)
        try h.writeReg(base + 0x04, 0)
        try h.writeReg(base + 0x00, 1 << 18)
        #expect(try h.readReg(base + 0x80) == 0x5044_4653)
    }

    @Test func romFlashWriteMD5AndSlowRead() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let h = try Host()
        #expect(h.ok(try h.command(.spiAttach, [0, 0])))
        let image = rng.bytes(3000)
        let blocks = (image.count + 0x3FF) / 0x400
        #expect(h.ok(try h.command(.flashBegin, [UInt32(image.count), UInt32(blocks), 0x400, 0x1000])))
        for s in 0..<blocks {
            var block = Array(image[(s * 0x400)..<min(image.count, (s + 1) * 0x400)])
            block += [UInt8](repeating: 0xFF, count: 0x400 - block.count)
            #expect(h.ok(try h.dataBlock(.flashData, seq: UInt32(s), block)), "seed \(seed)")
        }
        #expect(h.engine.device.flash.read(0x1000, image.count) == image, "seed \(seed)")
        let md5 = try h.command(.spiFlashMD5, [0x1000, UInt32(image.count), 0, 0])
        #expect(h.ok(md5, output: 32))
        #expect(String(decoding: md5.data.prefix(32), as: UTF8.self) == Array(Insecure.MD5.hash(data: image)).hexString)
        let slow = try h.command(.readFlashSlow, [0x1000 + 10, 20])
        #expect(slow.data.count == 68 && Array(slow.data[0..<20]) == Array(image[10..<30]))
        // A bad checksum is refused with error 7; the flash is untouched.
        var bad = CommandPacket.dataBlock(.flashData, sequence: 0, payload: [UInt8](repeating: 0, count: 0x400))
        bad.checksum ^= 1
        let r = try ResponsePacket.decode(h.frames(bad)[0])
        #expect(r.data == [1, 7, 0, 0])
        #expect(h.engine.device.flash.read(0x1000, image.count) == image)
    }

    @Test func romCompressedWrite() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let h = try Host()
        let image = rng.bytes(5000) + [UInt8](repeating: 0x42, count: 20000)
        let z = zlibCompress(image)
        let blocks = (z.count + 0x3FF) / 0x400
        let rounded = UInt32((image.count + 0x3FF) / 0x400 * 0x400)
        #expect(h.ok(try h.command(.flashDeflBegin, [rounded, UInt32(blocks), 0x400, 0x10000])))
        for s in 0..<blocks {
            let chunk = Array(z[(s * 0x400)..<min(z.count, (s + 1) * 0x400)])
            #expect(h.ok(try h.dataBlock(.flashDeflData, seq: UInt32(s), chunk)), "seed \(seed)")
        }
        #expect(h.engine.device.flash.read(0x10000, image.count) == image, "seed \(seed)")
        // A corrupt stream is reported as a deflate error.
        #expect(h.ok(try h.command(.flashDeflBegin, [0x1000, 1, 0x400, 0x20000])))
        let r = try h.dataBlock(.flashDeflData, seq: 0, [0x78, 0xDA, 0xFF, 0xFF, 0xFF, 0x00])
        #expect(r.data[0] == 1 && r.data[1] == 0x0B)
    }

    @Test func stubModeReadFlashWithAcksAndEraseRegion() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let h = try Host()
        let data = rng.bytes(0x2800)
        h.engine.device.flash.program(0x3000, data, timing: TimeModel())
        try h.startStub()
        // Stub responses carry 2 status bytes and MD5 as 16 raw bytes.
        let md5 = try h.command(.spiFlashMD5, [0x3000, UInt32(data.count), 0, 0])
        #expect(md5.data.count == 18 && Array(md5.data.prefix(16)) == Array(Insecure.MD5.hash(data: data)))
        // READ_FLASH: packets of 0x1000, at most 2 in flight, host acks each.
        var frames = h.frames(CommandPacket(.readFlash, data: [0x00, 0x30, 0, 0, 0x00, 0x28, 0, 0, 0, 0x10, 0, 0, 2, 0, 0, 0]))
        #expect(try ResponsePacket.decode(frames.removeFirst()).data == [0, 0])
        var received: [UInt8] = []
        var digest: [UInt8]?
        var rounds = 0
        while digest == nil, rounds < 10 {
            rounds += 1
            #expect(frames.count <= 2, "flow control: at most 2 packets in flight")
            var next: [[UInt8]] = []
            for f in frames {
                if received.count == data.count { digest = f; continue }
                received += f
                var ack: [UInt8] = []
                ack.appendLE(UInt32(received.count))
                next += h.send(raw: ack)
            }
            frames = next
            if digest == nil, frames.count == 1, received.count == data.count { digest = frames[0] }
        }
        #expect(received == data, "seed \(seed)")
        #expect(digest == Array(Insecure.MD5.hash(data: data)))
        // ERASE_REGION needs sector alignment.
        #expect(try h.command(.eraseRegion, [0x3000, 0x100]).data == [1, 0xC0])
        #expect(h.ok(try h.command(.eraseRegion, [0x3000, 0x1000])))
        #expect(h.engine.device.flash.read(0x3000, 0x1000)!.allSatisfy { $0 == 0xFF })
        #expect(h.engine.device.flash.read(0x4000, 0x1800) == Array(data[0x1000...]))
    }

    @Test func stubUncompressedWriteStopsAtAnnouncedSize() throws {
        let h = try Host()
        try h.startStub()
        h.engine.device.flash.program(0x2000, [UInt8](repeating: 0, count: 0x100), timing: TimeModel())
        #expect(h.ok(try h.command(.flashBegin, [0x10, 1, 0x4000, 0x1000, 0])))
        // The stub erased 0x1000..0x1FFF only; the padding beyond 16 bytes is not written.
        #expect(h.ok(try h.dataBlock(.flashData, seq: 0, [UInt8](repeating: 0x00, count: 0x4000))))
        #expect(h.engine.device.flash.read(0x1000, 0x11) == [UInt8](repeating: 0, count: 0x10) + [0xFF])
        #expect(h.ok(try h.command(.flashEnd, [1])))
        #expect(h.engine.mode == .stub)
        // Without an encryption engine, encrypted writes are refused rather than silently
        // written in plaintext…
        h.engine.flashEncryption = nil
        #expect(try h.command(.flashBegin, [0x10, 1, 0x4000, 0x1000, 1]).data == [1, 0xFF])
        // …unless a flash encryption engine is installed; then the data goes through it.
        h.engine.flashEncryption = { _, address, plain in plain.map { $0 ^ UInt8(truncatingIfNeeded: address >> 12) } }
        #expect(h.ok(try h.command(.flashBegin, [0x20, 1, 0x4000, 0x5000, 1])))
        #expect(h.ok(try h.dataBlock(.flashData, seq: 0, [UInt8](repeating: 0xF0, count: 0x4000))))
        #expect(h.engine.device.flash.read(0x5000, 0x21) == [UInt8](repeating: 0xF5, count: 0x20) + [0xFF])
    }

    @Test func efuseBurnThroughRegisters() throws {
        let h = try Host()
        let base: UInt32 = 0x3FF5_A000
        try h.writeReg(base + 0x034, 1 << 6)
        try h.writeReg(base + 0x0FC, 0x5A5A)
        try h.writeReg(base + 0x104, 2)
        try h.writeReg(base + 0x0FC, 0x5AA5)
        try h.writeReg(base + 0x104, 1)
        #expect(try h.readReg(base + 0x018) == 1 << 6)
        #expect(h.engine.efusesDirty)
        #expect(h.engine.device.efuses.rawWord(block: 0, word: 6) == 1 << 6)
    }

    @Test func uartDownloadDisableTakesEffectAtTheNextReset() throws {
        let h = try Host()
        let base: UInt32 = 0x3FF5_A000
        try h.writeReg(base + 0x01C, 1 << 27) // BLK0 WDATA0: UART_DOWNLOAD_DIS
        try h.writeReg(base + 0x0FC, 0x5A5A)
        try h.writeReg(base + 0x104, 2)
        #expect(try h.readReg(0x4000_1000) == 0x00F0_1D83, "still in download mode until reset")
        h.engine.endConnection()
        h.engine.beginConnection()
        #expect(h.frames(CommandPacket(.sync, data: LoaderProtocol.syncPayload)).isEmpty)
        #expect(h.engine.mode == .userCode)
    }

    @Test func changeBaudAffectsClockDividerAndWireTime() throws {
        let h = try Host()
        #expect(h.ok(try h.command(.changeBaudrate, [921_600, 0])))
        #expect(h.engine.baud == 921_600)
        #expect(try h.readReg(0x3FF4_0014) & 0xFFFFF == 43)
        let before = h.engine.connection.wireSeconds
        _ = h.engine.receive([UInt8](repeating: 0, count: 92160))
        #expect(abs(h.engine.connection.wireSeconds - before - 1.0) < 1e-9)
    }

    @Test func randomInputNeverCrashes() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let h = try Host(flashSize: 1 << 20)
        for _ in 0..<200 {
            var body: [UInt8] = [0, UInt8.random(in: 0...0x20, using: &rng)]
            let data = rng.bytes(Int.random(in: 0...40, using: &rng))
            body.appendLE(UInt16(data.count))
            body += rng.bytes(4) + data
            _ = h.engine.receive(SLIP.encode(body))
            _ = h.engine.receive(rng.bytes(Int.random(in: 0...64, using: &rng)))
        }
        #expect(h.engine.device.flash.size == 1 << 20, "seed \(seed)")
    }

    @Test func randomCommandsInStubModeNeverCrash() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let h = try Host(flashSize: 1 << 20)
        try h.startStub()
        let ops: [UInt8] = [0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0xD0, 0xD1, 0xD2, 0x0E, 0x09, 0x0A, 0x05, 0x07]
        for _ in 0..<300 {
            var d: [UInt8] = []
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                // Words that are often plausible: small offsets, sizes, big values.
                let w: UInt32 = [UInt32.random(in: 0...0x20_0000, using: &rng), UInt32.random(in: 0...UInt32.max, using: &rng),
                                 0x1000, 0x4000, 0][Int.random(in: 0..<5, using: &rng)]
                d.appendLE(w)
            }
            d += rng.bytes(Int.random(in: 0...64, using: &rng))
            let p = CommandPacket(opcode: ops.randomElement(using: &rng)!, data: d,
                                  checksum: UInt32(LoaderProtocol.checksum(d.dropFirst(min(16, d.count)))))
            _ = h.engine.receive(SLIP.encode(p.encode()))
            if Bool.random(using: &rng) { _ = h.engine.receive(SLIP.encode(rng.bytes(4))) }
        }
        #expect(h.engine.device.flash.size == 1 << 20, "seed \(seed)")
    }
}

@Suite struct FaultTests {
    @Test func faultsAreReproducibleFromSeed() throws {
        let plan = try FaultPlan(spec: "drop=0.01,flip=0.01,stall=0.1:5,disconnect-after=5000")
        let input = [UInt8](repeating: 0x55, count: 4000)
        var a = FaultInjector(plan: plan, seed: 42), b = FaultInjector(plan: plan, seed: 42)
        var c = FaultInjector(plan: plan, seed: 43)
        let ra = a.corrupt(input), rb = b.corrupt(input), rc = c.corrupt(input)
        #expect(ra.bytes == rb.bytes)
        #expect(a.counters == b.counters)
        #expect(ra.bytes != rc.bytes)
        #expect(a.counters.droppedBytes > 0 && a.counters.flippedBits > 0)
        #expect(ra.bytes.count == 4000 - a.counters.droppedBytes)
        let more = a.corrupt(input)
        #expect(more.disconnect && a.counters.disconnects == 1)
        #expect(throws: DeviceError.self) { try FaultPlan(spec: "drop=2") }
        #expect(throws: DeviceError.self) { try FaultPlan(spec: "explode=1") }
    }

    /// `efuse-stuck=BLOCK:WORD:MASK` (S3/C3): the masks of one word add up; bad forms are refused;
    /// an ESP32 board refuses the fault (its controller has no such model).
    @Test func stuckEFuseBits() throws {
        let plan = try FaultPlan(spec: "efuse-stuck=0:4:0x10000,efuse-stuck=0:4:0x1,efuse-stuck=6:7:0x80000000")
        #expect(plan.stuckEFuseBits == [FieldMapController.FuseWord(block: 0, word: 4): 0x10001,
                                        FieldMapController.FuseWord(block: 6, word: 7): 0x8000_0000])
        for bad in ["efuse-stuck=0:4", "efuse-stuck=0:8:1", "efuse-stuck=0:0:0", "efuse-stuck=x:0:1", "efuse-stuck=0:0:0x1FFFFFFFF"] {
            #expect(throws: DeviceError.self, "\(bad)") { try FaultPlan(spec: bad) }
        }
        let dir = try TestEnvironment.temporaryDirectory("espforge-stuck")
        defer { try? FileManager.default.removeItem(at: dir) }
        try DeviceStore(directory: dir.path).create(try Device.create(DeviceDescription(mac: "24:0a:c4:00:00:09")), force: true)
        #expect(throws: DeviceError.self) { try VirtualPort(name: "v", directory: dir.path, faults: "efuse-stuck=0:4:1") }
    }
}

@Suite struct DeviceModelTests {
    @Test func createValidatesAndInspects() throws {
        #expect(throws: DeviceError.self) { try Device.create(DeviceDescription(chip: "esp32s2", mac: "24:0a:c4:00:00:01")) }
        #expect(throws: DeviceError.self) { try Device.create(DeviceDescription(mac: "24:0a:c4:00:00:01", flashSize: 3 << 20)) }
        #expect(throws: EFuseError.self) { try Device.create(DeviceDescription(mac: "nope")) }
        var d = try Device.create(DeviceDescription(mac: "24:0a:c4:00:00:01"))
        #expect(d.powerOn().bootloaderHeaderValid == false)
        var header = [UInt8](repeating: 0, count: 24)
        header[0] = 0xE9; header[1] = 3; header[2] = 2; header[3] = 0x20
        d.flash.program(0x1000, header, timing: TimeModel())
        #expect(d.powerOn().bootloaderHeaderValid)
        let map = DeviceInspector.flashMap(d.flash)
        #expect(map.first == DeviceInspector.Region(start: 0, end: 0x1000, kind: "erased"))
        #expect(map[1] == DeviceInspector.Region(start: 0x1000, end: 0x2000, kind: "image"))
    }
}

@Suite struct DeviceStoreTests {
    @Test func roundTripAndDamagedState() throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-store")
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("d").path
        let store = DeviceStore(directory: dir)
        #expect(throws: DeviceError.stateMissing(dir)) { try store.load() }
        var device = try Device.create(DeviceDescription(mac: "24:0a:c4:01:01:01", flashSize: 1 << 20))
        try store.create(device, force: false)
        #expect(throws: DeviceError.stateExists(dir)) { try store.create(device, force: false) }
        // Incremental sector write-back.
        device.flash.program(0x3000, [1, 2, 3], timing: TimeModel())
        try store.saveFlashSectors(device.flash, sectors: device.flash.takeDirtySectors())
        let loaded = try store.load()
        #expect(loaded.flash.read(0x3000, 4) == [1, 2, 3, 0xFF])
        #expect(loaded.efuses == device.efuses && loaded.description == device.description)
        // Damaged files give one clear error each.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: store.efusePath))
        #expect(throws: DeviceError.self) { try store.load() }
        try Data(repeating: 0xFF, count: 100).write(to: URL(fileURLWithPath: store.flashPath))
        #expect(throws: DeviceError.self) { try store.load() }
        try Data("{".utf8).write(to: URL(fileURLWithPath: store.descriptionPath))
        #expect(throws: DeviceError.self) { try store.load() }
    }
}
