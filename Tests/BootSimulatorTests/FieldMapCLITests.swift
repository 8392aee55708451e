import BootSimulator
import EFuse
import Foundation
import SecureBoot
import Testing
import TestSupport
import VirtualDevice

/// `espforge device boot` and `preflight --simulate` on ESP32-S3/C3 virtual devices.
@Suite struct FieldMapCLITests {
    typealias T = FieldMapBootTests

    @Test(arguments: ["esp32s3", "esp32c3"]) func deviceBootEnablesSecurityAndSavesTheFuses(chip: String) throws {
        let root = try TestEnvironment.temporaryDirectory("bootsim-\(chip)")
        defer { try? FileManager.default.removeItem(at: root) }
        let state = root.appendingPathComponent("dev").path
        let sdk = root.appendingPathComponent("sdkconfig").path
        try SDKConfig.secure(release: true).text.write(toFile: sdk, atomically: true, encoding: .utf8)
        let plan = try FieldMapFirstBootTests.plan(chip, keys: [try Scenarios.keyA()])
        try DeviceStore(directory: state).create(try FieldMapFirstBootTests.flashed(chip, plan), force: false)

        let r = try Espforge.run(["device", "boot", "--state", state, "--sdkconfig", sdk, "--rng-seed", "5", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let o = try JSONDecoder().decode(BootOutcome.self, from: Data(r.stdout))
        #expect(o.result == .appStarted && o.bootedOffset == 0x10000)
        #expect(o.efusesBurned.contains { $0.name == "SECURE_BOOT_EN" })
        #expect(o.efusesBurned.contains { $0.name == "BLOCK_KEY1" && $0.after == "programmed" })

        // Saved: the reloaded device carries the burned fuses (XTS key hidden in efuse.bin, kept
        // in efuse-protected.bin) and boots again without burning anything.
        let reloaded = try DeviceStore(directory: state).load()
        let map = try #require(reloaded.chip?.efuseMap)
        let cells = try #require(reloaded.cells)
        let s = EFuseFieldMapSummary(words: cells, map: map)
        #expect(s.security.secureBootEnabled && s.security.flashEncryptionEnabled)
        #expect(s.field("SPI_BOOT_CRYPT_CNT")?.integer == 0b111)
        let again = try Espforge.run(["device", "boot", "--state", state])
        #expect(again.status == 0, "\(again.err)")
        #expect(again.out.contains("secure boot v2 is already enabled") && !again.out.contains("eFuses burned"))
    }

    @Test(arguments: ["esp32s3", "esp32c3"]) func preflightSimulateBootsTheSignedPlan(chip: String) throws {
        let root = try TestEnvironment.temporaryDirectory("preflight-\(chip)")
        defer { try? FileManager.default.removeItem(at: root) }
        let sdk = root.appendingPathComponent("sdkconfig").path
        try SDKConfig.secure().text.write(toFile: sdk, atomically: true, encoding: .utf8)
        var args = ["preflight", "--simulate", "--chip", chip, "--flash-size", "4MB", "--sdkconfig", sdk, "--rng-seed", "9"]
        for (offset, data) in try FieldMapFirstBootTests.plan(chip, keys: [try Scenarios.keyA()]).regions {
            let path = root.appendingPathComponent("r\(offset).bin").path
            try Data(data).write(to: URL(fileURLWithPath: path))
            args += ["0x" + String(offset, radix: 16), path]
        }
        let r = try Espforge.run(args)
        #expect(r.out.contains("ESP-ROM:"), "\(r.out)\n\(r.err)")
        #expect(r.out.contains("Secure boot permanently enabled"))
        #expect(r.out.contains("Flash encryption completed"))
        #expect(r.out.contains("rst:0x3 (RTC_SW_SYS_RST)"))
    }

    /// Host encryption: `preflight --simulate --state DIR --encrypt` writes the plan through the
    /// device's XTS key (already enabled on the chip); the bootloader finds encryption on and the
    /// app starts without re-encrypting. DIR itself is not changed.
    @Test func preflightSimulateHostEncryptedPlan() throws {
        let chip = "esp32c3"
        let root = try TestEnvironment.temporaryDirectory("preflight-host-\(chip)")
        defer { try? FileManager.default.removeItem(at: root) }
        let state = root.appendingPathComponent("dev").path
        var d = try T.device(chip)
        try T.setKeyBlock(&d, 2, purpose: 4, bytes: (0..<32).map { UInt8($0 * 7 & 0xFF) })
        try T.set(&d, "SPI_BOOT_CRYPT_CNT", 1)
        try DeviceStore(directory: state).create(d, force: false)
        let flashBefore = try DeviceStore(directory: state).load().flash.bytes
        let sdk = root.appendingPathComponent("sdkconfig").path
        var config = SDKConfig()
        config.flashEncryption = true
        try config.text.write(toFile: sdk, atomically: true, encoding: .utf8)
        var args = ["preflight", "--simulate", "--state", state, "--sdkconfig", sdk, "--encrypt"]
        for (offset, data) in try FieldMapFirstBootTests.plan(chip, keys: [try Scenarios.keyA()]).regions {
            let path = root.appendingPathComponent("r\(offset).bin").path
            try Data(data).write(to: URL(fileURLWithPath: path))
            args += ["0x" + String(offset, radix: 16), path]
        }
        let r = try Espforge.run(args)
        #expect(r.out.contains("flash encryption is enabled (1 plaintext flashes left)"), "\(r.out)\n\(r.err)")
        #expect(r.out.contains("encrypted with the chip's key"), "\(r.out)")
        #expect(!r.out.contains("Flash encryption completed"))
        #expect(r.out.contains("Loaded app from partition at offset 0x10000"))
        #expect(try DeviceStore(directory: state).load().flash.bytes == flashBefore)
    }
}
