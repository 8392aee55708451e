import Crypto
import Diagnostics
import EFuse
import ESPCore
import Foundation
import ImageFormat
import Partitions
import SecureBoot
import TestSupport

/// Real images built and signed once per test run from the Espressif fixtures: the ESP32 rev 3
/// bootloader (`secure/bootloader_unsigned_v2.bin`) and the ESP-IDF app ELF, signed with
/// Espressif's test keys, plus the seed's partition layout.
final class Scenario: Sendable {
    let keyA: SigningKey
    let keyB: SigningKey
    /// Unsigned bootloader as in the fixture (DIO 40m 2MB), trailing padding kept.
    let bootloaderUnsigned: [UInt8]
    /// Bootloader built for 4MB / 8MB (header retargeted before signing), signed with key A.
    let bootloader4MB: [UInt8]
    let bootloader8MB: [UInt8]
    /// App image (DIO 40m 4MB, secure-pad-v2) unsigned, and signed with key A and key B.
    let appUnsigned: [UInt8]
    let appSignedA: [UInt8]
    let appSignedB: [UInt8]
    /// The seed's partition table at 0x10000.
    let table: [UInt8]
    let sdkconfig: SDKConfig

    static let seedCSV = """
        nvs_key,  data, nvs_keys, 0x11000,  0x1000, encrypted
        nvs,      data, nvs,      0x12000,  0x20000
        otadata,  data, ota,      0x32000,  0x2000
        phy_init, data, phy,      0x34000,  0x1000
        coredump, data, coredump, 0x35000,  0x20000
        ota_0,    app,  ota_0,    0x60000,  0x1a0000
        ota_1,    app,  ota_1,    0x210000, 0x1a0000
        """

    static let shared: Result<Scenario, any Error> = Result { try Scenario() }
    static func get() throws -> Scenario { try shared.get() }

    static func key(_ name: String) throws -> SigningKey {
        let text = String(decoding: try TestEnvironment.fixtureBytes("secure/" + name), as: UTF8.self)
        guard case let .privateKey(k) = try KeyMaterial.load(pem: text) else { throw TestSupportError.missing("private key \(name)") }
        return k
    }

    static func sign(_ image: [UInt8], _ key: SigningKey) throws -> [UInt8] {
        try SecureBootSigner.sign(image: image, keys: [key], append: false, policy: .esp32).image
    }

    private init() throws {
        keyA = try Self.key("rsa_secure_boot_signing_key.pem")
        keyB = try Self.key("rsa_secure_boot_signing_key2.pem")
        bootloaderUnsigned = try TestEnvironment.fixtureBytes("secure/bootloader_unsigned_v2.bin")
        bootloader4MB = try Self.sign(ImageRetarget.retarget(bootloaderUnsigned, parameters: FlashParameters(size: "4MB"), stripSignature: false), keyA)
        bootloader8MB = try Self.sign(ImageRetarget.retarget(bootloaderUnsigned, parameters: FlashParameters(size: "8MB"), stripSignature: false), keyA)
        var o = ImageBuildOptions()
        o.flashMode = "dio"
        o.flashFrequency = "40m"
        o.flashSize = "4MB"
        o.securePadV2 = true
        o.minRevision = 3
        o.minRevisionFull = 300
        appUnsigned = try ImageBuilder.elf2image(elf: TestEnvironment.fixtureBytes("elf/esp32-app-template.elf"), chip: .esp32, options: o)
        appSignedA = try Self.sign(appUnsigned, keyA)
        appSignedB = try Self.sign(appUnsigned, keyB)
        table = try Self.table(csv: Self.seedCSV, offset: 0x10000)
        sdkconfig = SDKConfig(values: [
            "CONFIG_SECURE_BOOT_V2_ENABLED": "y", "CONFIG_SECURE_FLASH_ENC_ENABLED": "y",
            "CONFIG_PARTITION_TABLE_OFFSET": "0x10000", "CONFIG_ESPTOOLPY_FLASHSIZE": "4MB",
        ])
    }

    static func table(csv: String, offset: Int) throws -> [UInt8] {
        try PartitionTableBuild(csv: csv, options: PartitionTableOptions(tableOffset: offset, chip: .esp32, flashSize: 16 << 20)).binary
    }

    /// The seed's plan done right: signed 4MB bootloader, table at 0x10000, signed app in both slots.
    func plan(bootloader: [UInt8]? = nil, app: [UInt8]? = nil, options: FlashOptions = FlashOptions(),
              tableOffset: Int = 0x10000, sdk: SDKConfig? = nil, extra: [PlanEntry] = []) -> FlashPlan {
        var entries = [
            PlanEntry(address: 0x1000, name: "bootloader.bin", bytes: bootloader ?? bootloader4MB),
            PlanEntry(address: tableOffset, name: "partition-table.bin", bytes: table),
            PlanEntry(address: 0x60000, name: "app.bin", bytes: app ?? appSignedA),
            PlanEntry(address: 0x210000, name: "app.bin", bytes: app ?? appSignedA),
        ]
        for e in extra {
            entries.removeAll { $0.address == e.address }
            entries.append(e)
        }
        return FlashPlan(entries: entries, options: options, partitionTableOffset: tableOffset, sdkconfig: sdk ?? sdkconfig)
    }

    /// A fresh ESP32 (factory eFuses) with 4MB flash and revision v3.0.
    func target(revision: Int = 300, flashSize: Int = 4 << 20, efuses: SecurityFuseFacts? = nil) throws -> TargetFacts {
        TargetFacts(chip: .esp32, flashSize: flashSize, chipRevision: revision, efuses: try efuses ?? Self.factoryEFuses())
    }

    static func factoryEFuses(revision: Int = 3) throws -> SecurityFuseFacts {
        SecurityFuseFacts(esp32: try EFuseArray.esp32Factory(mac: [0x24, 0x0A, 0xC4, 1, 2, 3], revision: revision))
    }

    /// Key digest of signature block 0 of a signed image.
    static func keyDigest(_ signed: [UInt8]) -> [UInt8] {
        let sector = SignatureSector.parse(file: signed, offset: signed.count - 4096)
        return sector.entries.first?.block.keyDigest ?? []
    }

    /// A signed bootloader whose header bytes 2..3 were rewritten afterwards, as esptool does at
    /// write time; `rehash`: recompute the appended SHA-256 too (esptool ≥ 4), else leave it (older).
    static func rewriteHeader(_ signed: [UInt8], size: String, rehash: Bool) throws -> [UInt8] {
        let image = try ESPImage(signed)
        guard let chip = image.chip, let code = chip.flashSize(named: size) else { throw TestSupportError.missing("size \(size)") }
        var out = signed
        out[3] = code.code | (out[3] & 0x0F)
        if rehash {
            let end = image.checksumOffset + 1
            out.replaceSubrange(end..<(end + 32), with: Array(SHA256.hash(data: out[0..<end])))
        }
        return out
    }
}

func codes(_ report: PreflightReport, severity: Severity? = nil) -> [String] {
    report.findings.filter { severity == nil || $0.severity == severity }.map(\.code)
}
