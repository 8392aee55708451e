import Foundation
import ProductionLine
import Testing
import TestSupport
import Transport
import VirtualDevice

/// Issue 17 §2: the station's slot probe knows ESP32-S3 / ESP32-C3 boards by their factory MAC
/// (BLOCK1 through the chip's field map), as it knows an ESP32 (block 0): nothing written.
@Suite struct FieldMapBoardProbeTests {
    @Test(arguments: [("esp32", "24:0a:c4:00:17:01"), ("esp32s3", "7c:df:a1:00:17:02"), ("esp32c3", "58:cf:79:00:17:03")])
    func probeKnowsTheBoardByItsMAC(chip: String, mac: String) throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-probe-\(chip)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let d = try Device.create(DeviceDescription(chip: chip, chipRevision: chip == "esp32" ? 3 : 0, mac: mac))
        try DeviceStore(directory: dir.path).create(d, force: true)
        let probe = BoardProbe(ports: VirtualPorts.opener(), before: .noReset)
        #expect(probe.probe("virtual:" + dir.path) == .present(mac: mac))
        let after = try DeviceStore(directory: dir.path).load()
        #expect(after.flash.bytes == d.flash.bytes && after.cells == d.cells && after.efuses == d.efuses, "nothing written")
    }
}
