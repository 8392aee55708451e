import Diagnostics
import EFuse
import ESPCore
import Flasher
import Foundation
import Testing
import TestSupport
import VirtualDevice

/// Issue 17 §2: the facts the safety rules get from a live ESP32-S3 / ESP32-C3 (``FieldMapTarget``,
/// ROM loader, blocks through the field map) equal the facts of the device's own eFuse state, also
/// on a link that flips bits (the readings must agree).
@Suite("S3/C3 target facts over the port")
struct FieldMapTargetTests {
    /// A device with a digest in BLOCK_KEY0 (slot 0), a read-protected XTS key in BLOCK_KEY1,
    /// Secure Boot on and slot 2 revoked.
    func makeDevice(_ chip: String, in dir: URL) throws -> EFuseBlockWords {
        let map = try #require(EFuseFieldMap.named(chip))
        var device = try Device.create(DeviceDescription(chip: chip, chipRevision: 0, mac: chip == "esp32s3" ? "7c:df:a1:00:00:52" : "58:cf:79:00:00:52"))
        var cells = try #require(device.cells)
        func set(_ name: String, _ v: UInt64) throws { cells.setInteger(try #require(map.field(named: name), "\(name)"), v) }
        try set("KEY_PURPOSE_0", UInt64(try #require(map.purposeValue("SECURE_BOOT_DIGEST0"))))
        cells.setBytes(try #require(map.field(named: "BLOCK_KEY0")), (0..<32).map { UInt8($0 * 7 & 0xFF) })
        try set("KEY_PURPOSE_1", UInt64(try #require(map.purposeValue("XTS_AES_128_KEY"))))
        cells.setBytes(try #require(map.field(named: "BLOCK_KEY1")), [UInt8](repeating: 0xA5, count: 32))
        try set("RD_DIS", 1 << 1)
        try set("SECURE_BOOT_EN", 1)
        try set("SECURE_BOOT_KEY_REVOKE2", 1)
        try set("SPI_BOOT_CRYPT_CNT", 1)
        device.cells = cells
        try DeviceStore(directory: dir.path).create(device, force: false)
        return cells
    }

    func options(faults: String? = nil) -> (SessionOptions, String) {
        var o = SessionOptions()
        o.ports = VirtualPorts.opener()
        o.before = .noReset
        o.after = .noReset
        o.timeout = 2
        return (o, faults.map { "?faults=\($0)" } ?? "")
    }

    @Test(arguments: ["esp32s3", "esp32c3"])
    func portFactsEqualTheDeviceState(_ chip: String) throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-fmtarget")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cells = try makeDevice(chip, in: dir)
        let map = try #require(EFuseFieldMap.named(chip))
        let (o, _) = options()
        let read = try FieldMapTarget.read(port: "virtual:" + dir.path, options: o)
        #expect(read.spec.name == chip && read.flashSize == 4 << 20)
        #expect(read.words == FieldMapController.readable(cells, map: map))
        let facts = read.target(source: "port").efuses
        #expect(facts == SecurityFuseFacts(words: cells, map: map))
        let kb = try #require(facts?.keyBlocks)
        #expect(kb.secureBootEnabled && kb.revokedSlots == [2] && kb.spiBootCryptCnt == 1)
        #expect(kb.digestSlots.map(\.slot) == [0])
        // The read-protected XTS key reads as zeros over the port and is never carried.
        #expect(kb.keyBlocks[1].readProtected && kb.keyBlocks[1].content == nil && !kb.keyBlocks[1].empty)
    }

    /// Bit flips on the link: the blocks are read until two readings agree, so the facts are the
    /// same as on a clean link (fixed seeds: no timing involved).
    @Test(arguments: [1, 2, 3] as [UInt64])
    func flippedBitsDoNotChangeTheFacts(_ seed: UInt64) throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-fmtarget-noisy")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cells = try makeDevice("esp32s3", in: dir)
        let (o, _) = options()
        let port = "virtual:" + dir.path + "?faults=flip=0.0005&seed=\(seed)"
        let read = try FieldMapTarget.read(port: port, options: o)
        #expect(read.words == FieldMapController.readable(cells, map: .esp32s3), "seed \(seed)")
        // The link did flip bits (else this test would prove nothing).
        #expect(try DeviceStore(directory: dir.path).load().stats.lastConnectionFaults.flippedBits > 0, "seed \(seed)")
    }
}
