import BootSimulator
import EFuse
import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport
import VirtualDevice

private let fixtures = Testing.ConditionTrait.enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures")

private func field(_ d: Device, _ name: String) -> UInt64 {
    guard let f = EFuseLayout.esp32.field(named: name) else { return 0 }
    return d.efuses.value(of: f, layout: .esp32, raw: true).prefix(8).loadLE(UInt64.self)
}

/// Bootloader lines without their `I (ms) ` prefix.
private func messages(_ o: BootOutcome) -> [String] {
    o.log.filter { $0.source == "bootloader" }.map { line in
        guard let r = line.text.range(of: #"^[IWE] \(\d+\) "#, options: .regularExpression) else { return line.text }
        return String(line.text[line.text.startIndex]) + " " + line.text[r.upperBound...]
    }
}

/// The real ESP-IDF v5.2 bootloader fixture (descriptor: v5.2-dev-254-g1950b15, Apr 25 2023
/// 00:13:32), retargeted to 4MB and signed with key A.
private func v52Bootloader() throws -> [UInt8] {
    let raw = try TestEnvironment.fixtureBytes("images/bootloader_esp32_v5_2.bin")
    let retargeted = try ImageRetarget.retarget(raw, parameters: FlashParameters(size: "4MB"), stripSignature: false)
    return try Scenarios.sign(try Scenarios.trimmed(retargeted), Scenario.keyA)
}

/// Seed-like config without the fixed v4.4 version / compile time.
private var unversionedConfig: BootConfig {
    var c = Scenario.seedConfig
    c.idfVersion = nil
    c.compileTime = nil
    return c
}

@Suite("First-boot simulator: ESP-IDF versions")
struct IDFVersionTests {
    @Test("version labels parse and order; the dialect table picks the newest row at or below")
    func versions() throws {
        let v = try #require(IDFVersion("v5.2-dev-254-g1950b15"))
        #expect(v.major == 5 && v.minor == 2 && v.patch == 0 && v.label == "v5.2-dev-254-g1950b15")
        #expect(IDFVersion("5.1.2")?.label == "v5.1.2")
        #expect(try #require(IDFVersion("4.4.6")) < v)
        #expect(try #require(IDFVersion("v5.0.2")) > IDFVersion.fallback)
        for bad in ["", "five", "v5", "5.x", "v5.1.", "1.2.3.4", "v99999999999999999999.1"] { #expect(IDFVersion(bad) == nil, "\(bad)") }
        // Arbitrary text (descriptor bytes, sdkconfig comments) never crashes the parser.
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let alphabet = Array("v0123456789.-_ abcXYZ\u{0}\u{7f}é")
        for _ in 0..<200 {
            let text = String((0..<Int(rng.next() % 24)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
            if let p = IDFVersion(text) { #expect(p.label.hasPrefix("v"), "seed \(seed): \(text)") }
        }
    }

    @Test("v5.x good first boot (descriptor says v5.2): v5 wording, same eFuses and regions as v4.4", fixtures)
    func v5FirstBoot() throws {
        let app = try Scenario.app()
        var device = try Scenario.seedDevice(bootloader: try v52Bootloader(), app: app)
        let outcome = BootSimulator(config: unversionedConfig).boot(device: &device)
        #expect(outcome.result == .appStarted && outcome.bootedPartition == "ota_0", "\(outcome.consoleText)")
        #expect(outcome.idfVersion == "v5.2-dev-254-g1950b15" && outcome.idfVersionSource == .bootloaderDescriptor)
        let m = messages(outcome)
        // Banner: version and full compile date from the descriptor, Multicore line, vX.Y revision.
        let banner = ["I boot: ESP-IDF v5.2-dev-254-g1950b15 2nd stage bootloader",
                      "I boot: compile time Apr 25 2023 00:13:32",
                      "I boot: Multicore bootloader",
                      "I boot: chip revision: v3.0",
                      "I boot.esp32: SPI Speed      : 40MHz",
                      "I boot.esp32: SPI Mode       : DOUT",
                      "I boot.esp32: SPI Flash Size : 4MB"]
        #expect(Array(m.prefix(banner.count)) == banner)
        // Secure Boot V2, v5 order: digests, burn, match, secure features, commit.
        let sb = ["I secure_boot_v2: Secure boot digests absent, generating..",
                  "I secure_boot_v2: Digests successfully calculated, 1 valid signatures (image offset 0x1000)",
                  "I secure_boot_v2: 1 signature block(s) found appended to the bootloader.",
                  "I secure_boot_v2: Burning public key hash to eFuse",
                  "I efuse: Writing EFUSE_BLK_KEY1 with purpose 3",
                  "I secure_boot_v2: Digests successfully calculated, 1 valid signatures (image offset 0x60000)",
                  "I secure_boot_v2: 1 signature block(s) found appended to the app.",
                  "I secure_boot_v2: Application key(0) matches with bootloader key(0).",
                  "I secure_boot_v2: blowing secure boot efuse...",
                  "I secure_boot: Disable JTAG...",
                  "I secure_boot: Disable ROM BASIC interpreter fallback...",
                  "W secure_boot: UART ROM Download mode kept enabled - SECURITY COMPROMISED",
                  "I efuse: Batch mode. Prepared fields are committed",
                  "I secure_boot_v2: Secure boot permanently enabled"]
        let start = try #require(m.firstIndex(of: sb[0]), "\(outcome.consoleText)")
        #expect(Array(m[start..<min(m.count, start + sb.count)]) == sb)
        // Flash encryption, v5 key generation through esp_efuse_write_keys.
        let fe = ["I flash_encrypt: Generating new flash encryption key...",
                  "I efuse: Writing EFUSE_BLK_KEY0 with purpose 2",
                  "I flash_encrypt: Setting CRYPT_CONFIG efuse to 0xF",
                  "W flash_encrypt: Not disabling UART bootloader encryption",
                  "I flash_encrypt: Disable UART bootloader decryption...",
                  "I flash_encrypt: Disable UART bootloader MMU cache...",
                  "I flash_encrypt: Disable JTAG...",
                  "I flash_encrypt: Disable ROM BASIC interpreter fallback...",
                  "I efuse: Batch mode. Prepared fields are committed"]
        let feStart = try #require(m.firstIndex(of: fe[0]), "\(outcome.consoleText)")
        #expect(Array(m[feStart..<min(m.count, feStart + fe.count)]) == fe)
        // None of the v4.4-only wording.
        for old in ["Burning public key hash to efuse", "Read & write protecting new key...", "chip revision: 3",
                    "Prevent read disabling of additional efuses..."] {
            #expect(!m.contains { $0.hasSuffix(old) }, "\(old)")
        }
        // Effects are the same as v4.4's.
        var blk2: [UInt8] = []
        for w in device.efuses.blocks[2] { blk2.appendLE(w) }
        #expect(blk2 == (try Scenario.keyA.publicKey.keyDigest()))
        #expect(field(device, "ABS_DONE_1") == 1 && field(device, "FLASH_CRYPT_CNT") == 1)
        #expect(field(device, "FLASH_CRYPT_CONFIG") == 0xF && field(device, "JTAG_DISABLE") == 1)
        #expect(field(device, "UART_DOWNLOAD_DIS") == 0)
        #expect(device.efuses.isWriteProtected(bit: 8) && device.efuses.isWriteProtected(bit: 7) && device.efuses.isWriteProtected(bit: 0))
        #expect(device.efuses.isReadProtected(bit: 0) && !device.efuses.isReadProtected(bit: 1))
        #expect(outcome.encryptedRegions.map(\.name) == ["bootloader", "partition table", "nvs_key", "otadata", "ota_0", "ota_1"])
        // Second power-on: v5 already-enabled wording, nothing burned.
        let before = device.efuses
        let second = BootSimulator(config: unversionedConfig).boot(device: &device)
        #expect(second.booted && device.efuses == before)
        #expect(messages(second).contains("I secure_boot_v2: secure boot v2 is already enabled, continuing.."))
        #expect(messages(second).contains("I flash_encrypt: flash encryption is enabled (3 plaintext flashes left)"))
    }

    @Test("version from the sdkconfig header when the bootloader has no descriptor: 5.1 and 5.0 banners", fixtures)
    func sdkconfigVersion() throws {
        let sdk51 = try SDKConfig.parse("# Espressif IoT Development Framework (ESP-IDF) 5.1.2 Project Configuration\n"
                                        + SDKConfig.secure(partitionTableOffset: 0x10000).text)
        #expect(sdk51.idfVersion == "5.1.2" && sdk51.secureBootV2 && sdk51.partitionTableOffset == 0x10000)
        var config = unversionedConfig
        config.sdkconfig = sdk51
        var device = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app())
        let o51 = BootSimulator(config: config).boot(device: &device)
        #expect(o51.booted && o51.idfVersion == "v5.1.2" && o51.idfVersionSource == .sdkconfig)
        let m51 = messages(o51)
        #expect(Array(m51.prefix(4)) == ["I boot: ESP-IDF v5.1.2 2nd stage bootloader", "I boot: compile time Jan  1 2024 00:00:00",
                                         "I boot: Multicore bootloader", "I boot: chip revision: v3.0"])

        // v5.0: time-only compile time, no Multicore line; a given compile time is printed as is.
        config.sdkconfig.idfVersion = "5.0.2"
        config.compileTime = "00:35:25"
        var d50 = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app())
        let o50 = BootSimulator(config: config).boot(device: &d50)
        #expect(Array(messages(o50).prefix(4)) == ["I boot: ESP-IDF v5.0.2 2nd stage bootloader", "I boot: compile time 00:35:25",
                                                   "I boot: chip revision: v3.0", "I boot.esp32: SPI Speed      : 40MHz"])
        #expect(messages(o50).contains("I secure_boot_v2: Secure boot digests absent, generating.."))

        // No header, no descriptor: v4.4.
        config.sdkconfig.idfVersion = nil
        config.compileTime = nil
        var d44 = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app())
        let o44 = BootSimulator(config: config).boot(device: &d44)
        #expect(o44.idfVersion == "v4.4" && o44.idfVersionSource == .fallback)
        #expect(Array(messages(o44).prefix(3)) == ["I boot: ESP-IDF v4.4 2nd stage bootloader", "I boot: compile time 00:00:00",
                                                   "I boot: chip revision: 3"])
        // The written sdkconfig keeps its version.
        #expect(try SDKConfig.parse(sdk51.text) == sdk51)
    }

    @Test("the descriptor wins over the sdkconfig header; an explicit version wins over both", fixtures)
    func precedence() throws {
        var config = unversionedConfig
        config.sdkconfig.idfVersion = "4.4.6"
        var device = try Scenario.seedDevice(bootloader: try v52Bootloader(), app: try Scenario.app())
        var copy = device
        let o = BootSimulator(config: config).boot(device: &copy)
        #expect(o.idfVersionSource == .bootloaderDescriptor && o.idfVersion == "v5.2-dev-254-g1950b15")
        config.idfVersion = "v4.4"
        let forced = BootSimulator(config: config).boot(device: &device)
        #expect(forced.idfVersionSource == .configured)
        // v4.4 wording; the compile time falls back to the descriptor's time of day.
        #expect(Array(messages(forced).prefix(3)) == ["I boot: ESP-IDF v4.4 2nd stage bootloader", "I boot: compile time 00:13:32",
                                                      "I boot: chip revision: 3"])
        #expect(messages(forced).contains("I secure_boot_v2: Burning public key hash to efuse"))
    }

    @Test("v5.x refusals: key mismatch wording and the full-revision chip check", fixtures)
    func v5Failures() throws {
        var config = unversionedConfig
        config.sdkconfig.idfVersion = "5.3.1"
        var device = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app(key: Scenario.keyB))
        let before = device.efuses
        let mismatch = BootSimulator(config: config).boot(device: &device)
        #expect(mismatch.result == .noBootableApp && device.efuses == before)
        #expect(messages(mismatch).contains("E secure_boot_v2: No application key digest matches the bootloader key digest."))
        #expect(messages(mismatch).contains("E boot: Secure Boot v2 failed (-1)"))

        // An app that needs rev 4 (min_chip_rev_full 400) on a v3.0 chip.
        let app = try Scenarios.app(key: Scenario.keyA, minRevision: 4)
        var device2 = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: app)
        let rev = BootSimulator(config: config).boot(device: &device2)
        #expect(!rev.booted)
        #expect(messages(rev).contains("E boot_comm: Image requires chip rev >= v4.0, but chip is v3.0"), "\(rev.consoleText)")
        #expect(!messages(rev).contains { $0.contains("can't run on lower chip revision") })
        #expect(rev.efusesBurned.isEmpty)
    }
}
