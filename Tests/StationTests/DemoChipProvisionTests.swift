import BootSimulator
import EFuse
import ESPCore
import Foundation
import Manifest
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import ProductionLine
@testable import Provisioning

/// `espforge demo --chip esp32s3|esp32c3` end to end: the line the demo writes is provisioned
/// (both flash-encryption modes the demo offers), every device booted, secured and recorded.
@Suite("demo --chip provisions S3/C3 lines")
struct DemoChipProvisionTests {
    static let cases: [(String, String)] = [("esp32s3", "host"), ("esp32s3", "on-chip"), ("esp32c3", "host"), ("esp32c3", "on-chip")]

    @Test(arguments: cases) func demoLineIsProvisioned(_ chip: String, _ mode: String) async throws {
        let root = try TestEnvironment.temporaryDirectory("demo-\(chip)-\(mode)")
        defer { try? FileManager.default.removeItem(at: root) }
        let options = try DemoLine.Options(devices: 2, dir: root.path + "/line", mode: mode, appSize: "16K", chip: chip)
        try DemoLine.prepare(options)
        let line = try DemoLine.create(options)
        let loaded = try ProvisionSetup.load(manifestPath: line.manifestPath)
        let events = EventLog()
        var run = ProvisionSetup.RunOptions()
        run.onEvent = { events.add($0) }
        let results = try await ProvisionSetup.provision(loaded, ports: line.ports, options: run)
        #expect(results.count == 2 && results.allSatisfy(\.ok), "\(results)")
        #expect(Set(results.compactMap(\.identity)) == ["SN001001", "SN001002"])

        let reg = try await RegistryReports.open(loaded.registryURL)
        let devices = try await RegistryReports.list(reg, status: .provisioned)
        try await reg.close()
        #expect(Set(devices.map(\.identity)) == ["SN001001", "SN001002"])
        // Recorded with the chip's fields: its name, its eFuse summary (no key bytes), the
        // signing key's digest; every device's first boot recorded ok.
        for r in devices {
            #expect(r.chip == chip, "\(r.chip)")
            #expect(r.efuseSummary?["SECURE_BOOT_EN"] == "1", "\(r.efuseSummary ?? [:])")
            #expect(r.efuseSummary?.values.contains { $0.hasPrefix("SECURE_BOOT_DIGEST") } == true)
            #expect(!r.keyDigests.isEmpty)
        }
        for folder in line.deviceFolders {
            let mac = try DeviceStore(directory: folder).load().description.mac
            #expect(events.all.contains { $0.mac == mac && $0.step == "first-boot" && $0.state == .ok }, "\(mac)")
        }

        for state in line.deviceFolders {
            let d = try DeviceStore(directory: state).load()
            let map = try #require(d.chip?.efuseMap)
            let s = EFuseFieldMapSummary(words: try #require(d.cells), map: map)
            #expect(d.chip?.name == chip)
            #expect(s.security.secureBootEnabled && s.security.flashEncryptionEnabled && !s.security.secureBootDigestSlots.isEmpty)
            #expect(!s.security.flashEncryptionKeyPurposes.isEmpty)
            // Powered on again (the sdkconfig remembered in the folder): the app starts, nothing is burned.
            let r = try Espforge.run(["device", "boot", "--state", state, "--json"])
            #expect(r.status == 0, "\(r.err)")
            let o = try JSONDecoder().decode(BootOutcome.self, from: Data(r.stdout))
            #expect(o.result == .appStarted && o.bootedOffset == 0x60000 && o.efusesBurned.isEmpty, "\(o.consoleText)")
        }
    }

    /// The command itself: `espforge demo --chip esp32c3` prints the chip and provisions the tray.
    @Test func demoCommandForTheC3() throws {
        let root = try TestEnvironment.temporaryDirectory("demo-cli-c3")
        defer { try? FileManager.default.removeItem(at: root) }
        let r = try Espforge.run(["demo", "--chip", "esp32c3", "--devices", "2", "--mode", "on-chip", "--app-size", "16K",
                                  "--dir", root.path + "/line"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("espforge demo: 2 virtual ESP32-C3 rev v0.4 (4MB) in"), "\(r.out)")
        #expect(r.out.contains("2 passed: 2 provisioned"), "\(r.out)")
    }
}
