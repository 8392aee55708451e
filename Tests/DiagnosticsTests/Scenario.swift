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

    static let seedCSV = Scenarios.seedCSV

    static let shared: Result<Scenario, any Error> = Result { try Scenario() }
    static func get() throws -> Scenario { try shared.get() }

    private init() throws {
        keyA = try Scenarios.keyA()
        keyB = try Scenarios.keyB()
        bootloaderUnsigned = try Scenarios.unsignedBootloader()
        bootloader4MB = try Scenarios.signedBootloader(size: "4MB", key: keyA, trim: false)
        bootloader8MB = try Scenarios.signedBootloader(size: "8MB", key: keyA, trim: false)
        appUnsigned = try Scenarios.app(key: nil, minRevision: 3)
        appSignedA = try Scenarios.sign(appUnsigned, keyA)
        appSignedB = try Scenarios.sign(appUnsigned, keyB)
        table = try Self.table(csv: Self.seedCSV, offset: 0x10000)
        sdkconfig = SDKConfig(values: [
            "CONFIG_SECURE_BOOT_V2_ENABLED": "y", "CONFIG_SECURE_FLASH_ENC_ENABLED": "y",
            "CONFIG_PARTITION_TABLE_OFFSET": "0x10000", "CONFIG_ESPTOOLPY_FLASHSIZE": "4MB",
        ])
    }

    static func sign(_ image: [UInt8], _ key: SigningKey) throws -> [UInt8] { try Scenarios.sign(image, key) }

    static func table(csv: String, offset: Int) throws -> [UInt8] { try Scenarios.table(csv: csv, offset: offset) }

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
        try Scenarios.rewriteHeader(signed, size: size, rehash: rehash)
    }
}

func codes(_ report: PreflightReport, severity: Severity? = nil) -> [String] {
    report.findings.filter { severity == nil || $0.severity == severity }.map(\.code)
}
