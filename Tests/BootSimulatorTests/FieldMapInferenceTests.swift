import BootSimulator
import EFuse
import Foundation
import SecureBoot
import Testing
import TestSupport
import VirtualDevice

/// ESP32-S3 / ESP32-C3 boots without an sdkconfig: ``BuildInference`` reads the bootloader at
/// 0x0, SECURE_BOOT_EN / the digest key purposes and SPI_BOOT_CRYPT_CNT through the chip's field
/// map, and the flash through the chip's XTS key once encryption is on. The inferred options are
/// the matching sdkconfig's, so `device boot` and `preflight --simulate` give the same result.
@Suite struct FieldMapInferenceTests {
    typealias F = FieldMapFirstBootTests
    typealias T = FieldMapBootTests
    static let chips = ["esp32s3", "esp32c3"]

    /// Secure Boot V2 only (no flash encryption: nothing in a bare device says so).
    static var secureBootOnly: SDKConfig {
        var c = SDKConfig()
        c.secureBootV2 = true
        return c
    }

    @Test(arguments: chips) func infersTheMatchingSDKConfig(_ chip: String) throws {
        let plan = try F.plan(chip, keys: [try Scenarios.keyA()])
        var d = try F.flashed(chip, plan)
        let bare = BuildInference.infer(device: d)
        #expect(bare.sdkconfig == Self.secureBootOnly, "\(bare.assumptions)")
        #expect(bare.assumptions.contains("partition table found at 0x00008000: CONFIG_PARTITION_TABLE_OFFSET=0x00008000"))
        #expect(bare.assumptions.contains { $0.hasPrefix("the bootloader carries a Secure Boot V2 signature block") })
        let encrypting = BuildInference.infer(device: d, hints: .init(flashEncryption: true))
        #expect(encrypting.sdkconfig == SDKConfig.secure())

        // After the first boot with that sdkconfig the flash is ciphertext: read through the
        // chip's XTS key, the table and the signed bootloader are still found.
        _ = F.boot(&d, SDKConfig.secure())
        let after = BuildInference.infer(device: d)
        #expect(after.sdkconfig == Self.secureBootOnly, "\(after.assumptions)")
        #expect(after.assumptions.contains { $0.hasSuffix("(flash encryption is already on in eFuse; the chip decrypts)") })

        // The eFuses alone: an unsigned image at 0x0 and SECURE_BOOT_EN, or only a digest slot.
        var fuses = try T.device(chip)
        try T.set(&fuses, "SECURE_BOOT_EN", 1)
        let fromFuse = BuildInference.infer(device: fuses)
        #expect(fromFuse.sdkconfig.secureBootV2)
        #expect(fromFuse.assumptions.contains("SECURE_BOOT_EN is burned (Secure Boot V2 already on): CONFIG_SECURE_BOOT_V2_ENABLED=y"))
        var digest = try T.device(chip)
        try T.setKeyBlock(&digest, 3, purpose: 10, bytes: try T.digest(try Scenarios.keyA()))
        let fromDigest = BuildInference.infer(device: digest)
        #expect(fromDigest.sdkconfig.secureBootV2)
        #expect(fromDigest.assumptions.contains("a Secure Boot V2 key digest is burned (slot 1): CONFIG_SECURE_BOOT_V2_ENABLED=y"),
                "\(fromDigest.assumptions)")
        #expect(!BuildInference.infer(device: try T.device(chip)).sdkconfig.secureBootV2)
    }

    /// Two copies of a device: `device boot` with the matching sdkconfig and without one give
    /// the same outcome and leave the same eFuses, on a fresh device and on the secured one.
    @Test(arguments: chips) func deviceBootWithoutSDKConfig(_ chip: String) throws {
        let root = try TestEnvironment.temporaryDirectory("infer-\(chip)")
        defer { try? FileManager.default.removeItem(at: root) }
        let sdk = root.appendingPathComponent("sdkconfig").path
        try Self.secureBootOnly.text.write(toFile: sdk, atomically: true, encoding: .utf8)
        let device = try F.flashed(chip, try F.plan(chip, keys: [try Scenarios.keyA()]))
        let with = root.appendingPathComponent("with").path, without = root.appendingPathComponent("without").path
        try DeviceStore(directory: with).create(device, force: false)
        try DeviceStore(directory: without).create(device, force: false)

        func boot(_ state: String, _ extra: [String]) throws -> BootOutcome {
            let r = try Espforge.run(["device", "boot", "--state", state, "--rng-seed", "3", "--json"] + extra)
            #expect(r.status == 0, "\(r.err)")
            return try JSONDecoder().decode(BootOutcome.self, from: Data(r.stdout))
        }
        for round in 0..<2 {
            let a = try boot(with, ["--sdkconfig", sdk])
            // Only the first boot was told the sdkconfig; it is remembered: forget it again.
            try? FileManager.default.removeItem(atPath: with + "/sdkconfig")
            let b = try boot(without, [])
            #expect(a.result == .appStarted && a.bootedOffset == 0x10000, "round \(round)")
            #expect(b.result == a.result && b.bootedOffset == a.bootedOffset && b.resets == a.resets)
            #expect(b.efusesBurned == a.efusesBurned && b.secureBootEnabled == a.secureBootEnabled)
            #expect(b.consoleText == a.consoleText)
            #expect(try DeviceStore(directory: with).load().cells == (try DeviceStore(directory: without).load().cells))
            #expect(round == 1 ? a.efusesBurned.isEmpty : a.efusesBurned.contains { $0.name == "SECURE_BOOT_EN" })
        }
    }

    /// `preflight --simulate --encrypt` without an sdkconfig boots the plan as with the matching
    /// one (Secure Boot V2, flash encryption in development mode).
    @Test(arguments: chips) func preflightSimulateWithoutSDKConfig(_ chip: String) throws {
        let root = try TestEnvironment.temporaryDirectory("infer-pf-\(chip)")
        defer { try? FileManager.default.removeItem(at: root) }
        let sdk = root.appendingPathComponent("sdkconfig").path
        try SDKConfig.secure().text.write(toFile: sdk, atomically: true, encoding: .utf8)
        var args = ["preflight", "--simulate", "--chip", chip, "--flash-size", "4MB", "--rng-seed", "9", "--encrypt", "--json"]
        for (offset, data) in try F.plan(chip, keys: [try Scenarios.keyA()]).regions {
            let path = root.appendingPathComponent("r\(offset).bin").path
            try Data(data).write(to: URL(fileURLWithPath: path))
            args += ["0x" + String(offset, radix: 16), path]
        }
        func simulation(_ r: ProcessResult) throws -> [String: Any] {
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any], "\(r.out)\(r.err)")
            return try #require(json["simulation"] as? [String: Any], "\(r.out)")
        }
        let with = try simulation(try Espforge.run(args + ["--sdkconfig", sdk]))
        let without = try simulation(try Espforge.run(args))
        #expect(with["result"] as? String == "app-started", "\(with)")
        for key in ["bootLogs", "bootedPartition", "burnedEFuses", "encryptedRegions", "result", "secureBootEnabled", "flashEncryptionEnabled"] {
            #expect(String(describing: with[key]) == String(describing: without[key]), "\(key)")
        }
        #expect((without["assumptions"] as? [String] ?? []).contains { $0.hasPrefix("the plan encrypts") })
        #expect((with["assumptions"] as? [String] ?? []).isEmpty)
    }
}
