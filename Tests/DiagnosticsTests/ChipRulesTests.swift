import Diagnostics
import EFuse
import ESPCore
import Foundation
import ImageFormat
import SecureBoot
import Testing
import TestSupport

/// ESP32-S3 / ESP32-C3 images (ESP-IDF v5.2 hello-world builds from ../shared), signed with
/// Espressif's three RSA test keys, and eFuse states built with the chips' field maps.
struct ChipFixture: Sendable {
    let chip: ChipSpec
    let map: EFuseFieldMap
    let bootloader: [UInt8]
    let app: [UInt8]
    let table: [UInt8]

    static let keys: Result<[SigningKey], any Error> = Result {
        try ["rsa_secure_boot_signing_key.pem", "rsa_secure_boot_signing_key2.pem", "rsa_secure_boot_signing_key3.pem"]
            .map(Scenarios.fixtureKey)
    }

    init(_ chip: ChipSpec, folder: String) throws {
        self.chip = chip
        map = try #require(EFuseFieldMap.named(chip.name))
        bootloader = try TestEnvironment.fixtureBytes("chips/\(folder)/bootloader.bin")
        app = try TestEnvironment.fixtureBytes("chips/\(folder)/hello_world.bin")
        table = try TestEnvironment.fixtureBytes("chips/\(folder)/partition-table.bin")
    }

    static func s3() throws -> ChipFixture { try ChipFixture(.esp32s3, folder: "ESP32_S3") }
    static func c3() throws -> ChipFixture { try ChipFixture(.esp32c3, folder: "ESP32_C3") }

    static func key(_ i: Int) throws -> SigningKey { try keys.get()[i] }
    static func digest(_ i: Int) throws -> [UInt8] { try key(i).publicKey.keyDigest() }

    func sign(_ image: [UInt8], _ keyIndexes: [Int]) throws -> [UInt8] {
        try SecureBootSigner.sign(image: image, keys: keyIndexes.map(Self.key), append: false, policy: .generic).image
    }

    /// Bootloader at 0x0, table at 0x8000, app at 0x10000; images signed with the given keys
    /// (empty: unsigned).
    func plan(bootloaderKeys: [Int] = [0], appKeys: [Int] = [0], sdk: SDKConfig? = nil,
              options: FlashOptions = FlashOptions(), encrypted: Bool = false) throws -> FlashPlan {
        let bl = bootloaderKeys.isEmpty ? bootloader : try sign(bootloader, bootloaderKeys)
        let ap = appKeys.isEmpty ? app : try sign(app, appKeys)
        return FlashPlan(entries: [
            PlanEntry(address: 0x0, name: "bootloader.bin", bytes: bl, encrypted: encrypted),
            PlanEntry(address: 0x8000, name: "partition-table.bin", bytes: table, encrypted: encrypted),
            PlanEntry(address: 0x10000, name: "app.bin", bytes: ap, encrypted: encrypted),
        ], options: options, partitionTableOffset: 0x8000, sdkconfig: sdk)
    }

    /// Blank eFuses, changed by `edit`.
    func words(_ edit: (inout EFuseWordsEditor) throws -> Void = { _ in }) throws -> EFuseBlockWords {
        var e = EFuseWordsEditor(map: map, words: EFuseBlockWords(map: map))
        try edit(&e)
        return e.words
    }

    func facts(_ edit: (inout EFuseWordsEditor) throws -> Void = { _ in }) throws -> SecurityFuseFacts {
        SecurityFuseFacts(words: try words(edit), map: map)
    }

    /// A production chip: key 0's digest in slot 0 (BLOCK_KEY0), Secure Boot on, JTAG and direct boot off.
    func secured(_ edit: (inout EFuseWordsEditor) throws -> Void = { _ in }) throws -> SecurityFuseFacts {
        try facts { e in
            try e.digest(slot: 0, keyBlock: 0, try Self.digest(0))
            try e.set("SECURE_BOOT_EN", 1)
            for f in ["DIS_PAD_JTAG", "DIS_USB_JTAG", "DIS_DIRECT_BOOT"] { try e.set(f, 1) }
            try edit(&e)
        }
    }

    func target(_ efuses: SecurityFuseFacts?, revision: Int = 3) -> TargetFacts {
        TargetFacts(chip: chip, chipRevision: revision, efuses: efuses, source: "test")
    }
}

/// Sets eFuse fields by name through a chip's field map.
struct EFuseWordsEditor {
    let map: EFuseFieldMap
    var words: EFuseBlockWords

    mutating func set(_ name: String, _ value: UInt64) throws {
        words.setInteger(try #require(map.field(named: name), "no field \(name)"), value)
    }

    mutating func key(_ keyBlock: Int, purpose: String, _ bytes: [UInt8]) throws {
        try set("KEY_PURPOSE_\(keyBlock)", UInt64(try #require(map.purposeValue(purpose), "no purpose \(purpose)")))
        words.setBytes(try #require(map.field(named: "BLOCK_KEY\(keyBlock)")), bytes)
    }

    mutating func digest(slot: Int, keyBlock: Int, _ digest: [UInt8]) throws {
        try key(keyBlock, purpose: "SECURE_BOOT_DIGEST\(slot)", digest)
    }

    /// Burns WR_DIS bit `bit`.
    mutating func writeProtect(_ bit: Int) { words.setWord(0, 0, words.word(0, 0) | (1 << UInt32(bit))) }
}

private func run(_ plan: FlashPlan, _ target: TargetFacts) -> SafetyReport { SafetyRules.check(plan: plan, target: target) }
private func findings(_ r: SafetyReport, _ code: String) -> [Finding] { r.findings.filter { $0.code == code } }
private let sbSDK = SDKConfig(values: ["CONFIG_SECURE_BOOT_V2_ENABLED": "y", "CONFIG_PARTITION_TABLE_OFFSET": "0x8000"])
private let feSDK = SDKConfig(values: ["CONFIG_SECURE_FLASH_ENC_ENABLED": "y", "CONFIG_PARTITION_TABLE_OFFSET": "0x8000"])

/// The S3/C3 rules (PF019-PF028) and the shared rules reading per-chip names (PF004, PF011,
/// PF012, PF015, PF017, PF018): each with a failing and a passing case.
@Suite(.enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures (../shared/fixtures) are missing"))
struct ChipRulesTests {
    static let chips: [String] = ["esp32s3", "esp32c3"]
    static func fixture(_ name: String) throws -> ChipFixture { name == "esp32s3" ? try .s3() : try .c3() }

    @Test(arguments: chips)
    func securedBaselinePassesEveryRule(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let r = run(try f.plan(sdk: sbSDK), f.target(try f.secured()))
        #expect(r.findings.isEmpty, "\(r.findings.map { "\($0.code) \($0.message)" })")
        #expect(r.rulesRun == SafetyRules.rules.count)
    }

    @Test(arguments: chips)
    func factsFromTheFieldMap(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let ef = try f.facts { e in
            try e.digest(slot: 1, keyBlock: 2, try ChipFixture.digest(0))
            try e.key(3, purpose: "XTS_AES_128_KEY", [UInt8](repeating: 0x5A, count: 32))
            try e.set("SECURE_BOOT_KEY_REVOKE1", 1)
            try e.set("SPI_BOOT_CRYPT_CNT", 1)
            try e.set("DIS_DOWNLOAD_MANUAL_ENCRYPT", 1)
            try e.set("DIS_DOWNLOAD_MODE", 1)
            try e.set("SECURE_BOOT_EN", 1)
        }
        let kb = try #require(ef.keyBlocks)
        #expect(kb.digestSlots.map(\.slot) == [1] && kb.digestSlots[0].keyBlock == 2 && kb.digestSlots[0].revoked)
        #expect(kb.slot(matching: try ChipFixture.digest(0))?.slot == 1)
        #expect(kb.keyBlocks[3].purpose == "XTS_AES_128_KEY" && kb.keyBlocks[3].content == nil, "a secret key is never carried")
        #expect(ef.flashEncryptionEnabled && ef.flashEncryptionKeyPresent && ef.disableDLEncrypt && ef.uartDownloadDisabled)
        #expect(ef.secureBootEnabled && ef.secureBootDigestBurned && !ef.block2Used)
        #expect(try f.facts().keyBlocks?.digestSlots.isEmpty == true)
    }

    // MARK: PF019

    @Test(arguments: chips)
    func pf019SigningKeyNotInAnyDigestSlot(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let bad = run(try f.plan(bootloaderKeys: [1], appKeys: [1], sdk: sbSDK), f.target(try f.secured()))
        let found = findings(bad, "PF019")
        #expect(found.count == 2 && found.allSatisfy { $0.severity == .error && !$0.overridable })
        #expect(found[0].evidence.contains { $0.contains("digest slot 0 (BLOCK_KEY0") })
        // SECURE_BOOT_EN without any digest.
        let none = run(try f.plan(), f.target(try f.facts { try $0.set("SECURE_BOOT_EN", 1) }))
        #expect(findings(none, "PF019").contains { $0.message.contains("no key block holds a SECURE_BOOT_DIGESTn") })
        // A digest burned but Secure Boot not yet on: still an error, overridable.
        let early = run(try f.plan(bootloaderKeys: [1], appKeys: [1]), f.target(try f.facts { try $0.digest(slot: 0, keyBlock: 0, try ChipFixture.digest(0)) }))
        #expect(findings(early, "PF019").allSatisfy(\.overridable) && findings(early, "PF019").count == 2)
        // Key 1 in slot 2: fine.
        let good = run(try f.plan(bootloaderKeys: [1], appKeys: [1], sdk: sbSDK),
                       f.target(try f.secured { try $0.digest(slot: 2, keyBlock: 4, try ChipFixture.digest(1)) }))
        #expect(findings(good, "PF019").isEmpty)
    }

    // MARK: PF020

    @Test(arguments: chips)
    func pf020DigestInABlockWithoutADigestPurpose(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let userOnly = try f.facts { try $0.key(1, purpose: "USER", try ChipFixture.digest(0)) }
        let bad = findings(run(try f.plan(), f.target(userOnly)), "PF020")
        #expect(bad.count == 2 && bad.allSatisfy { $0.severity == .error && $0.message.contains("BLOCK_KEY1") && $0.message.contains("USER") })
        #expect(bad[0].fix.contains("KEY_PURPOSE_1"))
        // Also in a real slot: only a warning.
        let both = try f.secured { try $0.key(1, purpose: "USER", try ChipFixture.digest(0)) }
        let warn = findings(run(try f.plan(), f.target(both)), "PF020")
        #expect(warn.count == 2 && warn.allSatisfy { $0.severity == .warning })
        #expect(findings(run(try f.plan(), f.target(try f.secured())), "PF020").isEmpty)
    }

    // MARK: PF021

    @Test(arguments: chips)
    func pf021RevokedKeySlot(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let revoked = try f.secured { try $0.set("SECURE_BOOT_KEY_REVOKE0", 1) }
        let bad = findings(run(try f.plan(), f.target(revoked)), "PF021")
        #expect(bad.count == 2 && bad.allSatisfy { $0.severity == .error && !$0.overridable && $0.evidence[0].contains("SECURE_BOOT_KEY_REVOKE0 = 1") })
        // Signed with keys 0 and 1, slot 1 live: the image still boots through block 1.
        let rotated = try f.secured { e in
            try e.set("SECURE_BOOT_KEY_REVOKE0", 1)
            try e.digest(slot: 1, keyBlock: 1, try ChipFixture.digest(1))
        }
        let warn = findings(run(try f.plan(bootloaderKeys: [0, 1], appKeys: [0, 1]), f.target(rotated)), "PF021")
        #expect(warn.count == 2 && warn.allSatisfy { $0.severity == .warning && $0.message.contains("only through block 1") })
        #expect(findings(run(try f.plan(bootloaderKeys: [1], appKeys: [1]), f.target(rotated)), "PF021").isEmpty)
    }

    // MARK: PF022

    @Test func pf022BlocksTheChipNeverChecks() throws {
        // ESP32 checks block 0 only: key 1 in block 1 is ignored there, not on the S3.
        let s = try Scenario.get()
        let twoKeys = try SecureBootSigner.sign(image: s.appUnsigned, keys: [try ChipFixture.key(0), try ChipFixture.key(1)],
                                                append: false, policy: .generic).image
        let esp32 = findings(run(s.plan(app: twoKeys), try s.target()), "PF022")
        #expect(!esp32.isEmpty && esp32.allSatisfy { $0.severity == .warning && $0.message.contains("block(s) 1") })
        #expect(findings(run(s.plan(), try s.target()), "PF022").isEmpty)
        let f = try ChipFixture.s3()
        #expect(findings(run(try f.plan(bootloaderKeys: [0, 1, 2], appKeys: [0, 1]), f.target(nil)), "PF022").isEmpty)
    }

    // MARK: PF023

    @Test(arguments: chips)
    func pf023NotEnoughKeyBlocksForTheFirstBoot(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let sdk = SDKConfig(values: sbSDK.values.merging(feSDK.values) { a, _ in a })
        let crowded = try f.facts { e in
            for i in 3..<6 { try e.key(i, purpose: "HMAC_UP", [UInt8](repeating: UInt8(i), count: 32)) }
        }
        let bad = findings(run(try f.plan(bootloaderKeys: [0, 1, 2], appKeys: [0], sdk: sdk), f.target(crowded)), "PF023")
        #expect(bad.count == 1 && bad[0].severity == .error && bad[0].message.contains("4 key block(s)") && bad[0].message.contains("only 3"))
        #expect(findings(run(try f.plan(bootloaderKeys: [0, 1, 2], appKeys: [0], sdk: sdk), f.target(try f.facts())), "PF023").isEmpty)
        // Blocks whose KEY_PURPOSE_n is write-protected (WR_DIS 8-10) cannot take a new purpose.
        let lockedPurposes = try f.facts { e in for bit in 8...10 { e.writeProtect(bit) } }
        #expect(findings(run(try f.plan(bootloaderKeys: [0, 1, 2], appKeys: [0], sdk: sdk), f.target(lockedPurposes)), "PF023").count == 1)
        #expect(findings(run(try f.plan(bootloaderKeys: [0, 1], appKeys: [0], sdk: sdk), f.target(crowded)), "PF023").isEmpty)
    }

    // MARK: PF024

    @Test(arguments: chips)
    func pf024AggressiveRevocationOfAFailingTrustedKey(_ chip: String) throws {
        let f = try Self.fixture(chip)
        var plan = try f.plan()
        // A padding byte of the signed app changed after signing: its block for the trusted key fails.
        let last = plan.entries[2].bytes.count - SignatureSector.size - 1
        #expect(plan.entries[2].bytes[last] == 0xFF, "the app ends in 0xFF padding before its sector")
        plan.entries[2].bytes[last] = 0xFE
        let aggressive = try f.secured { try $0.set("SECURE_BOOT_AGGRESSIVE_REVOKE", 1) }
        let bad = findings(run(plan, f.target(aggressive)), "PF024")
        #expect(bad.count == 1 && bad[0].severity == .error && !bad[0].overridable && bad[0].address == 0x10000)
        #expect(bad[0].explanation.contains("SECURE_BOOT_KEY_REVOKE0"))
        #expect(findings(run(plan, f.target(try f.secured())), "PF024").isEmpty, "no aggressive revocation: PF003 alone")
        #expect(findings(run(try f.plan(), f.target(aggressive)), "PF024").isEmpty)
    }

    // MARK: PF025

    @Test(arguments: chips)
    func pf025SpiBootCryptCntStates(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let key128 = [UInt8](repeating: 0x11, count: 32)
        // On, without a key.
        let noKey = findings(run(try f.plan(appKeys: [], encrypted: true), f.target(try f.facts { try $0.set("SPI_BOOT_CRYPT_CNT", 1) })), "PF025")
        #expect(noKey.contains { $0.severity == .error && $0.message.contains("no key block holds a complete flash-encryption key") })
        // Permanently on (0b111) with plaintext.
        let forever = try f.facts { e in
            try e.set("SPI_BOOT_CRYPT_CNT", 7)
            try e.key(0, purpose: "XTS_AES_128_KEY", key128)
        }
        #expect(findings(run(try f.plan(bootloaderKeys: [], appKeys: []), f.target(forever)), "PF025")
            .contains { $0.severity == .error && $0.message.contains("0b111") })
        // Configured, off, write-protected (WR_DIS bit 4 locks SPI_BOOT_CRYPT_CNT on both chips).
        let locked = try f.facts { $0.writeProtect(4) }
        #expect(findings(run(try f.plan(sdk: feSDK), f.target(locked)), "PF025").contains { $0.message.contains("write-protected while off") })
        // Disabled once: enabling again is final.
        let once = try f.facts { e in
            try e.set("SPI_BOOT_CRYPT_CNT", 3)
            try e.key(0, purpose: "XTS_AES_128_KEY", key128)
        }
        #expect(findings(run(try f.plan(sdk: feSDK), f.target(once)), "PF025").map(\.severity) == [.warning])
        // Passing: on with its key and encrypted writes; or off and not configured.
        let on = try f.facts { e in
            try e.set("SPI_BOOT_CRYPT_CNT", 1)
            try e.key(0, purpose: "XTS_AES_128_KEY", key128)
        }
        #expect(findings(run(try f.plan(encrypted: true), f.target(on)), "PF025").isEmpty)
        #expect(findings(run(try f.plan(sdk: feSDK), f.target(try f.facts())), "PF025").isEmpty)
    }

    // MARK: PF026

    @Test func pf026XTSKeyScheme() throws {
        let s3 = try ChipFixture.s3(), c3 = try ChipFixture.c3()
        let k = [UInt8](repeating: 0x22, count: 32)
        let aes256 = SDKConfig(values: feSDK.values.merging(["CONFIG_SECURE_FLASH_ENCRYPTION_AES256": "y"]) { a, _ in a })
        // Half an XTS-AES-256 key (S3).
        let half = try s3.facts { try $0.key(0, purpose: "XTS_AES_256_KEY_1", k) }
        #expect(findings(run(try s3.plan(), s3.target(half)), "PF026").contains { $0.message.contains("only XTS_AES_256_KEY_1") })
        // AES-256 configured for a C3.
        #expect(findings(run(try c3.plan(sdk: aes256), c3.target(try c3.facts())), "PF026")
            .contains { $0.severity == .error && $0.message.contains("XTS-AES-256, which ESP32-C3 does not have") })
        // AES-256 configured on an S3 holding an AES-128 key.
        let k128 = try s3.facts { try $0.key(0, purpose: "XTS_AES_128_KEY", k) }
        #expect(findings(run(try s3.plan(sdk: aes256), s3.target(k128)), "PF026").contains { $0.message.contains("holds an XTS-AES-128 key") })
        // Passing: both halves with AES-256 on the S3; AES-128 on the C3.
        let full = try s3.facts { e in
            try e.key(0, purpose: "XTS_AES_256_KEY_1", k)
            try e.key(1, purpose: "XTS_AES_256_KEY_2", k)
        }
        #expect(findings(run(try s3.plan(sdk: aes256), s3.target(full)), "PF026").isEmpty)
        #expect(findings(run(try c3.plan(sdk: feSDK), c3.target(try c3.facts())), "PF026").isEmpty)
    }

    // MARK: PF027

    @Test(arguments: chips)
    func pf027SecureDownloadMode(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let sdm = try f.facts { try $0.set("ENABLE_SECURITY_DOWNLOAD", 1) }
        let detect = findings(run(try f.plan(options: FlashOptions(size: "detect")), f.target(sdm)), "PF027")
        #expect(detect.map(\.severity) == [.error, .warning])
        #expect(findings(run(try f.plan(), f.target(sdm)), "PF027").map(\.severity) == [.warning])
        #expect(findings(run(try f.plan(options: FlashOptions(size: "detect")), f.target(try f.facts())), "PF027").isEmpty)
    }

    // MARK: PF028

    @Test(arguments: chips)
    func pf028HardeningAfterSecureBoot(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let open = try f.facts { e in
            try e.digest(slot: 0, keyBlock: 0, try ChipFixture.digest(0))
            try e.set("SECURE_BOOT_EN", 1)
        }
        let bad = findings(run(try f.plan(), f.target(open)), "PF028")
        #expect(bad.count == 1 && bad[0].severity == .warning && bad[0].message.contains("DIS_PAD_JTAG, DIS_USB_JTAG, DIS_DIRECT_BOOT"))
        let allowJTAG = SDKConfig(values: ["CONFIG_SECURE_BOOT_ALLOW_JTAG": "y"])
        #expect(findings(run(try f.plan(sdk: allowJTAG), f.target(open)), "PF028").first?.message.contains("DIS_DIRECT_BOOT is not burned") == true)
        #expect(findings(run(try f.plan(), f.target(try f.secured())), "PF028").isEmpty)
    }

    // MARK: PF029

    @Test(arguments: chips)
    func pf029FirstBootRevokesTheSlotsPastTheCount(_ chip: String) throws {
        let f = try Self.fixture(chip)
        // No digest yet, bootloader signed with one key: slots 1 and 2 will be revoked (warning).
        let one = findings(run(try f.plan(sdk: sbSDK), f.target(try f.facts())), "PF029")
        #expect(one.count == 1 && one[0].severity == .warning && one[0].message.contains("slot 1, 2"))
        // Three keys: nothing to revoke.
        #expect(findings(run(try f.plan(bootloaderKeys: [0, 1, 2], sdk: sbSDK), f.target(try f.facts())), "PF029").isEmpty)
        // A pre-loaded digest in slot 2 only: the count is 1, so slot 2 itself is revoked (error).
        let high = try f.facts { try $0.digest(slot: 2, keyBlock: 0, try ChipFixture.digest(0)) }
        let bad = findings(run(try f.plan(sdk: sbSDK), f.target(high)), "PF029")
        #expect(bad.count == 1 && bad[0].severity == .error && !bad[0].overridable && bad[0].message.contains("slot 2"))
        // The same digest in slot 0: only the empty slots go (warning).
        let low = try f.facts { try $0.digest(slot: 0, keyBlock: 0, try ChipFixture.digest(0)) }
        #expect(findings(run(try f.plan(sdk: sbSDK), f.target(low)), "PF029").map(\.severity) == [.warning])
        // Secure Boot already on, or not configured: silent.
        #expect(findings(run(try f.plan(sdk: sbSDK), f.target(try f.secured())), "PF029").isEmpty)
        #expect(findings(run(try f.plan(), f.target(high)), "PF029").isEmpty)
    }

    // MARK: shared rules with per-chip names and limits

    @Test func pf011SecureBootNeedsC3Revision3() throws {
        let c3 = try ChipFixture.c3(), s3 = try ChipFixture.s3()
        let old = findings(run(try c3.plan(), c3.target(nil, revision: 2)), "PF011")
        #expect(old.count == 1 && old[0].message.contains("ESP32-C3 revision v0.3") && old[0].fix.contains("v0.3"))
        #expect(findings(run(try c3.plan(), c3.target(nil, revision: 3)), "PF011").isEmpty)
        #expect(findings(run(try s3.plan(), s3.target(nil, revision: 0)), "PF011").isEmpty)
    }

    /// S3/C3 check three blocks: a bad block 0 with a good block 1 is a warning there; on the
    /// ESP32 (block 0 only) the same damage is an error.
    @Test func pf003InvalidBlockWithAValidOneAfterIt() throws {
        let f = try ChipFixture.s3()
        var plan = try f.plan(bootloaderKeys: [0, 1], appKeys: [0, 1])
        let sector = plan.entries[2].bytes.count - SignatureSector.size
        plan.entries[2].bytes[sector + 900] ^= 0x55          // block 0's signature
        let crc = CRC32.checksum(plan.entries[2].bytes[sector..<(sector + SignatureBlock.crcOffset)])
        plan.entries[2].bytes.storeLE(crc, at: sector + SignatureBlock.crcOffset)
        let s3 = findings(run(plan, f.target(nil)), "PF003")
        #expect(s3.count == 1 && s3[0].severity == .warning && s3[0].message.contains("block 1 still verifies"))
        #expect(s3[0].evidence == ["block 0 RSA-PSS/ECDSA signature does not verify with the block's key"])
        // The app also has a trusted slot for key 1 only: the chip accepts it, nothing else fires.
        let slot1 = try f.facts { try $0.digest(slot: 0, keyBlock: 0, try ChipFixture.digest(1)) }
        #expect(run(plan, f.target(slot1)).errors == 0)
        // ESP32: block 0 is all it checks.
        let s = try Scenario.get()
        var app = try SecureBootSigner.sign(image: s.appUnsigned, keys: [try ChipFixture.key(0), try ChipFixture.key(1)],
                                            append: false, policy: .generic).image
        let at = app.count - SignatureSector.size
        app[at + 900] ^= 0x55
        app.storeLE(CRC32.checksum(app[at..<(at + SignatureBlock.crcOffset)]), at: at + SignatureBlock.crcOffset)
        let esp32 = findings(run(s.plan(app: app), try s.target()), "PF003")
        #expect(!esp32.isEmpty && esp32.allSatisfy { $0.severity == .error })
    }

    @Test(arguments: chips)
    func pf004AppKeyAmongTheBootloadersThreeBlocks(_ chip: String) throws {
        let f = try Self.fixture(chip)
        #expect(findings(run(try f.plan(bootloaderKeys: [0, 1], appKeys: [1]), f.target(nil)), "PF004").isEmpty)
        #expect(findings(run(try f.plan(bootloaderKeys: [0, 1], appKeys: [2]), f.target(nil)), "PF004").count == 1)
    }

    @Test(arguments: chips)
    func pf012AndPF015UseTheChipsEFuseNames(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let release = try f.facts { e in
            try e.set("SPI_BOOT_CRYPT_CNT", 1)
            try e.key(0, purpose: "XTS_AES_128_KEY", [UInt8](repeating: 3, count: 32))
            try e.set("DIS_DOWNLOAD_MANUAL_ENCRYPT", 1)
        }
        // Plaintext onto an encrypted chip.
        let plain = run(try f.plan(bootloaderKeys: [], appKeys: []), f.target(release))
        #expect(findings(plain, "PF012").first?.evidence.first?.hasPrefix("SPI_BOOT_CRYPT_CNT = 0x1") == true)
        #expect(findings(plain, "PF012").first?.fix.contains("DIS_DOWNLOAD_MANUAL_ENCRYPT") == true)
        // --encrypt needs the chip to encrypt in download mode: refused.
        let chipEncrypts = findings(run(try f.plan(encrypted: true), f.target(release)), "PF015")
        #expect(chipEncrypts.count == 1 && chipEncrypts[0].evidence == ["DIS_DOWNLOAD_MANUAL_ENCRYPT = 1"] && !chipEncrypts[0].overridable)
        // Host-encrypted ciphertext written as it is: not the chip's job, no PF015.
        var host = try f.plan(bootloaderKeys: [], appKeys: [])
        for i in host.entries.indices { host.entries[i].bytes = [UInt8](repeating: 0xA5, count: host.entries[i].bytes.count) }
        #expect(findings(run(host, f.target(release)), "PF015").isEmpty)
        let noDL = try f.facts { try $0.set("DIS_DOWNLOAD_MODE", 1) }
        #expect(findings(run(try f.plan(), f.target(noDL)), "PF015").first?.evidence == ["DIS_DOWNLOAD_MODE = 1"])
    }

    @Test(arguments: chips)
    func pf017NamesTheDigestSlots(_ chip: String) throws {
        let f = try Self.fixture(chip)
        let digest = try f.facts { try $0.digest(slot: 0, keyBlock: 0, try ChipFixture.digest(0)) }
        let bad = findings(run(try f.plan(appKeys: []), f.target(digest)), "PF017")
        #expect(bad.count == 1 && bad[0].message.contains("SECURE_BOOT_DIGESTn") && bad[0].address == 0x10000)
        let on = findings(run(try f.plan(appKeys: []), f.target(try f.secured())), "PF017")
        #expect(on.count == 1 && on[0].message.contains("SECURE_BOOT_EN is burned") && !on[0].overridable)
        #expect(findings(run(try f.plan(), f.target(digest)), "PF017").isEmpty)
    }

    @Test func pf018ImageForTheOtherChip() throws {
        let s3 = try ChipFixture.s3(), c3 = try ChipFixture.c3()
        let wrong = findings(run(try c3.plan(), s3.target(nil)), "PF018")
        #expect(wrong.count == 2 && wrong.allSatisfy { $0.message.contains("ESP32-C3") })
        #expect(findings(run(try s3.plan(), s3.target(nil)), "PF018").isEmpty)
    }

    /// ESP32 facts never carry key blocks, so the S3/C3 rules stay silent on the ESP32 scenarios.
    @Test func esp32FactsLeaveTheKeyPurposeRulesSilent() throws {
        let s = try Scenario.get()
        #expect(try s.target().efuses?.keyBlocks == nil)
        let codes = Set(KeyPurposeRules.rules.map(\.code)).subtracting(["PF022"])
        #expect(run(s.plan(), try s.target()).findings.allSatisfy { !codes.contains($0.code) })
    }
}
