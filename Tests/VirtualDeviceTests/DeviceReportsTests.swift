import ESPCore
import Foundation
import Testing
import VirtualDevice

/// `espforge device create/stats/dump` through the library.
@Suite("DeviceReports")
struct DeviceReportsTests {
    @Test func descriptionFollowsTheFlashSizeAndTheStatePath() throws {
        let d = try DeviceReports.description(chip: "ESP32", flashSize: "8MB", chipRevision: 1, mac: nil, flashID: nil, statePath: "/tmp/a")
        #expect(d.chip == "esp32" && d.flashSize == 8 << 20 && d.chipRevision == 1)
        #expect(d.flashID == 0x17_40EF)
        #expect(d.mac.hasPrefix("24:0a:c4:"))
        let same = try DeviceReports.description(chip: "esp32", flashSize: "8MB", chipRevision: 1, mac: nil, flashID: nil, statePath: "/tmp/./a")
        let other = try DeviceReports.description(chip: "esp32", flashSize: "8MB", chipRevision: 1, mac: nil, flashID: nil, statePath: "/tmp/b")
        #expect(same.mac == d.mac && other.mac != d.mac)
        let given = try DeviceReports.description(chip: "esp32", flashSize: "4MB", chipRevision: 3, mac: "24:0a:c4:12:34:56",
                                                  flashID: "0x1840EF", statePath: "x")
        #expect(given.flashID == 0x18_40EF && given.mac == "24:0a:c4:12:34:56")
        #expect(DeviceReports.createdLine(given, state: "dev1")
                == "created virtual ESP32 rev v3.0 in dev1: MAC 24:0a:c4:12:34:56, flash 4MB (JEDEC id 0x1840ef)")
        #expect(throws: UsageError.self) { try DeviceReports.description(chip: "esp32", flashSize: "big", chipRevision: 3, mac: nil, flashID: nil, statePath: "x") }
        #expect(throws: UsageError.self) { try DeviceReports.description(chip: "esp32", flashSize: "4MB", chipRevision: 3, mac: nil, flashID: "0x1000000", statePath: "x") }
    }

    @Test func statsAndEFusesAsText() throws {
        let device = try Device.create(DeviceDescription(mac: Device.defaultMAC(seed: 3)))
        let stats = DeviceReports.statsText(device.stats).split(separator: "\n").map(String.init)
        #expect(stats.first == "since creation (0 connection(s)):")
        #expect(stats.contains("last connection:") && stats.contains("  commands:       0"))
        #expect(!stats.contains { $0.hasPrefix("faults") })
        let efuses = DeviceReports.efuseText(DeviceInspector.fields(device.efuses)).split(separator: "\n").map(String.init)
        #expect(efuses.count == DeviceInspector.fields(device.efuses).count)
        #expect(efuses.contains { $0.hasPrefix("BLOCK0 MAC ") })
    }
}
