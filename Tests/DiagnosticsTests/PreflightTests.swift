import Diagnostics
import EFuse
import ESPCore
import Foundation
import Partitions
import Testing
import TestSupport

/// Every preflight rule, with a failing and a passing scenario built from real, signed images.
@Suite(.enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures (../shared/fixtures) are missing"))
struct PreflightRuleTests {
    func run(_ plan: FlashPlan, _ target: TargetFacts) -> PreflightReport { SafetyRules.check(plan: plan, target: target) }

    @Test func baselinePassesEveryRule() throws {
        let s = try Scenario.get()
        let report = run(s.plan(), try s.target())
        #expect(report.findings.isEmpty, "unexpected: \(report.findings.map { "\($0.code) \($0.message)" })")
        #expect(report.passed)
        #expect(report.rulesRun == SafetyRules.rules.count)
    }

    @Test func ruleCodesAreUniqueAndStable() {
        let all = Preflight.rules.map(\.code)
        #expect(Set(all).count == all.count)
        #expect(all == (1...29).map { String(format: "PF%03d", $0) })
    }

    // PF001: the seed — an 8MB-signed bootloader written with --flash-size 4MB.
    @Test func pf001SignedHeaderRewrite() throws {
        let s = try Scenario.get()
        let bad = run(s.plan(bootloader: s.bootloader8MB, options: FlashOptions(size: "4MB")), try s.target())
        let f = try #require(bad.findings.first { $0.code == "PF001" })
        #expect(f.severity == .error)
        #expect(f.evidence.contains { $0.contains("DIO 40m 8MB") })
        #expect(f.evidence.contains { $0.contains("DIO 40m 4MB") })
        #expect(f.fix.contains("keep"))
        #expect(!bad.passed)
        // keep, or an option that does not change the bytes, is fine.
        #expect(!codes(run(s.plan(), try s.target())).contains("PF001"))
        #expect(!codes(run(s.plan(options: FlashOptions(mode: "dio", size: "4MB")), try s.target())).contains("PF001"))
        // --flash-size detect: rewrites to the chip's size (8MB-signed on a 4MB chip) …
        let detect = run(s.plan(bootloader: s.bootloader8MB, options: FlashOptions(size: "detect")), try s.target())
        #expect(detect.findings.contains { $0.code == "PF001" && $0.evidence.contains { $0.contains("DIO 40m 4MB") } })
        // … is harmless where the chip has the signed size, and an error when the size is unknown.
        #expect(!codes(run(s.plan(bootloader: s.bootloader8MB, options: FlashOptions(size: "detect")), try s.target(flashSize: 8 << 20))).contains("PF001"))
        var unknown = try s.target()
        unknown.flashSize = nil
        #expect(run(s.plan(options: FlashOptions(size: "detect")), unknown).findings.contains { $0.code == "PF001" && $0.message.contains("detect") })
        // Unsigned bootloader without Secure Boot, with an appended SHA-256: FP002 (the one engine
        // models espforge's write, which recomputes the digest only with --force).
        var sdk = s.sdkconfig
        sdk.values["CONFIG_SECURE_BOOT_V2_ENABLED"] = "n"
        let info = run(FlashPlan(entries: [PlanEntry(address: 0x1000, name: "bl.bin", bytes: s.bootloaderUnsigned)],
                                 options: FlashOptions(size: "4MB"), sdkconfig: sdk), try s.target())
        #expect(!codes(info).contains("PF001"))
        let fp002 = try #require(info.findings.first { $0.code == "FP002" })
        #expect(fp002.severity == .error && fp002.overridable)
        #expect(!SafetyRules.check(plan: FlashPlan(entries: [PlanEntry(address: 0x1000, name: "bl.bin", bytes: s.bootloaderUnsigned)],
                                                   options: FlashOptions(size: "4MB"), sdkconfig: sdk), target: try s.target(), force: true).refused)
    }

    @Test func pf002HeaderFlashSizeLargerThanChip() throws {
        let s = try Scenario.get()
        let bad = run(s.plan(bootloader: s.bootloader8MB), try s.target())
        let f = try #require(bad.findings.first { $0.code == "PF002" })
        #expect(f.severity == .error && f.message.contains("8MB"))
        #expect(f.fix.contains("sign"))
        #expect(!codes(run(s.plan(bootloader: s.bootloader8MB), try s.target(flashSize: 8 << 20))).contains("PF002"))
        #expect(!codes(run(s.plan(), try s.target())).contains("PF002"))
    }

    @Test(arguments: [false, true])
    func pf003SignatureInvalidNamesTheRewrite(rehash: Bool) throws {
        let s = try Scenario.get()
        let rewritten = try Scenario.rewriteHeader(s.bootloader8MB, size: "4MB", rehash: rehash)
        let bad = run(s.plan(bootloader: rewritten), try s.target())
        let f = try #require(bad.findings.first { $0.code == "PF003" })
        #expect(f.address == 0x1000)
        #expect(f.evidence.contains { $0.contains("built as DIO 40m 8MB") && $0.contains("found as DIO 40m 4MB") })
        #expect(f.evidence.contains { $0.contains(rehash ? "recomputed" : "still matches the original") })
        // A damaged signature (RSA bytes flipped) is found too, without a header story.
        var broken = s.appSignedA
        broken[broken.count - 4096 + 900] ^= 0x01
        let crcFixed = fixCRC(broken)
        let bad2 = run(s.plan(app: crcFixed), try s.target())
        #expect(bad2.findings.contains { $0.code == "PF003" && $0.address == 0x60000 && $0.evidence.contains { $0.contains("does not verify") } })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF003"))
    }

    func fixCRC(_ image: [UInt8]) -> [UInt8] {
        var out = image
        let start = out.count - 4096
        let crc = CRC32.checksum(out[start..<(start + 1196)])
        out.storeLE(crc, at: start + 1196)
        return out
    }

    @Test func pf004BootloaderAndAppSignedByDifferentKeys() throws {
        let s = try Scenario.get()
        let bad = run(s.plan(app: s.appSignedB), try s.target())
        let f = try #require(bad.findings.first { $0.code == "PF004" })
        #expect(f.evidence.first?.contains(Scenario.keyDigest(s.bootloader4MB).hexString) == true)
        #expect(!codes(run(s.plan(), try s.target())).contains("PF004"))
    }

    @Test func pf005KeyDigestVersusBurnedBLK2() throws {
        let s = try Scenario.get()
        var ef = try Scenario.factoryEFuses()
        ef.block2 = Scenario.keyDigest(s.appSignedB)
        let bad = run(s.plan(), try s.target(efuses: ef))
        #expect(bad.findings.filter { $0.code == "PF005" }.count == 3) // bootloader and both apps
        ef.block2 = Scenario.keyDigest(s.appSignedA)
        #expect(!codes(run(s.plan(), try s.target(efuses: ef))).contains("PF005"))
        var hidden = try Scenario.factoryEFuses()
        hidden.block2ReadProtected = true
        #expect(run(s.plan(), try s.target(efuses: hidden)).findings.contains { $0.code == "PF005" && $0.message.contains("read-protected") })
    }

    @Test func pf006BootloaderOverlapsTable() throws {
        let s = try Scenario.get()
        // Signed bootloader is 0x9000 bytes: 0x1000..0xa000 runs over a table at 0x8000.
        let bad = run(s.plan(tableOffset: 0x8000), try s.target())
        let f = try #require(bad.findings.first { $0.code == "PF006" })
        #expect(f.message.contains("0xa000") && f.message.contains("0x8000"))
        // An unsigned bootloader that will be signed is measured with its signature sector.
        var sdk = s.sdkconfig
        sdk.values["CONFIG_PARTITION_TABLE_OFFSET"] = "0x9000"
        let unsigned = run(FlashPlan(entries: [PlanEntry(address: 0x1000, name: "bl.bin", bytes: Array(s.bootloaderUnsigned.prefix(0x7710)))],
                                     partitionTableOffset: 0x9000, sdkconfig: sdk), try s.target())
        #expect(unsigned.findings.contains { $0.code == "PF006" && $0.evidence.contains { $0.contains("after signing") } })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF006"))
    }

    @Test func pf007PartitionTableOffset() throws {
        let s = try Scenario.get()
        var plan = s.plan()
        plan.partitionTableOffset = 0x10800
        let bad = run(plan, try s.target())
        let found = bad.findings.filter { $0.code == "PF007" }
        #expect(found.contains { $0.message.contains("not a multiple of 0x1000") })
        #expect(found.contains { $0.message.contains("built to read it at 0x10800") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF007"))
    }

    @Test func pf008PartitionsPastFlashEnd() throws {
        let s = try Scenario.get()
        let bad = run(s.plan(), try s.target(flashSize: 2 << 20))
        #expect(bad.findings.contains { $0.code == "PF008" && $0.message.contains("ota_1") })
        #expect(bad.findings.contains { $0.code == "PF008" && $0.address == 0x210000 && $0.file == "app.bin" })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF008"))
    }

    @Test func pf009AppLargerThanItsPartition() throws {
        let s = try Scenario.get()
        let small = Scenario.seedCSV.replacingOccurrences(of: "ota_0,    app,  ota_0,    0x60000,  0x1a0000",
                                                          with: "ota_0,    app,  ota_0,    0x60000,  0x10000")
        let table = try Scenario.table(csv: small, offset: 0x10000)
        let bad = run(s.plan(extra: [PlanEntry(address: 0x10000, name: "small-table.bin", bytes: table)]), try s.target())
        let f = try #require(bad.findings.first { $0.code == "PF009" })
        #expect(f.address == 0x60000 && f.message.contains("ota_0"))
        #expect(f.evidence.contains { $0.contains("signature sector") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF009"))
    }

    @Test func pf010MinimumChipRevision() throws {
        let s = try Scenario.get()
        let bad = run(s.plan(), try s.target(revision: 100, efuses: Scenario.factoryEFuses(revision: 1)))
        let f = bad.findings.filter { $0.code == "PF010" }
        #expect(f.count == 3) // bootloader (legacy min_rev 3) and both apps (min_rev_full 300)
        #expect(f.first?.explanation.contains("Image requires chip rev >= v3.0, but chip is v1.0") == true)
        #expect(!codes(run(s.plan(), try s.target(revision: 301))).contains("PF010"))
    }

    @Test func pf011SecureBootV2NeedsRev3AndCodingNone() throws {
        let s = try Scenario.get()
        let old = run(s.plan(), try s.target(revision: 200, efuses: Scenario.factoryEFuses(revision: 2)))
        #expect(old.findings.contains { $0.code == "PF011" && $0.message.contains("v3.0") })
        var ef = try Scenario.factoryEFuses()
        ef.codingScheme = 1
        let coding = run(s.plan(), try s.target(efuses: ef))
        #expect(coding.findings.contains { $0.code == "PF011" && $0.message.contains("3/4") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF011"))
    }

    @Test func pf012EncryptionMismatch() throws {
        let s = try Scenario.get()
        var ef = try Scenario.factoryEFuses()
        ef.flashCryptCount = 1
        ef.flashEncryptionKeyPresent = true
        let bad = run(s.plan(), try s.target(efuses: ef))
        let f = bad.findings.filter { $0.code == "PF012" }
        #expect(Set(f.compactMap(\.address)) == [0x1000, 0x10000, 0x60000, 0x210000])
        // Written with --encrypt: fine on the encrypted chip …
        #expect(!codes(run(s.plan(options: FlashOptions(encryptAll: true)), try s.target(efuses: ef))).contains("PF012"))
        // … but wrong on a chip whose encryption is off.
        let off = run(s.plan(options: FlashOptions(encryptAll: true)), try s.target())
        #expect(off.findings.contains { $0.code == "PF012" && $0.message.contains("encryption is off") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF012"))
    }

    @Test func pf013NVSFlags() throws {
        let s = try Scenario.get()
        let csv = Scenario.seedCSV
            .replacingOccurrences(of: "0x11000,  0x1000, encrypted", with: "0x11000,  0x1000")
            .replacingOccurrences(of: "0x12000,  0x20000", with: "0x12000,  0x20000, encrypted")
        let table = try Scenario.table(csv: csv, offset: 0x10000)
        let bad = run(s.plan(extra: [PlanEntry(address: 0x10000, name: "t.bin", bytes: table)]), try s.target())
        let f = bad.findings.filter { $0.code == "PF013" }
        #expect(f.contains { $0.severity == .error && $0.message.contains("'nvs'") })
        #expect(f.contains { $0.severity == .warning && $0.message.contains("'nvs_key'") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF013"))
    }

    @Test func pf014FlashCryptCount() throws {
        let s = try Scenario.get()
        var noKey = try Scenario.factoryEFuses()
        noKey.flashCryptCount = 1
        #expect(run(s.plan(options: FlashOptions(encryptAll: true)), try s.target(efuses: noKey))
            .findings.contains { $0.code == "PF014" && $0.message.contains("no flash encryption key") })
        var exhausted = try Scenario.factoryEFuses()
        exhausted.flashCryptCount = 0x7F
        exhausted.flashEncryptionKeyPresent = true
        #expect(run(s.plan(), try s.target(efuses: exhausted)).findings.contains { $0.code == "PF014" && $0.message.contains("exhausted") })
        var locked = try Scenario.factoryEFuses()
        locked.flashCryptCountWriteProtected = true
        #expect(run(s.plan(), try s.target(efuses: locked)).findings.contains { $0.code == "PF014" && $0.message.contains("write-protected") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF014"))
        // A chip with a key and encryption on, written with --encrypt: fine.
        var good = try Scenario.factoryEFuses()
        good.flashCryptCount = 1
        good.flashEncryptionKeyPresent = true
        #expect(!codes(run(s.plan(options: FlashOptions(encryptAll: true)), try s.target(efuses: good))).contains("PF014"))
    }

    @Test func pf015DownloadModeRestrictions() throws {
        let s = try Scenario.get()
        var noUART = try Scenario.factoryEFuses()
        noUART.uartDownloadDisabled = true
        #expect(run(s.plan(), try s.target(efuses: noUART)).findings.contains { $0.code == "PF015" && $0.evidence == ["UART_DOWNLOAD_DIS = 1"] })
        var release = try Scenario.factoryEFuses()
        release.flashCryptCount = 1
        release.flashEncryptionKeyPresent = true
        release.disableDLEncrypt = true
        let bad = run(s.plan(options: FlashOptions(encryptAll: true)), try s.target(efuses: release))
        #expect(bad.findings.contains { $0.code == "PF015" && $0.evidence == ["DISABLE_DL_ENCRYPT = 1"] })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF015"))
        #expect(!codes(run(s.plan(), try s.target(efuses: release))).contains("PF015"))
    }

    @Test func pf016WrongOffsets() throws {
        let s = try Scenario.get()
        // ESP32 bootloader written at 0x0 (the S3/C3 offset).
        var entries = s.plan().entries.filter { $0.address != 0x1000 }
        entries.append(PlanEntry(address: 0x0, name: "bootloader.bin", bytes: s.bootloader4MB))
        let bad = run(FlashPlan(entries: entries, partitionTableOffset: 0x10000, sdkconfig: s.sdkconfig), try s.target())
        #expect(bad.findings.contains { $0.code == "PF016" && $0.address == 0 && $0.message.contains("0x1000") })
        // App written where no app partition starts.
        let misplaced = run(s.plan(extra: [PlanEntry(address: 0x70000, name: "app.bin", bytes: s.appSignedA)]), try s.target())
        #expect(misplaced.findings.contains { $0.code == "PF016" && $0.address == 0x70000 })
        // App at the bootloader offset.
        #expect(run(s.plan(bootloader: s.appSignedA), try s.target()).findings.contains { $0.code == "PF016" && $0.address == 0x1000 })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF016"))
    }

    @Test func pf017UnsignedImagesUnderSecureBoot() throws {
        let s = try Scenario.get()
        let bad = run(s.plan(app: s.appUnsigned), try s.target())
        #expect(bad.findings.filter { $0.code == "PF017" }.count == 2)
        var burned = try Scenario.factoryEFuses()
        burned.absDone1 = true
        burned.block2 = Scenario.keyDigest(s.bootloader4MB)
        var sdk = s.sdkconfig
        sdk.values["CONFIG_SECURE_BOOT_V2_ENABLED"] = "n"
        let viaEFuse = run(s.plan(bootloader: s.bootloaderUnsigned, sdk: sdk), try s.target(efuses: burned))
        #expect(viaEFuse.findings.contains { $0.code == "PF017" && $0.message.contains("ABS_DONE_1") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF017"))
    }

    @Test func pf018ImageForAnotherChip() throws {
        let s = try Scenario.get()
        var s3 = s.bootloaderUnsigned
        s3[12] = 9 // chip id ESP32-S3
        var sdk = s.sdkconfig
        sdk.values["CONFIG_SECURE_BOOT_V2_ENABLED"] = "n"
        let bad = run(s.plan(bootloader: s3, sdk: sdk), try s.target())
        #expect(bad.findings.contains { $0.code == "PF018" && $0.message.contains("ESP32-S3") })
        #expect(!codes(run(s.plan(), try s.target())).contains("PF018"))
    }

    @Test func eFuseSnapshotFromSummaryJSON() throws {
        let json: [String: Any] = [
            "FLASH_CRYPT_CNT": ["value": 1], "ABS_DONE_1": ["value": true], "CODING_SCHEME": ["value": 0],
            "BLOCK2": ["value": String(repeating: "ab ", count: 32)], "RD_DIS": ["value": 1],
            "DISABLE_DL_ENCRYPT": ["value": false], "UART_DOWNLOAD_DIS": ["value": "False"],
        ]
        let s = try SecurityFuseFacts(espefuseSummary: json)
        #expect(s.flashEncryptionEnabled && s.absDone1 && s.flashEncryptionKeyPresent)
        #expect(s.block2 == [UInt8](repeating: 0xAB, count: 32))
        #expect(!s.uartDownloadDisabled && !s.disableDLEncrypt)
        #expect(throws: PreflightInputError.self) { try SecurityFuseFacts(espefuseSummary: ["x": 1]) }
    }

    @Test func revisionParsing() {
        #expect(TargetFacts.parseRevision("3") == 300)
        #expect(TargetFacts.parseRevision("v3.1") == 301)
        #expect(TargetFacts.parseRevision("301") == 301)
        #expect(TargetFacts.parseRevision("x") == nil)
    }
}

/// Arbitrary and damaged inputs: findings or clean errors, never a crash.
@Suite(.enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures (../shared/fixtures) are missing"))
struct PreflightRobustnessTests {
    @Test func randomAndTruncatedEntriesNeverCrash() throws {
        let s = try Scenario.get()
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let sources = [s.bootloader8MB, s.table, s.appSignedA]
        for n in 0..<30 {
            var entries: [PlanEntry] = []
            for (i, src) in sources.enumerated() {
                var bytes = Array(src.prefix(Int.random(in: 0...src.count, using: &rng)))
                for _ in 0..<Int.random(in: 0...8, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                entries.append(PlanEntry(address: [0x1000, 0x10000, 0x60000][i], name: "f\(i)", bytes: bytes))
            }
            entries.append(PlanEntry(address: 0x300000, name: "random", bytes: rng.bytes(Int.random(in: 0...2000, using: &rng))))
            var ef = try Scenario.factoryEFuses()
            ef.flashCryptCount = UInt8.random(in: 0...0x7F, using: &rng)
            ef.codingScheme = UInt8.random(in: 0...3, using: &rng)
            let options = FlashOptions(mode: Bool.random(using: &rng) ? "qio" : nil, size: Bool.random(using: &rng) ? "2MB" : nil,
                                       encryptAll: Bool.random(using: &rng))
            let report = SafetyRules.check(plan: FlashPlan(entries: entries, options: options, partitionTableOffset: 0x10000, sdkconfig: s.sdkconfig),
                                       target: try s.target(revision: Int.random(in: 0...301, using: &rng), efuses: ef))
            #expect(report.rulesRun == SafetyRules.rules.count, "seed \(seed) case \(n)")
            _ = HeaderForensics.analyzeSigned(entries[0].bytes)
            _ = HeaderForensics.originalHeaderForSimpleHash(entries[0].bytes)
        }
    }

    @Test func malformedBuildDirectoryIsAnError() throws {
        let files: [String: [UInt8]] = [
            "/b1/flasher_args.json": Array("not json".utf8),
            "/b2/flasher_args.json": Array("[1,2]".utf8),
            "/b3/flasher_args.json": Array("{\"flash_files\": {\"zz\": \"a.bin\"}}".utf8),
            "/b4/flasher_args.json": Array("{\"flash_files\": {\"0x1000\": \"missing.bin\"}}".utf8),
            "/b5/flasher_args.json": Array("{\"flash_files\": {\"0x1000\": 7}}".utf8),
        ]
        for dir in ["/b1", "/b2", "/b3", "/b4", "/b5", "/none"] {
            #expect(throws: PreflightInputError.self, "\(dir)") {
                try BuildDirectory.load(dir) { files[$0] }
            }
        }
    }

    @Test func sdkconfigParsing() {
        let sdk = SDKConfig(text: "CONFIG_A=y\r\n# CONFIG_B is not set\nCONFIG_PARTITION_TABLE_OFFSET=0x10000\nCONFIG_ESPTOOLPY_FLASHSIZE=\"4MB\"\ngarbage\n=x\n")
        #expect(sdk.isEnabled("CONFIG_A") && sdk["CONFIG_B"] == "n")
        #expect(sdk.partitionTableOffset == 0x10000 && sdk.flashSize == "4MB")
    }
}
