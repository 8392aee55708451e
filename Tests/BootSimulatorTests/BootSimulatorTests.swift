import BootSimulator
import Crypto
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import ImageFormat
import Partitions
import SecureBoot
import Testing
import TestSupport
import VirtualDevice

private let fixtures = Testing.ConditionTrait.enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures")

private func field(_ d: Device, _ name: String) -> UInt64 {
    guard let f = EFuseLayout.esp32.field(named: name) else { return 0 }
    return d.efuses.value(of: f, layout: .esp32, raw: true).prefix(8).loadLE(UInt64.self)
}

private let securityFields = ["ABS_DONE_0", "ABS_DONE_1", "FLASH_CRYPT_CNT", "FLASH_CRYPT_CONFIG", "JTAG_DISABLE",
                              "CONSOLE_DEBUG_DISABLE", "DISABLE_DL_ENCRYPT", "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE",
                              "UART_DOWNLOAD_DIS", "WR_DIS", "RD_DIS"]

/// The seed's log lines: one boot, from the ROM banner to the last bootloader line.
private func seedLog() throws -> [String] {
    let dir = TestEnvironment.sharedDir.appendingPathComponent("seed")
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".txt") }.sorted()
    let text = try String(contentsOf: dir.appendingPathComponent(try #require(files.first)), encoding: .utf8)
    let all = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let start = try #require(all.firstIndex { $0.hasPrefix("Code:") }) + 1
    let end = try #require(all.firstIndex { $0.contains("No bootable app partitions") })
    var lines = Array(all[start...end])
    // The first banner was cut off by a second power-on ("...(SPets Jul 29 ..."): keep the second.
    lines.removeAll { $0.contains("(SPets") }
    return lines
}

@Suite("First-boot simulator")
struct BootSimulatorTests {
    @Test("the seed reproduces line by line and burns no security eFuse", fixtures)
    func seed() throws {
        var device = try Scenario.seedDevice(bootloader: try Scenario.seedBootloader(fixDigest: false), app: try Scenario.app())
        let before = device.efuses
        let outcome = BootSimulator(config: Scenario.seedConfig).boot(device: &device)
        let simulated = Scenario.normalize(outcome.log.map(\.text))
        let expected = Scenario.normalize(try seedLog())
        for (i, (a, b)) in zip(simulated, expected).enumerated() {
            #expect(a == b, "line \(i + 1): simulated «\(a)» vs seed «\(b)»")
        }
        #expect(simulated.count == expected.count, "simulated \(simulated.count) lines, seed \(expected.count)\n\(outcome.consoleText)")
        #expect(outcome.result == .noBootableApp)
        #expect(outcome.errorCode == 8194)
        #expect(device.efuses == before, "no eFuse may change: \(outcome.efusesBurned)")
        #expect(outcome.efusesBurned.isEmpty)
        #expect(outcome.encryptedRegions.isEmpty)
        // set_actual_ota_seq ran for both slots: otadata[0] now says sequence 2, state VALID.
        let od = try Otadata.parse(try #require(device.flash.read(0x32000, 0x2000)))
        #expect(od.copies[0].sequence == 2 && od.copies[0].crcValid)
        // Timestamps never go backwards.
        let times = outcome.log.filter { $0.source == "bootloader" }.map(\.milliseconds)
        #expect(times == times.sorted())
    }

    @Test("esptool's current header rewrite (digest recomputed) gives 'image valid, signature bad'", fixtures)
    func seedWithFixedDigest() throws {
        var device = try Scenario.seedDevice(bootloader: try Scenario.seedBootloader(fixDigest: true), app: try Scenario.app())
        let outcome = BootSimulator(config: Scenario.seedConfig).boot(device: &device)
        let text = outcome.consoleText
        #expect(text.contains("Sig block 0 invalid: Image digest does not match"))
        #expect(text.contains("W (") && text.contains("esp_image: image valid, signature bad"))
        #expect(!text.contains("Image hash failed"))
        #expect(outcome.result == .noBootableApp && outcome.efusesBurned.isEmpty)
    }

    @Test("good first boot: SBv2 + flash encryption (development) burn, encrypt, reset, boot", fixtures)
    func goodFirstBoot() throws {
        let bootloader = try Scenario.signedBootloader(size: "4MB")
        let app = try Scenario.app()
        var device = try Scenario.seedDevice(bootloader: bootloader, app: app)
        let plainFlash = device.flash.bytes
        let outcome = BootSimulator(config: Scenario.seedConfig).boot(device: &device)
        #expect(outcome.result == .appStarted, "\(outcome.consoleText)")
        #expect(outcome.bootedPartition == "ota_0")
        #expect(outcome.resets == 2)
        // otadata is initialised once, in the first power cycle only.
        #expect(outcome.log.filter { $0.text.hasSuffix("Set actual ota_seq=1 in otadata[0]") }.count == 1)
        // eFuses: digest of the signing key in BLK2, write-protected; SBv2 on; FE key read/write protected.
        var blk2: [UInt8] = []
        for w in device.efuses.blocks[2] { blk2.appendLE(w) }
        #expect(blk2 == (try Scenario.keyA.publicKey.keyDigest()))
        #expect(field(device, "ABS_DONE_1") == 1)
        #expect(field(device, "FLASH_CRYPT_CNT") == 1)
        #expect(field(device, "FLASH_CRYPT_CONFIG") == 0xF)
        #expect(field(device, "JTAG_DISABLE") == 1 && field(device, "CONSOLE_DEBUG_DISABLE") == 1)
        #expect(field(device, "DISABLE_DL_ENCRYPT") == 0, "development mode keeps UART encryption")
        #expect(field(device, "DISABLE_DL_DECRYPT") == 1 && field(device, "DISABLE_DL_CACHE") == 1)
        #expect(device.efuses.isWriteProtected(bit: 8) && device.efuses.isWriteProtected(bit: 7))
        #expect(device.efuses.isReadProtected(bit: 0) && !device.efuses.isReadProtected(bit: 1))
        #expect(device.efuses.isWriteProtected(bit: 0), "RD_DIS locked after the FE key was read-protected")
        #expect(device.efuses.blocks[1].contains { $0 != 0 })
        // Encrypted regions: bootloader, partition table, nvs_key, otadata, ota_0, ota_1; nvs untouched.
        let names = outcome.encryptedRegions.map(\.name)
        #expect(names == ["bootloader", "partition table", "nvs_key", "otadata", "ota_0", "ota_1"])
        var keyBytes: [UInt8] = []
        for w in device.efuses.blocks[1] { keyBytes.appendLE(w) }
        let cipher = try FlashCipher(chip: .esp32, key: Array(keyBytes.reversed()), flashCryptConfig: 0xF)
        for r in outcome.encryptedRegions where r.name != "otadata" {
            let len = (r.length + 0xFFF) & ~0xFFF
            let plain = Array(plainFlash[r.offset..<(r.offset + len)])
            let expected = try cipher.encrypt(plain, at: r.offset)
            #expect(Array(device.flash.bytes[r.offset..<(r.offset + len)]) == expected, "region \(r.name)")
        }
        #expect(Array(device.flash.bytes[0x12000..<0x12040]) == [UInt8](repeating: 0x33, count: 64), "nvs stays plaintext")
        // Second power-on: decrypts transparently, boots, burns nothing.
        let afterFirst = device.efuses
        let flashAfterFirst = device.flash.bytes
        let second = BootSimulator(config: Scenario.seedConfig).boot(device: &device)
        #expect(second.result == .appStarted, "\(second.consoleText)")
        #expect(second.efusesBurned.isEmpty && device.efuses == afterFirst)
        #expect(second.encryptedRegions.isEmpty)
        #expect(second.consoleText.contains("secure boot v2 is already enabled"))
        #expect(second.consoleText.contains("flash encryption is enabled (3 plaintext flashes left)"))
        #expect(device.flash.bytes == flashAfterFirst)
    }

    @Test("release mode: FLASH_CRYPT_CNT 0x7F and all download-mode restrictions", fixtures)
    func releaseMode() throws {
        var device = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app())
        var config = Scenario.seedConfig
        config.sdkconfig = .secure(release: true, partitionTableOffset: 0x10000)
        let outcome = BootSimulator(config: config).boot(device: &device)
        #expect(outcome.result == .appStarted, "\(outcome.consoleText)")
        #expect(field(device, "FLASH_CRYPT_CNT") == 0x7F)
        #expect(field(device, "DISABLE_DL_ENCRYPT") == 1 && field(device, "DISABLE_DL_DECRYPT") == 1
                && field(device, "DISABLE_DL_CACHE") == 1)
        #expect(outcome.consoleText.contains("flash encryption is enabled (0 plaintext flashes left)"))
    }

    @Test("app signed with another key than the bootloader: refused, nothing burned", fixtures)
    func keyMismatch() throws {
        var device = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app(key: Scenario.keyB))
        let before = device.efuses
        let outcome = BootSimulator(config: Scenario.seedConfig).boot(device: &device)
        #expect(outcome.result == .noBootableApp)
        #expect(outcome.consoleText.contains("E (") && outcome.consoleText.contains("Application not signed with a valid private key."))
        #expect(outcome.consoleText.contains("Secure Boot v2 failed (-1)"))
        #expect(device.efuses == before)
    }

    @Test("after Secure Boot is on, a bootloader signed by another key fails the ROM check", fixtures)
    func romSecureBootCheck() throws {
        var device = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app())
        var config = Scenario.seedConfig
        config.sdkconfig.flashEncryption = false
        #expect(BootSimulator(config: config).boot(device: &device).result == .appStarted)
        #expect(field(device, "ABS_DONE_1") == 1)
        Scenario.write(&device, 0x1000, try Scenario.signedBootloader(key: Scenario.keyB))
        let outcome = BootSimulator(config: config).boot(device: &device)
        #expect(outcome.result == .romHalted)
        // Recorded ECO3 ROM wording: verified before loading, so no load: lines.
        let lines = outcome.log.map(\.text)
        #expect(Array(lines.suffix(4)) == ["mode:2, clock div:2", "secure boot v2 enabled",
                                            "Sig block 0 signed with untrusted key", "secure boot verification failed"])
        #expect(!lines.contains { $0.hasPrefix("load:") })
    }

    @Test("plaintext bootloader written to an encrypted chip: ROM prints invalid header", fixtures)
    func plaintextOnEncryptedChip() throws {
        var device = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app())
        #expect(BootSimulator(config: Scenario.seedConfig).boot(device: &device).booted)
        Scenario.write(&device, 0x1000, try Scenario.signedBootloader())
        let outcome = BootSimulator(config: Scenario.seedConfig).boot(device: &device)
        #expect(outcome.result == .romHalted)
        #expect(outcome.log.contains { $0.text.hasPrefix("invalid header: 0x") && $0.text != "invalid header: 0xffffffff" })
    }

    @Test("blank device: the ROM loops on invalid header 0xffffffff")
    func blank() throws {
        var device = try Scenario.blankDevice()
        var config = BootConfig(sdkconfig: .secure())
        config.invalidHeaderRepeats = 3
        let outcome = BootSimulator(config: config).boot(device: &device)
        let lines = outcome.log.map(\.text)
        #expect(lines.first == "ets Jul 29 2019 12:21:46")
        #expect(lines.contains("rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"))
        #expect(lines.filter { $0 == "invalid header: 0xffffffff" }.count == 3)
        #expect(outcome.result == .romHalted && !outcome.booted)
        #expect(outcome.efusesBurned.isEmpty)
    }

    @Test("random flash contents never crash the simulator")
    func fuzz() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for round in 0..<24 {
            var device = try Scenario.blankDevice(flashSize: 1 << 20)
            // Random bytes in the bootloader, table and app areas, sometimes with a plausible header.
            for region in [0x1000, 0x8000, 0x10000] {
                var bytes = rng.bytes(Int(rng.next() % 0x3000) + 16)
                if rng.next() % 2 == 0 { bytes[0] = 0xE9; bytes[1] = UInt8(rng.next() % 5) }
                if region == 0x8000, rng.next() % 2 == 0 { bytes[0] = 0xAA; bytes[1] = 0x50 }
                Scenario.write(&device, region, bytes)
            }
            if rng.next() % 3 == 0 {
                device.efuses.factorySet(try #require(EFuseLayout.esp32.field(named: "FLASH_CRYPT_CNT")), value: 1)
            }
            var config = BootConfig(sdkconfig: rng.next() % 2 == 0 ? .secure() : SDKConfig())
            config.rngSeed = rng.next()
            config.idfVersion = [nil, "v4.4", "v5.0.2", "5.1", "v5.3.1"][Int(rng.next() % 5)]
            let outcome = BootSimulator(config: config).boot(device: &device)
            #expect(!outcome.log.isEmpty, "seed \(seed) round \(round)")
        }
    }

    @Test("sdkconfig: the options that matter, with IDF defaults")
    func sdkconfig() throws {
        let text = """
            # Espressif IoT Development Framework (ESP-IDF) 4.4.6 Project Configuration
            CONFIG_SECURE_BOOT=y
            CONFIG_SECURE_BOOT_V2_ENABLED=y
            CONFIG_SECURE_FLASH_ENC_ENABLED=y
            CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y
            # CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE is not set
            CONFIG_PARTITION_TABLE_OFFSET=0x10000
            CONFIG_SECURE_BOOT_ALLOW_JTAG=y
            """
        let c = try SDKConfig.parse(text)
        #expect(c.secureBootV2 && c.flashEncryption && !c.releaseMode && c.allowJTAG)
        #expect(c.partitionTableOffset == 0x10000 && c.uartAllowEncrypt && !c.uartAllowDecrypt)
        #expect(c.idfVersion == "4.4.6")
        #expect(try SDKConfig.parse(c.text) == c)
        #expect(throws: SDKConfigError.self) { try SDKConfig.parse("CONFIG_PARTITION_TABLE_OFFSET=zz\n") }
        #expect(try SDKConfig.parse("") == SDKConfig())
    }
}

@Suite("First-boot simulator vs espsecure")
struct BootSimulatorOracleTests {
    @Test("in-place ciphertext equals espsecure encrypt-flash-data with the key read back from BLOCK1",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)))
    func ciphertextMatchesEspsecure() throws {
        var device = try Scenario.seedDevice(bootloader: try Scenario.signedBootloader(), app: try Scenario.app())
        let plainTable = try #require(device.flash.read(0x10000, 0x1000))
        let plainKeys = try #require(device.flash.read(0x11000, 0x1000))
        var config = Scenario.seedConfig
        config.rngSeed = testSeed()
        let outcome = BootSimulator(config: config).boot(device: &device)
        #expect(outcome.booted, "seed \(config.rngSeed ?? 0)")
        let root = try TestEnvironment.temporaryDirectory("bootsim-oracle")
        defer { try? FileManager.default.removeItem(at: root) }
        var blk1: [UInt8] = []
        for w in device.efuses.blocks[1] { blk1.appendLE(w) }
        // espefuse burns the key file reversed into BLOCK1; read back, the file is the reverse.
        let keyPath = root.appendingPathComponent("key.bin").path
        try Data(blk1.reversed()).write(to: URL(fileURLWithPath: keyPath))
        for (address, plain) in [(0x10000, plainTable), (0x11000, plainKeys)] {
            let input = root.appendingPathComponent("in-\(address).bin").path
            let output = root.appendingPathComponent("out-\(address).bin").path
            try Data(plain).write(to: URL(fileURLWithPath: input))
            let r = try Oracle.run("espsecure", ["encrypt-flash-data", "--keyfile", keyPath, "--address", "0x" + String(address, radix: 16),
                                                 "--flash-crypt-conf", "0xf", "--output", output, input])
            #expect(r.status == 0, "\(r.err)")
            let expected = try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
            #expect(device.flash.read(address, 0x1000) == expected, "address 0x\(String(address, radix: 16)), seed \(config.rngSeed ?? 0)")
        }
    }
}

@Suite("ESP32 ROM stage")
struct ROMStageTests {
    /// A bootloader-shaped image with the seed's segment layout (checksum not needed by the ROM).
    static func seedShapedBootloader() -> [UInt8] {
        var b: [UInt8] = [0xE9, 3, 2, 0x20]
        b.appendLE(UInt32(0x4008_0640))
        b += [0xEE, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        for (addr, len) in [(UInt32(0x3FFF_0038), 10140), (0x4007_8000, 22792), (0x4008_0400, 3464)] {
            b.appendLE(addr)
            b.appendLE(UInt32(len))
            b += [UInt8](repeating: 0, count: len)
        }
        return b
    }

    @Test("ROM lines of the seed, exactly: load lines, 'ho' lines, entry")
    func seedROMLines() throws {
        var device = try Scenario.blankDevice()
        Scenario.write(&device, 0x1000, Self.seedShapedBootloader())
        var config = BootConfig(sdkconfig: .secure(partitionTableOffset: 0x10000))
        config.strapping = 0x1E
        let lines = BootSimulator(config: config).boot(device: &device).log.filter { $0.source == "rom" }.map(\.text)
        let expected = [
            "ets Jul 29 2019 12:21:46", "",
            "rst:0x1 (POWERON_RESET),boot:0x1e (SPI_FAST_FLASH_BOOT)",
            "configsip: 0, SPIWP:0xee",
            "clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00",
            "mode:DIO, clock div:2",
            "load:0x3fff0038,len:10140", "ho 0 tail 12 room 4",
            "load:0x40078000,len:22792", "ho 0 tail 12 room 4",
            "load:0x40080400,len:3464",
            "entry 0x40080640",
        ]
        #expect(Array(lines.prefix(expected.count)) == expected)
    }

    @Test("a bootloader whose segments cannot be read: flash read err, 1000")
    func flashReadError() throws {
        var device = try Scenario.blankDevice(flashSize: 1 << 20)
        // Segment 1 follows segment 0 in erased flash: its header reads 0xffffffff as the length.
        var b = Array(Self.seedShapedBootloader().prefix(32 + 10140))
        b[1] = 2
        Scenario.write(&device, 0x1000, b)
        let outcome = BootSimulator(config: BootConfig()).boot(device: &device)
        #expect(outcome.result == .romHalted)
        let lines = outcome.log.map(\.text)
        #expect(lines.contains("load:0xffffffff,len:-1"))
        #expect(lines.contains("flash read err, 1000"))
        #expect(lines.last == "ets_main.c 371 ")
    }
}
