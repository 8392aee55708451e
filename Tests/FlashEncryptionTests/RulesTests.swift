import ESPCore
import FlashEncryption
import Partitions
import Testing
import TestSupport

@Suite("Which flash is encrypted")
struct RulesTests {
    /// The seed board's table (../shared/seed/: boot log), partition table at 0x10000.
    static let seedTable: [PartitionEntry] = [
        PartitionEntry(name: "nvs_key", type: 0x01, subtype: 0x04, offset: 0x11000, size: 0x1000, flags: PartitionEntry.flagEncrypted),
        PartitionEntry(name: "nvs", type: 0x01, subtype: 0x02, offset: 0x12000, size: 0x20000),
        PartitionEntry(name: "otadata", type: 0x01, subtype: 0x00, offset: 0x32000, size: 0x2000),
        PartitionEntry(name: "phy_init", type: 0x01, subtype: 0x01, offset: 0x34000, size: 0x1000),
        PartitionEntry(name: "coredump", type: 0x01, subtype: 0x03, offset: 0x35000, size: 0x20000),
        PartitionEntry(name: "ota_0", type: 0x00, subtype: 0x10, offset: 0x60000, size: 0x1A0000),
        PartitionEntry(name: "ota_1", type: 0x00, subtype: 0x11, offset: 0x210000, size: 0x1A0000),
    ]

    @Test("seed board: bootloader, table, nvs_keys, otadata, apps encrypted; nvs, phy_init, coredump not")
    func seedLayout() throws {
        let layout = EncryptionRules.layout(partitions: Self.seedTable, chip: .esp32, partitionTableOffset: 0x10000)
        let byName = Dictionary(uniqueKeysWithValues: layout.areas.map { ($0.name, $0) })
        #expect(byName["bootloader"]?.offset == 0x1000 && byName["bootloader"]?.size == 0xF000)
        #expect(byName["bootloader"]?.expectation == .ifValidImage)
        #expect(byName["partition table"]?.offset == 0x10000 && byName["partition table"]?.size == 0x1000)
        #expect(byName["partition table"]?.expectation == .ifValidPartitionTable)
        #expect(byName["nvs_key"]?.expectation == .always)
        #expect(byName["otadata"]?.expectation == .always)
        #expect(byName["nvs"]?.expectation == .never)
        #expect(byName["phy_init"]?.expectation == .never)
        #expect(byName["coredump"]?.expectation == .never)
        #expect(byName["ota_0"]?.expectation == .ifValidImage)
        #expect(byName["ota_1"]?.expectation == .ifValidImage)
        #expect(layout.warnings.isEmpty)
        #expect(layout.areas.map(\.offset) == layout.areas.map(\.offset).sorted())
        #expect(layout.area(containing: 0x12345)?.name == "nvs")
        #expect(layout.area(containing: 0x55000) == nil)
    }

    @Test("per-entry rules: nvs_keys/otadata/tee_ota always, flag decides for other data, apps need a valid image")
    func entryRules() {
        func e(_ type: UInt8, _ subtype: UInt8, flags: UInt32 = 0) -> EncryptionExpectation {
            EncryptionRules.expectation(for: PartitionEntry(name: "p", type: type, subtype: subtype, offset: 0x10000,
                                                             size: 0x1000, flags: flags)).0
        }
        #expect(e(0x01, 0x04) == .always)         // nvs_keys even without the flag
        #expect(e(0x01, 0x00) == .always)         // otadata
        #expect(e(0x01, 0x90) == .always)         // tee_ota
        #expect(e(0x01, 0x81) == .never)          // fat, not flagged
        #expect(e(0x01, 0x81, flags: 1) == .always)
        #expect(e(0x01, 0x82, flags: 2) == .never) // readonly flag is not the encrypted flag
        #expect(e(0x00, 0x00) == .ifValidImage)   // factory
        #expect(e(0x00, 0x20) == .ifValidImage)   // test
        #expect(e(0x02, 0x00) == .ifValidImage)   // bootloader partition
        #expect(e(0x03, 0x00) == .ifValidPartitionTable)
        #expect(e(0x40, 0x01) == .never)          // custom type
        #expect(e(0x40, 0x01, flags: 1) == .always)
        #expect(EncryptionExpectation.ifValidImage.isEncrypted(contentIsValid: false) == false)
        #expect(EncryptionExpectation.never.isEncrypted(contentIsValid: true) == false)
    }

    @Test("an nvs partition flagged encrypted is reported (the bootloader would encrypt it and break NVS)")
    func nvsFlaggedEncrypted() throws {
        var table = Self.seedTable
        table[1].flags = PartitionEntry.flagEncrypted
        let layout = EncryptionRules.layout(partitions: table, chip: .esp32, partitionTableOffset: 0x10000)
        #expect(layout.area(containing: 0x12000)?.expectation == .always)
        let warning = try #require(layout.warnings.first)
        #expect(warning.message.contains("nvs") && warning.hint?.contains("nvs_keys") == true)
    }

    @Test("XTS chips: the bootloader region starts at the chip's bootloader offset (0x0)")
    func xtsChipLayout() {
        let layout = EncryptionRules.layout(partitions: [], chip: .esp32s3)
        #expect(layout.areas.first?.offset == 0 && layout.areas.first?.size == 0x8000)
    }

    @Test("encrypting a plaintext flash plan: only the expected regions change")
    func planEncryption() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let key = rng.bytes(32)
        let cipher = try FlashCipher(chip: .esp32, key: key)
        let layout = EncryptionRules.layout(partitions: Self.seedTable, chip: .esp32, partitionTableOffset: 0x10000)
        let image = [0xE9] + rng.bytes(0x2000 - 1)
        var table = [UInt8](repeating: 0xFF, count: 0x1000)
        table[0] = 0xAA; table[1] = 0x50
        let plan = [
            FlashRegion(address: 0x1000, data: [0xE9] + rng.bytes(0x6FFF), label: "bootloader"),
            FlashRegion(address: 0x10000, data: table, label: "partition table"),
            FlashRegion(address: 0x11000, data: rng.bytes(0x1000), label: "nvs_key"),
            FlashRegion(address: 0x12000, data: rng.bytes(0x3000), label: "nvs"),
            FlashRegion(address: 0x32000, data: [UInt8](repeating: 0xFF, count: 0x2000), label: "otadata"),
            FlashRegion(address: 0x60000, data: image, label: "ota_0"),
            FlashRegion(address: 0x210000, data: [UInt8](repeating: 0xFF, count: 0x1000), label: "ota_1 (empty)"),
            FlashRegion(address: 0x56000, data: rng.bytes(0x100), label: "unpartitioned"),
        ]
        let out = try cipher.encryptExpected(plan, layout: layout)
        let changed = zip(plan, out).map { $0.data != $1.data }
        #expect(changed == [true, true, true, false, true, true, false, false], "seed \(seed)")
        for (p, o) in zip(plan, out) where p.data != o.data {
            #expect(try cipher.decrypt(o.data, at: o.address) == p.data, "\(p.label ?? "")")
        }
        // A region running from nvs into otadata crosses the boundary.
        let straddling = [FlashRegion(address: 0x31000, data: [UInt8](repeating: 0, count: 0x2000))]
        #expect(throws: FlashEncryptionError.regionStraddlesEncryptionBoundary(address: 0x31000, length: 0x2000, boundary: 0x32000)) {
            try cipher.encryptExpected(straddling, layout: layout)
        }
        // Spanning plaintext-only areas (phy_init into coredump) is fine.
        let plainSpan = [FlashRegion(address: 0x34000, data: [UInt8](repeating: 7, count: 0x2000))]
        #expect(try cipher.encryptExpected(plainSpan, layout: layout) == plainSpan)
    }
}
