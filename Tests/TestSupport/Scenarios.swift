import ESPCore
import Foundation
import ImageFormat
import Partitions
import SecureBoot

/// Flash contents built from the real Espressif images, shared by the boot simulator, the
/// diagnostics and the integration tests: the ESP32 rev 3 bootloader
/// (`secure/bootloader_unsigned_v2.bin`), the ESP-IDF app ELF, Espressif's test signing keys and
/// the seed's partition layout (table at 0x10000).
public enum Scenarios {
    /// The seed's partition table (`nvs_key` flagged encrypted; two OTA slots).
    public static let seedCSV = """
        nvs_key,  data, nvs_keys, 0x11000,  0x1000, encrypted
        nvs,      data, nvs,      0x12000,  0x20000
        otadata,  data, ota,      0x32000,  0x2000
        phy_init, data, phy,      0x34000,  0x1000
        coredump, data, coredump, 0x35000,  0x20000
        ota_0,    app,  ota_0,    0x60000,  0x1a0000
        ota_1,    app,  ota_1,    0x210000, 0x1a0000
        """

    /// Espressif's test key `secure/<name>` (e.g. rsa_secure_boot_signing_key.pem).
    public static func fixtureKey(_ name: String) throws -> SigningKey {
        let text = String(decoding: try TestEnvironment.fixtureBytes("secure/" + name), as: UTF8.self)
        guard case let .privateKey(k) = try KeyMaterial.load(pem: text) else { throw TestSupportError.missing("private key \(name)") }
        return k
    }

    /// Key A / key B: the two RSA-3072 test keys of the fixtures.
    public static func keyA() throws -> SigningKey { try fixtureKey("rsa_secure_boot_signing_key.pem") }
    public static func keyB() throws -> SigningKey { try fixtureKey("rsa_secure_boot_signing_key2.pem") }

    public static func sign(_ image: [UInt8], _ key: SigningKey) throws -> [UInt8] {
        try SecureBootSigner.sign(image: image, keys: [key], append: false, policy: .esp32).image
    }

    /// The unsigned ESP32 rev 3 bootloader fixture (DIO 40m 2MB, padded with 0xFF to 32 KiB).
    public static func unsignedBootloader() throws -> [UInt8] {
        try TestEnvironment.fixtureBytes("secure/bootloader_unsigned_v2.bin")
    }

    /// The bootloader built for `size` (header set before signing) and signed with `key`.
    /// `trim`: drop the fixture's 0xFF padding first (the signature sector follows the image).
    public static func signedBootloader(size: String = "4MB", key: SigningKey, trim: Bool = true) throws -> [UInt8] {
        let retargeted = try ImageRetarget.retarget(try unsignedBootloader(), parameters: FlashParameters(size: size), stripSignature: false)
        return try sign(trim ? trimmed(retargeted) : retargeted, key)
    }

    /// Drops the 0xFF fill after the image's own end.
    public static func trimmed(_ image: [UInt8]) throws -> [UInt8] {
        let parsed = try ESPImage(image)
        return Array(image[0..<parsed.imageEnd])
    }

    /// A signed image whose header bytes 2..3 were rewritten afterwards, as esptool does at write
    /// time: `rehash` = the appended SHA-256 recomputed too (esptool ≥ 4); false = left as signed.
    /// The signature sector stays as it was.
    public static func rewriteHeader(_ signed: [UInt8], mode: String? = nil, frequency: String? = nil, size: String?,
                                     rehash: Bool) throws -> [UInt8] {
        let image = try ESPImage(signed)
        let body = Array(signed[0..<image.imageEnd])
        var out = try ImageRetarget.retarget(body, parameters: FlashParameters(mode: mode, frequency: frequency, size: size),
                                             stripSignature: true)
        if !rehash, image.hashAppended {
            let end = image.checksumOffset + 1
            out.replaceSubrange(end..<(end + 32), with: body[end..<(end + 32)])
        }
        return out + signed[image.imageEnd...]
    }

    /// The seed's bootloader: built and signed for 8MB, header rewritten to 4MB after signing.
    public static func seedBootloader(key: SigningKey, rehash: Bool) throws -> [UInt8] {
        try rewriteHeader(try signedBootloader(size: "8MB", key: key), size: "4MB", rehash: rehash)
    }

    /// The ESP-IDF app template (DIO 40m 4MB, secure-pad-v2), signed with `key` (nil: unsigned).
    public static func app(key: SigningKey?, minRevision: UInt8? = nil) throws -> [UInt8] {
        var o = ImageBuildOptions()
        o.flashMode = "dio"
        o.flashFrequency = "40m"
        o.flashSize = "4MB"
        o.securePadV2 = true
        if let minRevision {
            o.minRevision = minRevision
            o.minRevisionFull = UInt16(minRevision) * 100
        }
        let image = try ImageBuilder.elf2image(elf: TestEnvironment.fixtureBytes("elf/esp32-app-template.elf"), chip: .esp32, options: o)
        return try key.map { try sign(image, $0) } ?? image
    }

    /// A partition table binary from CSV at `offset`.
    public static func table(csv: String = seedCSV, offset: Int = 0x10000) throws -> [UInt8] {
        try PartitionTableBuild(csv: csv, options: PartitionTableOptions(tableOffset: offset, chip: .esp32, flashSize: 16 << 20)).binary
    }

    /// sdkconfig text of the seed project: Secure Boot V2 + flash encryption (development mode),
    /// partition table at 0x10000, 4MB flash.
    public static let seedSDKConfigText = """
        CONFIG_SECURE_BOOT=y
        CONFIG_SECURE_BOOT_V2_ENABLED=y
        CONFIG_SECURE_FLASH_ENC_ENABLED=y
        CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y
        CONFIG_PARTITION_TABLE_OFFSET=0x10000
        CONFIG_ESPTOOLPY_FLASHSIZE="4MB"

        """
}
