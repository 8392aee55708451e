import EFuse
import ESPCore
import Foundation
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// The soak drill's audit (``SoakAudit``) on ESP32-S3/C3 lines: the chip read through its field
/// map (efuse.bin as the registers show it, efuse-protected.bin for the hidden key block), the
/// flash decrypted with the chip's XTS key, the eFuses FieldMapSecurityFlow must leave.
@Suite("Soak audit, ESP32-S3/C3")
struct FieldMapSoakAuditTests {
    func audit(_ line: FieldMapLine, _ registry: any DeviceRegistry, scan: [String] = []) async throws -> SoakAudit.Figures {
        try await SoakAudit(job: line.job, registry: registry, secureBoot: true)
            .run(deviceFolders: line.targets.map(\.store.directory), scanPaths: scan, poolRows: nil)
    }

    @Test("a clean S3/C3 line audits clean; a flipped ciphertext bit, a stray write, an even SPI_BOOT_CRYPT_CNT and a leaked XTS key are each found",
          fixtures, arguments: ["esp32s3", "esp32c3"])
    func findsWhatIsWrong(chip: String) async throws {
        let line = try FieldMapLine(chip: chip, count: 2, mode: .host)
        defer { line.cleanup() }
        let registry = try await line.registry()
        let results = await line.provision(registry)
        #expect(results.allSatisfy { $0.ok }, "\(results.map { "\($0.failedStep ?? "") \($0.reason ?? "")" })")
        // The device folders are scanned too: the key in efuse-protected.bin is the chip's own.
        var f = try await audit(line, registry, scan: [line.dir.path])
        #expect(f.mustBeZeroHold, "\(f.problems)")
        #expect(f.provisioned == 2 && f.keysSearched == 2 && f.silentWrongWrites == 0 && f.inconsistentRecords == 0)
        for t in line.targets {
            #expect(FileManager.default.fileExists(atPath: t.store.protectedEFusePath), "the XTS key block is read-protected")
        }

        // Device 0: one ciphertext bit of the app. Device 1: a byte far outside every image, and
        // SPI_BOOT_CRYPT_CNT made even (0b011) in its fuses.
        let flash0 = line.targets[0].store.flashPath
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: flash0)))
        bytes[0x10000 + 4000] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: flash0))
        let flash1 = line.targets[1].store.flashPath
        bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: flash1)))
        bytes[0x3F_0000] = 0x00
        try Data(bytes).write(to: URL(fileURLWithPath: flash1))
        var device1 = try line.targets[1].load()
        let map = try #require(device1.chip?.efuseMap)
        var cells = try #require(device1.cells)
        cells.setInteger(try #require(map.field(named: "SPI_BOOT_CRYPT_CNT")), 0b011)
        device1.cells = cells
        try line.targets[1].store.saveEFuses(of: device1)
        // Device 0's XTS key, hex as a key tool prints it, in a log.
        let key = try FieldMapLine.xtsKey(try line.targets[0].load())
        try Data(("note " + hex(key) + "\n").utf8).write(to: line.dir.appendingPathComponent("station.log"))

        f = try await audit(line, registry, scan: [line.dir.path])
        #expect(f.silentWrongWrites == 2, "\(f.problems)")
        #expect(f.keyBytesOutside == 1, "\(f.problems)")
        // Both records now contradict their chips: device 0's app hash, device 1's eFuse summary.
        #expect(f.inconsistentRecords == 2, "\(f.problems)")
        #expect(f.problems.contains { $0.contains("recorded hash of app is not that of the image the flash holds") })
        #expect(f.problems.contains { $0.contains("app: content differs") })
        #expect(f.problems.contains { $0.contains("outside the planned regions written at 0x3f0000") })
        #expect(f.problems.contains { $0.contains("SPI_BOOT_CRYPT_CNT is even") })
        #expect(f.problems.contains { $0.contains("recorded eFuse summary is not what the chip holds") })
        #expect(f.problems.contains { $0.contains("flash-encryption key (hex)") && $0.hasSuffix("station.log") })
        #expect(!f.problems.joined().lowercased().contains(hex(key)), "problem lines never carry key bytes")
        #expect(!f.mustBeZeroHold)
        try await registry.close()
    }

    @Test("a device of another chip than the line's is reported, not audited against the wrong plan", fixtures)
    func otherChip() async throws {
        let line = try FieldMapLine(chip: "esp32s3", count: 1, mode: .host, deviceChip: "esp32c3")
        defer { line.cleanup() }
        let registry = try await line.registry()
        let f = try await audit(line, registry)
        #expect(f.inconsistentRecords == 1 && f.silentWrongWrites == 0)
        #expect(f.problems.contains { $0.contains("is an esp32c3, the line provisions esp32s3") }, "\(f.problems)")
        try await registry.close()
    }
}
