import BootSimulator
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import ImageFormat
import SecureBoot
import Testing
import TestSupport
import VirtualDevice

/// ESP32-S3 / ESP32-C3 first boot, ROM stage: the ESP-IDF v5.2.2 hello-world bootloaders of
/// ../shared/fixtures/espressif/chips, signed with espforge's SBv2 signer, against eFuses set
/// through the chip's field map.
@Suite struct FieldMapBootTests {
    static let chips = ["esp32s3", "esp32c3"]

    static func folder(_ chip: String) -> String { chip == "esp32s3" ? "ESP32_S3" : "ESP32_C3" }

    static func bootloader(_ chip: String) throws -> [UInt8] {
        try Scenarios.trimmed(try TestEnvironment.fixtureBytes("chips/\(folder(chip))/bootloader.bin"))
    }

    static func device(_ chip: String) throws -> Device {
        try Device.create(DeviceDescription(chip: chip, chipRevision: 0, mac: "7c:df:a1:00:00:01", flashSize: 4 << 20))
    }

    static func fixture(_ chip: String, _ name: String) throws -> [UInt8] {
        try TestEnvironment.fixtureBytes("chips/\(folder(chip))/\(name)")
    }

    /// Table at 0x8000 and the hello-world app at 0x10000 (as the fixtures were built).
    static func flashTableAndApp(_ d: inout Device, _ chip: String, app: [UInt8]? = nil) throws {
        write(&d, 0x8000, try fixture(chip, "partition-table.bin"))
        write(&d, 0x10000, try app ?? fixture(chip, "hello_world.bin"))
    }

    static func write(_ d: inout Device, _ address: Int, _ data: [UInt8]) {
        _ = d.flash.eraseSectors(address, data.count, timing: .w25q32jv)
        _ = d.flash.program(address, data, timing: .w25q32jv)
    }

    /// Sets `name` in the device's cells (as espefuse would have burned it before the boot).
    static func set(_ d: inout Device, _ name: String, _ value: UInt64) throws {
        let map = try #require(d.chip?.efuseMap)
        let f = try #require(map.field(named: name))
        var c = try #require(d.cells)
        c.setInteger(f, c.integer(f) | value)
        d.cells = c
    }

    static func setKeyBlock(_ d: inout Device, _ index: Int, purpose: Int, bytes: [UInt8]) throws {
        let map = try #require(d.chip?.efuseMap)
        var c = try #require(d.cells)
        c.setBytes(try #require(map.field(named: "BLOCK_KEY\(index)")), bytes)
        d.cells = c
        try set(&d, "KEY_PURPOSE_\(index)", UInt64(purpose))
    }

    static func digest(_ key: SigningKey) throws -> [UInt8] { try key.publicKey.fields().keyDigest }

    static func boot(_ d: inout Device) -> BootOutcome {
        var c = BootConfig()
        c.rngSeed = 1
        return BootSimulator(config: c).boot(device: &d)
    }

    @Test(arguments: chips) func plainBootloaderStartsWithTheChipsROMBanner(chip: String) throws {
        var d = try Self.device(chip)
        Self.write(&d, 0, try Self.bootloader(chip))
        try Self.flashTableAndApp(&d, chip)
        let o = Self.boot(&d)
        #expect(o.result == .appStarted)
        #expect(o.bootedOffset == 0x10000)
        let lines = o.log.map(\.text)
        #expect(lines.first == (chip == "esp32s3" ? "ESP-ROM:esp32s3-20210327" : "ESP-ROM:esp32c3-api1-20210207"))
        #expect(lines[2] == "rst:0x1 (POWERON),boot:0x\(chip == "esp32s3" ? "8" : "c") (SPI_FAST_FLASH_BOOT)")
        #expect(lines.contains("SPIWP:0xee"))
        let image = try ESPImage(try Self.bootloader(chip))
        let loads = lines.filter { $0.hasPrefix("load:0x") }
        #expect(loads.count == image.segments.count)
        #expect(lines.contains("entry 0x\(String(format: "%08x", image.entryPoint))"))
        #expect(lines.contains { $0.contains("boot: ESP-IDF v5.2.2") && $0.hasSuffix("2nd stage bootloader") }, "\(lines)")
        #expect(lines.contains { $0.contains("boot.\(chip): SPI Mode       : ") })
        #expect(!lines.contains { $0.contains("secure boot") })
    }

    @Test func erasedFlashIsAnInvalidHeader() throws {
        var d = try Self.device("esp32c3")
        let o = Self.boot(&d)
        #expect(o.result == .romHalted)
        #expect(o.log.map(\.text).contains("invalid header: 0xffffffff"))
    }

    @Test(arguments: chips) func secureBootAcceptsAKeyInALiveSlot(chip: String) throws {
        let keyA = try Scenarios.keyA(), keyB = try Scenarios.keyB()
        var d = try Self.device(chip)
        // Two signature blocks (B, A); only A's digest is in slot 1 (key block 2).
        let signed = try SecureBootSigner.sign(image: try Self.bootloader(chip), keys: [keyB, keyA], append: false,
                                               policy: .esp32s3).image
        Self.write(&d, 0, signed)
        try Self.flashTableAndApp(&d, chip)
        try Self.setKeyBlock(&d, 2, purpose: 10, bytes: try Self.digest(keyA))
        try Self.set(&d, "SECURE_BOOT_EN", 1)
        let o = Self.boot(&d)
        let lines = o.log.map(\.text)
        #expect(o.result == .appStarted, "\(o.reason ?? "")")
        #expect(lines.contains("Valid secure boot key blocks: 1"))
        #expect(lines.contains("secure boot verification succeeded"))
        #expect(o.secureBootEnabled)
        // The check comes before the segments are loaded.
        let ok = try #require(lines.firstIndex(of: "secure boot verification succeeded"))
        let firstLoad = try #require(lines.firstIndex { $0.hasPrefix("load:") })
        #expect(ok < firstLoad)
    }

    @Test(arguments: chips) func aKeyInNoDigestSlotDoesNotBoot(chip: String) throws {
        let keyA = try Scenarios.keyA(), keyB = try Scenarios.keyB()
        var d = try Self.device(chip)
        Self.write(&d, 0, try SecureBootSigner.sign(image: try Self.bootloader(chip), keys: [keyA], append: false,
                                                    policy: .esp32s3).image)
        try Self.setKeyBlock(&d, 0, purpose: 9, bytes: try Self.digest(keyB))
        try Self.set(&d, "SECURE_BOOT_EN", 1)
        let o = Self.boot(&d)
        let lines = o.log.map(\.text)
        #expect(o.result == .romHalted)
        #expect(lines.contains("Sig block 0 signed with untrusted key"))
        #expect(lines.suffix(2) == ["secure boot verification failed", "ets_main.c 329"])
        #expect(!lines.contains { $0.hasPrefix("load:") })
        #expect(o.reason?.contains("in no SECURE_BOOT_DIGESTn key block") == true)
    }

    @Test(arguments: chips) func aRevokedSlotDoesNotBoot(chip: String) throws {
        let keyA = try Scenarios.keyA()
        var d = try Self.device(chip)
        Self.write(&d, 0, try SecureBootSigner.sign(image: try Self.bootloader(chip), keys: [keyA], append: false,
                                                    policy: .esp32s3).image)
        try Self.setKeyBlock(&d, 0, purpose: 9, bytes: try Self.digest(keyA))
        try Self.set(&d, "SECURE_BOOT_EN", 1)
        try Self.set(&d, "SECURE_BOOT_KEY_REVOKE0", 1)
        let o = Self.boot(&d)
        #expect(o.result == .romHalted)
        #expect(o.log.map(\.text).contains("Valid secure boot key blocks: "))
        #expect(o.reason?.contains("digest slot 0, which is revoked") == true)
    }

    @Test func anUnsignedBootloaderUnderSecureBootDoesNotBoot() throws {
        var d = try Self.device("esp32s3")
        Self.write(&d, 0, try Self.bootloader("esp32s3"))
        try Self.setKeyBlock(&d, 0, purpose: 9, bytes: try Self.digest(try Scenarios.keyA()))
        try Self.set(&d, "SECURE_BOOT_EN", 1)
        let o = Self.boot(&d)
        #expect(o.result == .romHalted)
        #expect(o.log.map(\.text).contains { $0.hasPrefix("No signature block magic byte found at signature sector") })
    }

    /// SPI_BOOT_CRYPT_CNT odd: the ROM reads through XTS-AES keyed from the XTS key block(s).
    @Test(arguments: [("esp32c3", 32), ("esp32s3", 32), ("esp32s3", 64)])
    func flashEncryptionReadsThroughXTS(chip: String, keyLength: Int) throws {
        var d = try Self.device(chip)
        let key = (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let plain = try Self.bootloader(chip)
        let padded = plain + [UInt8](repeating: 0xFF, count: (32 - plain.count % 32) % 32)
        let spec = try #require(ChipSpec.named(chip))
        let cipher = try FlashCipher(chip: spec, key: key)
        Self.write(&d, 0, try cipher.encrypt(padded, at: 0))
        for (offset, name) in [(0x8000, "partition-table.bin"), (0x10000, "hello_world.bin")] {
            var data = try Self.fixture(chip, name)
            data += [UInt8](repeating: 0xFF, count: (32 - data.count % 32) % 32)
            Self.write(&d, offset, try cipher.encrypt(data, at: offset))
        }
        // Key blocks hold the key file byte-reversed (as espefuse burns it).
        if keyLength == 32 {
            try Self.setKeyBlock(&d, 1, purpose: 4, bytes: key.reversed())
        } else {
            try Self.setKeyBlock(&d, 1, purpose: 2, bytes: Array(key[0..<32]).reversed())
            try Self.setKeyBlock(&d, 2, purpose: 3, bytes: Array(key[32..<64]).reversed())
        }
        try Self.set(&d, "SPI_BOOT_CRYPT_CNT", 1)
        let o = Self.boot(&d)
        #expect(o.result == .appStarted, "\(o.reason ?? "")")
        #expect(o.flashEncryptionEnabled)

        // The plaintext bootloader on the same chip: the decrypted header is garbage.
        Self.write(&d, 0, padded)
        let bad = Self.boot(&d)
        #expect(bad.result == .romHalted)
        #expect(bad.reason?.contains("after XTS-AES decryption") == true)
    }

    /// SPI_BOOT_CRYPT_CNT even (0b11): encryption off again, the plaintext bootloader boots.
    @Test func evenCryptCountReadsPlaintext() throws {
        var d = try Self.device("esp32c3")
        Self.write(&d, 0, try Self.bootloader("esp32c3"))
        try Self.flashTableAndApp(&d, "esp32c3")
        try Self.setKeyBlock(&d, 1, purpose: 4, bytes: [UInt8](repeating: 7, count: 32))
        try Self.set(&d, "SPI_BOOT_CRYPT_CNT", 0b11)
        #expect(Self.boot(&d).result == .appStarted)
    }

    /// With SECURE_BOOT_AGGRESSIVE_REVOKE, a block signed by a trusted key that fails to verify
    /// (bootloader changed after signing) revokes that slot; without it, the slot stays live.
    @Test(arguments: [false, true]) func aggressiveRevocation(aggressive: Bool) throws {
        let keyA = try Scenarios.keyA()
        var d = try Self.device("esp32s3")
        var signed = try SecureBootSigner.sign(image: try Self.bootloader("esp32s3"), keys: [keyA], append: false,
                                               policy: .esp32s3).image
        signed[100] ^= 0x01  // inside a segment: the image digest no longer matches block 0
        Self.write(&d, 0, signed)
        try Self.setKeyBlock(&d, 0, purpose: 9, bytes: try Self.digest(keyA))
        try Self.set(&d, "SECURE_BOOT_EN", 1)
        if aggressive { try Self.set(&d, "SECURE_BOOT_AGGRESSIVE_REVOKE", 1) }
        let o = Self.boot(&d)
        #expect(o.result == .romHalted)
        #expect(o.log.map(\.text).contains("Sig block 0 invalid: Image digest does not match"))
        let map = try #require(d.chip?.efuseMap)
        let cells = try #require(d.cells)
        let s = EFuseFieldMapSummary(words: cells, map: map)
        #expect(s.security.revokedDigestSlots == (aggressive ? [0] : []))
    }
}
