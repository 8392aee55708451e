import BootSimulator
import Foundation
import Partitions
import Testing
import TestSupport
import VirtualDevice

@Suite("espforge device boot")
struct DeviceBootCLITests {
    @Test("boots, remembers the sdkconfig, exits 0; the seed exits 2 with the seed's errors",
          .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
    func cli() throws {
        let root = try TestEnvironment.temporaryDirectory("bootsim-cli")
        defer { try? FileManager.default.removeItem(at: root) }
        let good = root.appendingPathComponent("good").path
        let seed = root.appendingPathComponent("seed").path
        let sdk = root.appendingPathComponent("sdkconfig").path
        try SDKConfig.secure(partitionTableOffset: 0x10000).text.write(toFile: sdk, atomically: true, encoding: .utf8)
        let app = try Scenario.app()
        try DeviceStore(directory: good).create(try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: app), force: false)
        try DeviceStore(directory: seed).create(try Scenario.seedDevice(bootloader: try Scenario.seedBootloader(fixDigest: false), app: app), force: false)

        let first = try Espforge.run(["device", "boot", "--state", good, "--sdkconfig", sdk, "--rng-seed", "3", "--json"])
        #expect(first.status == 0, "\(first.err)")
        let outcome = try JSONDecoder().decode(BootOutcome.self, from: Data(first.stdout))
        #expect(outcome.result == .appStarted && outcome.bootedPartition == "ota_0")
        #expect(outcome.efusesBurned.contains { $0.name == "ABS_DONE_1" })
        #expect(!first.out.contains(String(repeating: "0", count: 64)))
        #expect(FileManager.default.fileExists(atPath: good + "/sdkconfig"))
        // The state was saved: the next boot (remembered sdkconfig) burns nothing.
        let second = try Espforge.run(["device", "boot", "--state", good])
        #expect(second.status == 0, "\(second.err)")
        #expect(second.out.contains("secure boot v2 is already enabled"))
        #expect(!second.out.contains("eFuses burned"))

        let failed = try Espforge.run(["device", "boot", "--state", seed, "--sdkconfig", sdk])
        #expect(failed.status == 2)
        #expect(failed.out.contains("E (") && failed.out.contains("Image hash failed - image is corrupt"))
        #expect(failed.out.contains("No bootable app partitions in the partition table"))

        let missing = try Espforge.run(["device", "boot", "--state", root.appendingPathComponent("none").path])
        #expect(missing.status == 1 && missing.err.contains("no virtual device"))
        let badConfig = root.appendingPathComponent("bad.sdkconfig").path
        try "CONFIG_PARTITION_TABLE_OFFSET=nope\n".write(toFile: badConfig, atomically: true, encoding: .utf8)
        let bad = try Espforge.run(["device", "boot", "--state", good, "--sdkconfig", badConfig])
        #expect(bad.status == 1 && bad.err.contains("CONFIG_PARTITION_TABLE_OFFSET"))
    }
}
