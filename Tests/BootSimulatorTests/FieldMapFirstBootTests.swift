import BootSimulator
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import SecureBoot
import Testing
import TestSupport
import VirtualDevice

/// ESP32-S3 / ESP32-C3 first boot through the ESP-IDF v5.x bootloader: Secure Boot V2 and XTS
/// flash encryption enabled on chip, with the v5.2.2 hello-world builds signed by espforge.
@Suite struct FieldMapFirstBootTests {
    typealias T = FieldMapBootTests

    struct Plan {
        var regions: [(Int, [UInt8])]
    }

    /// Bootloader at 0, table at 0x8000, app at 0x10000; bootloader and app signed with `keys`.
    static func plan(_ chip: String, keys: [SigningKey]) throws -> Plan {
        let boot = try SecureBootSigner.sign(image: try T.bootloader(chip), keys: keys, append: false, policy: .esp32s3).image
        let app = try SecureBootSigner.sign(image: try T.fixture(chip, "hello_world.bin"), keys: keys, append: false,
                                            policy: .esp32s3).image
        return Plan(regions: [(0, boot), (0x8000, try T.fixture(chip, "partition-table.bin")), (0x10000, app)])
    }

    static func flashed(_ chip: String, _ plan: Plan) throws -> Device {
        var d = try T.device(chip)
        for (o, data) in plan.regions { T.write(&d, o, data) }
        return d
    }

    static func boot(_ d: inout Device, _ sdk: SDKConfig) -> BootOutcome {
        var c = BootConfig(sdkconfig: sdk)
        c.rngSeed = 42
        return BootSimulator(config: c).boot(device: &d)
    }

    static func summary(_ d: Device) throws -> EFuseFieldMapSummary {
        let map = try #require(d.chip?.efuseMap)
        let cells = try #require(d.cells)
        return EFuseFieldMapSummary(words: cells, map: map)
    }

    static func int(_ s: EFuseFieldMapSummary, _ name: String) -> UInt64? { s.field(name)?.integer }

    static let modes: [(String, Bool)] = [("esp32s3", false), ("esp32s3", true), ("esp32c3", false), ("esp32c3", true)]

    @Test(arguments: modes) func secureBootAndFlashEncryptionOnFirstBoot(chip: String, release: Bool) throws {
        let keyA = try Scenarios.keyA()
        let plan = try Self.plan(chip, keys: [keyA])
        var d = try Self.flashed(chip, plan)
        var sdk = SDKConfig.secure(release: release)
        sdk.secureROMDownload = release
        let o = Self.boot(&d, sdk)
        let lines = o.log.map(\.text)
        #expect(o.result == .appStarted, "\(o.reason ?? "")\n\(o.consoleText)")
        #expect(o.bootedOffset == 0x10000)
        #expect(o.resets == 2)
        #expect(o.secureBootEnabled && o.flashEncryptionEnabled)
        #expect(lines.contains { $0.hasSuffix("efuse: Writing EFUSE_BLK_KEY0 with purpose 9") })
        #expect(lines.contains { $0.hasSuffix("efuse: Writing EFUSE_BLK_KEY1 with purpose 4") })
        #expect(lines.contains { $0.hasSuffix("secure_boot_v2: Revoking empty key digest slot (2)...") })
        #expect(lines.contains { $0.hasSuffix("boot: Resetting with flash encryption enabled...") })
        #expect(lines.contains("rst:0x3 (RTC_SW_SYS_RST),boot:0x\(chip == "esp32s3" ? "8" : "c") (SPI_FAST_FLASH_BOOT)"))
        // The second power cycle: the ROM checks the bootloader against the burned digest.
        #expect(lines.filter { $0 == "secure boot verification succeeded" }.count == 1)

        let s = try Self.summary(d)
        let slot0 = try #require(s.keyBlocks.first { $0.index == 0 })
        #expect(slot0.purposeName == "SECURE_BOOT_DIGEST0")
        #expect(slot0.digest == (try keyA.publicKey.fields().keyDigest).hexString)
        #expect(slot0.writeProtected && !slot0.readProtected)
        let xts = try #require(s.keyBlocks.first { $0.index == 1 })
        #expect(xts.purposeName == "XTS_AES_128_KEY" && xts.readProtected && xts.writeProtected)
        #expect(s.security.secureBootEnabled)
        #expect(s.security.secureBootDigestSlots == [0])
        #expect(s.security.revokedDigestSlots == [1, 2])
        #expect(Self.int(s, "SPI_BOOT_CRYPT_CNT") == (release ? 0b111 : 0b001))
        #expect(Self.int(s, "DIS_DOWNLOAD_MANUAL_ENCRYPT") == (release ? 1 : 0))
        #expect(Self.int(s, "ENABLE_SECURITY_DOWNLOAD") == (release ? 1 : 0))
        #expect(Self.int(s, "DIS_PAD_JTAG") == 1 && Self.int(s, "DIS_USB_JTAG") == 1)
        #expect(Self.int(s, "SOFT_DIS_JTAG") == 0b111 && Self.int(s, "DIS_DIRECT_BOOT") == 1)
        #expect(Self.int(s, "DIS_DOWNLOAD_ICACHE") == 1)
        // WR_DIS: RD_DIS locked (bit 0) and DIS_ICACHE's group (bit 2) after flash encryption.
        #expect((Self.int(s, "WR_DIS") ?? 0) & 0b101 == 0b101)
        #expect(lines.filter { $0.hasSuffix("Prevent read disabling of additional efuses...") }.isEmpty)
        #expect(Self.int(s, "SECURE_BOOT_KEY_REVOKE0") == 0)

        // Flash decrypts back to the plan, and is not the plan in the clear.
        let vc = try #require(d.chip)
        let cells = try #require(d.cells)
        let key = try #require(vc.flashEncryptionKey(cells))
        let spec = try #require(ChipSpec.named(chip))
        let cipher = try FlashCipher(chip: spec, key: key)
        for (offset, data) in plan.regions {
            let length = (data.count + 31) & ~31
            let raw = try #require(d.flash.read(offset, length))
            #expect(Array(raw.prefix(data.count)) != data)
            let plain = try cipher.decrypt(raw, at: offset)
            #expect(Array(plain.prefix(data.count)) == data, "region 0x\(String(offset, radix: 16))")
        }
        #expect(o.encryptedRegions.map(\.offset).sorted() == [0, 0x8000, 0x10000])

        // Next power-on: nothing more burned, the app starts in one cycle.
        let before = d.cells
        let again = Self.boot(&d, sdk)
        #expect(again.result == .appStarted && again.resets == 1)
        #expect(d.cells == before)
    }

    /// Secure Boot only, two signing keys, aggressive revocation configured: two digest slots,
    /// the third revoked, RD_DIS locked at once (no flash encryption to wait for).
    @Test(arguments: ["esp32s3", "esp32c3"]) func secureBootOnlyTwoKeys(chip: String) throws {
        var d = try Self.flashed(chip, try Self.plan(chip, keys: [try Scenarios.keyA(), try Scenarios.keyB()]))
        var sdk = SDKConfig()
        sdk.secureBootV2 = true
        sdk.aggressiveRevoke = true
        let o = Self.boot(&d, sdk)
        #expect(o.result == .appStarted, "\(o.consoleText)")
        #expect(o.resets == 1 && o.secureBootEnabled && !o.flashEncryptionEnabled)
        let s = try Self.summary(d)
        #expect(s.security.secureBootDigestSlots == [0, 1])
        #expect(s.security.revokedDigestSlots == [2])
        #expect(Self.int(s, "SPI_BOOT_CRYPT_CNT") == 0)
        #expect(Self.int(s, "SECURE_BOOT_AGGRESSIVE_REVOKE") == 1)
        #expect((Self.int(s, "WR_DIS") ?? 0) & 1 == 1)
        #expect(o.log.contains { $0.text.hasSuffix("secure_boot: Prevent read disabling of additional efuses...") })
        #expect(o.log.contains { $0.text.hasSuffix("Application key(0) matches with bootloader key(0).") })
    }

    /// The app is signed with a key the bootloader is not: Secure Boot is not enabled, nothing
    /// is burned, no app starts.
    @Test func appSignedWithAnotherKeyDoesNotBoot() throws {
        var plan = try Self.plan("esp32c3", keys: [try Scenarios.keyA()])
        plan.regions[2].1 = try SecureBootSigner.sign(image: try T.fixture("esp32c3", "hello_world.bin"),
                                                     keys: [try Scenarios.keyB()], append: false, policy: .esp32c3).image
        var d = try Self.flashed("esp32c3", plan)
        let before = d.cells
        var sdk = SDKConfig()
        sdk.secureBootV2 = true
        let o = Self.boot(&d, sdk)
        #expect(o.result == .noBootableApp)
        #expect(o.log.contains { $0.text.hasSuffix("No application key digest matches the bootloader key digest.") })
        #expect(d.cells == before)
    }

    /// Host-encrypted flash (SPI_BOOT_CRYPT_CNT already odd, key pre-burned): the bootloader
    /// reports encryption on and the app starts without re-encrypting.
    @Test func hostEncryptedFlashBoots() throws {
        let chip = "esp32s3"
        let plan = try Self.plan(chip, keys: [try Scenarios.keyA()])
        var d = try T.device(chip)
        let key = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let spec = try #require(ChipSpec.named(chip))
        let cipher = try FlashCipher(chip: spec, key: key)
        for (offset, data) in plan.regions {
            let padded = data + [UInt8](repeating: 0xFF, count: (32 - data.count % 32) % 32)
            T.write(&d, offset, try cipher.encrypt(padded, at: offset))
        }
        try T.setKeyBlock(&d, 3, purpose: 4, bytes: key.reversed())
        try T.set(&d, "SPI_BOOT_CRYPT_CNT", 1)
        var sdk = SDKConfig()
        sdk.flashEncryption = true
        let o = Self.boot(&d, sdk)
        #expect(o.result == .appStarted, "\(o.consoleText)")
        #expect(o.encryptedRegions.isEmpty && o.resets == 1)
        #expect(o.log.contains { $0.text.hasSuffix("flash encryption is enabled (1 plaintext flashes left)") })
    }

    /// S3 with CONFIG_SECURE_FLASH_ENCRYPTION_AES256: two key blocks (XTS_AES_256_KEY_1/_2), and
    /// the flash decrypts with the 64-byte key they form.
    @Test func aes256KeyOnTheS3() throws {
        let plan = try Self.plan("esp32s3", keys: [try Scenarios.keyA()])
        var d = try Self.flashed("esp32s3", plan)
        var sdk = SDKConfig()
        sdk.flashEncryption = true
        sdk.flashEncryptionAES256 = true
        let o = Self.boot(&d, sdk)
        #expect(o.result == .appStarted && o.resets == 2, "\(o.consoleText)")
        let s = try Self.summary(d)
        #expect(s.keyBlocks.filter { $0.purposeName.hasPrefix("XTS_AES_256_KEY_") && $0.readProtected }.count == 2)
        let cells = try #require(d.cells)
        let key = try #require(d.chip?.flashEncryptionKey(cells))
        #expect(key.count == 64)
        let spec = try #require(ChipSpec.named("esp32s3"))
        let app = plan.regions[2].1
        let raw = try #require(d.flash.read(0x10000, (app.count + 31) & ~31))
        #expect(Array(try FlashCipher(chip: spec, key: key).decrypt(raw, at: 0x10000).prefix(app.count)) == app)
    }

    /// A pre-loaded XTS key that is not read- and write-protected: flash encryption refuses, no
    /// app starts, nothing is encrypted.
    @Test func unprotectedPreloadedKeyRefused() throws {
        var d = try Self.flashed("esp32c3", try Self.plan("esp32c3", keys: [try Scenarios.keyA()]))
        try T.setKeyBlock(&d, 0, purpose: 4, bytes: [UInt8](repeating: 0x42, count: 32))
        var sdk = SDKConfig()
        sdk.flashEncryption = true
        let o = Self.boot(&d, sdk)
        #expect(o.result == .noBootableApp)
        #expect(o.log.contains { $0.text.hasSuffix("Invalid key state, check read&write protection for key and keypurpose(if exists)") })
        #expect(o.encryptedRegions.isEmpty && !o.flashEncryptionEnabled)
    }

    /// A digest burned before the first boot (espefuse burn-key-digest): used, its block
    /// write-protected, the slots above the key count revoked; an app key not among the
    /// pre-loaded digests stops the enable.
    @Test func preloadedDigest() throws {
        let keyA = try Scenarios.keyA()
        var d = try Self.flashed("esp32c3", try Self.plan("esp32c3", keys: [keyA]))
        try T.setKeyBlock(&d, 3, purpose: 9, bytes: try T.digest(keyA))
        var sdk = SDKConfig()
        sdk.secureBootV2 = true
        let o = Self.boot(&d, sdk)
        #expect(o.result == .appStarted, "\(o.consoleText)")
        #expect(o.log.contains { $0.text.hasSuffix("W (\($0.milliseconds)) secure_boot_v2: Using pre-loaded public key digest in eFuse") })
        let s = try Self.summary(d)
        #expect(s.keyBlocks.first { $0.index == 3 }?.writeProtected == true)
        #expect(s.security.revokedDigestSlots == [1, 2])

        var other = try Self.flashed("esp32c3", try Self.plan("esp32c3", keys: [keyA]))
        try T.setKeyBlock(&other, 3, purpose: 9, bytes: try T.digest(try Scenarios.keyB()))
        let before = other.cells
        let refused = Self.boot(&other, sdk)
        #expect(refused.result == .noBootableApp)
        #expect(refused.log.contains { $0.text.hasSuffix("secure_boot_v2: Secure Boot V2 verification failed.") }, "\(refused.consoleText)")
        #expect(other.cells == before)
    }
}
