import EFuse
import ESPCore
import Foundation
import Testing
import TestSupport
@testable import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

/// Issue 17 §2: ESP32-S3 / ESP32-C3 virtual devices: factory state and the state folder.
@Suite("S3/C3 virtual devices")
struct FieldMapDeviceTests {
    func mode(_ path: String) -> mode_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : 0
    }

    @Test(arguments: ["esp32s3", "esp32c3"])
    func factoryStateHasMACAndRevisionInBLOCK1(chip: String) throws {
        let d = try DeviceReports.description(chip: chip, flashSize: "4MB", chipRevision: nil, mac: nil, flashID: nil,
                                              statePath: "/tmp/x", minorRevision: 3)
        let device = try Device.create(d)
        let vc = try #require(VirtualChip.named(chip))
        #expect(Array(try MACAddress.parse(device.description.mac).prefix(3)) == vc.macOUI)
        let cells = try #require(device.cells)
        let summary = EFuseFieldMapSummary(words: cells, map: vc.efuseMap)
        #expect(summary.mac == device.description.mac)
        #expect(summary.revision == "v0.3")
        #expect(summary.security.writeProtectedBits.isEmpty)
        #expect(device.description.minorRevision == 3)
    }

    @Test func esp32RejectsAMinorRevisionAndUnknownChipsAreRefused() {
        #expect(throws: UsageError.self) {
            try DeviceReports.description(chip: "esp32", flashSize: "4MB", chipRevision: 3, mac: nil, flashID: nil,
                                          statePath: "x", minorRevision: 1)
        }
        #expect(throws: DeviceError.self) {
            try DeviceReports.description(chip: "esp32h2", flashSize: "4MB", chipRevision: nil, mac: nil, flashID: nil, statePath: "x")
        }
        #expect(throws: DeviceError.self) {
            try Device.create(DeviceDescription(chip: "esp32c3", chipRevision: 4, mac: "58:cf:79:00:00:01"))
        }
    }

    /// efuse.bin is what `espefuse --virt` reads: the read registers' view; a read-protected key
    /// lives only in efuse-protected.bin (0600) and comes back on load.
    @Test func stateFolderKeepsReadProtectedKeysOutOfEfuseBin() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-s3state").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DeviceStore(directory: dir + "/dev")
        var device = try Device.create(DeviceDescription(chip: "esp32s3", chipRevision: 0, package: 0, mac: "7c:df:a1:00:00:17"))
        try store.create(device, force: false)
        let map = EFuseFieldMap.esp32s3
        #expect(try BoundedFile.read(store.efusePath, limit: .deviceState).count == map.registerSpaceSize)
        #expect(!FileManager.default.fileExists(atPath: store.protectedEFusePath))

        var cells = try #require(device.cells)
        let key = try #require(map.field(named: "BLOCK_KEY1"))
        cells.setBytes(key, [UInt8](repeating: 0xA5, count: 32))
        cells.setInteger(try #require(map.field(named: "RD_DIS")), 1 << 1)
        device.cells = cells
        try store.saveEFuses(of: device)
        #expect(mode(store.protectedEFusePath) == 0o600)
        let shown = try EFuseVirtualFile.decode(try BoundedFile.read(store.efusePath, limit: .deviceState), map: map)
        #expect(shown.bytes(of: key).allSatisfy { $0 == 0 })
        #expect(try store.load().cells == cells)
    }
}
