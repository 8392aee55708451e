import Crypto
import EFuse
import ESPCore
@testable import Flasher
import Foundation
import Testing
import TestSupport
import VirtualDevice

/// `A-flasher/`: espforge and esptool against the real ECO3 ROM serial loader, flash files
/// compared by sha256 (`flash-compare.json`). The virtual device's ROM mode must reproduce the
/// recorded compressed-write damage, and espforge's flasher must no longer cause it.
@Suite("Golden flasher: the real ESP32 ROM loader (A-flasher)",
       .enabled(if: GoldenCorpus.availableOrCI, "golden corpus ../shared/golden/qemu-esp32 not found"))
struct FlasherRecordingTests {
    static let regions: [(Int, String)] = [
        (0x1000, "inputs/sf-bootloader.bin"), (0x8000, "inputs/sf-partition-table.bin"), (0x10000, "inputs/sf-hello_world.bin"),
    ]

    static func recordedSHA(_ file: String) throws -> String {
        let json = try JSONSerialization.jsonObject(with: Data(try GoldenCorpus.bytes("A-flasher/flash-compare.json")))
        guard let all = (json as? [String: Any])?["sha256"] as? [String: String], let sha = all[file] else {
            throw TestSupportError.missing("sha256 of \(file) in A-flasher/flash-compare.json")
        }
        return sha
    }

    /// A blank 4 MiB virtual device like the recording's QEMU machine (flash 0xFF, rev 3).
    static func blankDevice(_ label: String) throws -> URL {
        let dir = try TestEnvironment.temporaryDirectory(label)
        let dev = try Device.create(DeviceDescription(mac: "00:00:00:00:00:00", flashSize: 4 << 20, flashID: 0x1640C8))
        try DeviceStore(directory: dir.path).create(dev, force: true)
        return dir
    }

    static func options(stub: StubImage?) -> SessionOptions {
        var o = SessionOptions()
        o.ports = VirtualPorts.opener()
        o.stub = stub
        o.before = .noReset
        o.after = .noReset
        o.timeout = 2
        return o
    }

    static func files() throws -> [FlashRegion] {
        try regions.map { FlashRegion(address: $0.0, data: try GoldenCorpus.bytes($0.1), name: $0.1) }
    }

    static func flash(_ dir: URL) throws -> [UInt8] { try DeviceStore(directory: dir.path).load().flash.bytes }

    /// The pre-fix write path: every region sent with FLASH_DEFL_* through the ROM loader.
    static func compressedThroughROM(_ dir: URL, _ regions: [FlashRegion]) throws {
        let session = FlashSession(port: "virtual:" + dir.path, options: options(stub: nil))
        try session.connect()
        let c = try #require(session.client)
        #expect(!c.isStub)
        for r in regions {
            var data = r.data
            if data.count % 4 != 0 { data += [UInt8](repeating: 0xFF, count: 4 - data.count % 4) }
            let z = try #require(Deflate.compress(data))
            try session.sendRegion(c, region: FlashRegion(address: r.address, data: data, name: r.name), data: data, payload: z, compressed: true)
        }
        session.finishWithoutReset()
    }

    @Test("the virtual ROM's compressed write reproduces the recorded flash files byte for byte")
    func romCompressedWriteIsModelled() throws {
        // espforge before the fix: three compressed regions in one session.
        let a = try Self.blankDevice("golden-rom-defl")
        defer { try? FileManager.default.removeItem(at: a) }
        try Self.compressedThroughROM(a, try Self.files())
        let damaged = try Self.flash(a)
        let recordedDamage = try Self.recordedSHA("flash_ef_after_write.bin")
        #expect(GoldenCorpus.sha256(damaged) == recordedDamage)
        // The recorded damage: bytes after each region up to the next 32 KiB of its stream.
        let clean = GoldenCorpus.flashImage(try Self.regions.map { ($0.0, try GoldenCorpus.bytes($0.1)) })
        var changed: [(Int, Int)] = []
        var i = 0
        while i < clean.count {
            if clean[i] != damaged[i] {
                let start = i
                while i < clean.count, clean[i] != damaged[i] { i += 1 }
                changed.append((start, i))
            } else { i += 1 }
        }
        #expect(changed.first.map { $0.0 } == 0x7120 && changed.last.map { $0.1 } == 0x30000, "\(changed.map { (String($0.0, radix: 16), String($0.1, radix: 16)) })")
        #expect(changed.allSatisfy { ($0.0 >= 0x7120 && $0.1 <= 0x8000) || ($0.0 >= 0x8C00 && $0.1 <= 0x10000) || ($0.0 >= 0x2E600 && $0.1 <= 0x30000) })

        // esptool write-flash --compress --no-stub (bootloader + partition table).
        let b = try Self.blankDevice("golden-rom-defl-et")
        defer { try? FileManager.default.removeItem(at: b) }
        try Self.compressedThroughROM(b, Array(try Self.files().prefix(2)))
        let esptoolCompressed = try Self.recordedSHA("flash_etc.bin")
        let got = GoldenCorpus.sha256(try Self.flash(b))
        #expect(got == esptoolCompressed)

        // efn: the partition table alone, compressed, in a new session on the cleanly written set.
        let c = try Self.blankDevice("golden-rom-defl-pt")
        defer { try? FileManager.default.removeItem(at: c) }
        try DeviceStore(directory: c.path).saveWholeFlash(NORFlash(contents: clean))
        try Self.compressedThroughROM(c, [try Self.files()[1]])
        let ptOnly = try Self.recordedSHA("flash_efn.bin")
        let gotPT = GoldenCorpus.sha256(try Self.flash(c))
        #expect(gotPT == ptOnly)
    }

    @Test("espforge's flasher through the ROM writes the A-flasher set exactly as esptool --no-stub did")
    func romWriteEqualsEsptool() throws {
        let dir = try Self.blankDevice("golden-rom-write")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Default options (compression asked for), no stub: the normal line PC without esptool.
        let session = FlashSession(port: "virtual:" + dir.path, options: Self.options(stub: nil))
        try session.connect()
        let facts = try #require(session.facts)
        let plan = FlashSafety.check(FlashRequest(regions: try Self.files()), facts: facts)
        let results = try session.write(plan)
        session.finishWithoutReset()
        #expect(results.allSatisfy { !$0.compressed }, "ESP32 ROM writes must not be compressed")
        let esptool = try Self.recordedSHA("flash_et_after_write.bin")
        let got = GoldenCorpus.sha256(try Self.flash(dir))
        #expect(got == esptool)
    }

    @Test("a partition table written through the ROM leaves the nvs data behind it intact")
    func romWriteKeepsNeighbours() throws {
        let dir = try Self.blankDevice("golden-rom-neighbours")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A chip already flashed (the recorded flash), with data in nvs (0x9000) and in the
        // partition table's own sector after the table (0x8c00).
        var before = GoldenCorpus.flashImage(try Self.regions.map { ($0.0, try GoldenCorpus.bytes($0.1)) })
        for a in stride(from: 0x9000, to: 0xF000, by: 1) { before[a] = UInt8(truncatingIfNeeded: a &* 31) }
        for a in 0x8C00..<0x8C40 { before[a] = 0x5A }
        var dev = try DeviceStore(directory: dir.path).load()
        dev.flash = NORFlash(contents: before)
        try DeviceStore(directory: dir.path).saveWholeFlash(dev.flash)
        let session = FlashSession(port: "virtual:" + dir.path, options: Self.options(stub: nil))
        try session.connect()
        let facts = try #require(session.facts)
        let table = try GoldenCorpus.bytes("inputs/sf-partition-table.bin")
        _ = try session.write(FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x8000, data: table, name: "pt")]), facts: facts))
        session.finishWithoutReset()
        let after = try Self.flash(dir)
        #expect(after == before, "bytes outside the partition table changed")
    }

    @Test("the stub's compressed path writes exactly the regions")
    func stubCompressedWriteIsExact() throws {
        guard let path = StubImage.locate() else {
            #expect(!TestEnvironment.isCI, "esptool's stub JSON not found (the oracle must be installed in CI)")
            return
        }
        let stub = try StubImage.parse(json: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), source: path)
        let dir = try Self.blankDevice("golden-stub-write")
        defer { try? FileManager.default.removeItem(at: dir) }
        let session = FlashSession(port: "virtual:" + dir.path, options: Self.options(stub: stub))
        try session.connect()
        let facts = try #require(session.facts)
        let results = try session.write(FlashSafety.check(FlashRequest(regions: try Self.files()), facts: facts))
        session.finishWithoutReset()
        #expect(results.allSatisfy { $0.compressed })
        let esptool = try Self.recordedSHA("flash_et_after_write.bin")
        let got = GoldenCorpus.sha256(try Self.flash(dir))
        #expect(got == esptool)
    }
}
