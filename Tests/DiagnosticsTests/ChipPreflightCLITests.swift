import Diagnostics
import EFuse
import ESPCore
import Foundation
import Testing
import TestSupport

/// `espforge preflight --chip esp32s3|esp32c3 --efuse-file F`: eFuse files written by
/// `espefuse --virt` 5.6.0 (the oracle) and by espforge's own encoder.
@Suite(.enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures (../shared/fixtures) are missing"))
struct ChipPreflightCLITests {
    static let chips = ["esp32s3", "esp32c3"]

    struct Files {
        let dir: URL
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    }

    /// The chip's fixture images signed with key `k` (bootloader, table, app as ADDR FILE pairs).
    func pairs(_ f: ChipFixture, key k: Int, in files: Files) throws -> [String] {
        let bl = files.path("bl\(k).bin"), pt = files.path("pt.bin"), app = files.path("app\(k).bin")
        try Data(try f.sign(f.bootloader, [k])).write(to: URL(fileURLWithPath: bl))
        try Data(f.table).write(to: URL(fileURLWithPath: pt))
        try Data(try f.sign(f.app, [k])).write(to: URL(fileURLWithPath: app))
        return ["0x0", bl, "0x8000", pt, "0x10000", app]
    }

    func espefuse(_ chip: String, _ file: String, _ args: [String]) throws {
        let r = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", file, "--do-not-confirm"] + args)
        #expect(r.status == 0, "espefuse \(args.joined(separator: " ")): \(r.out.suffix(400)) \(r.err.suffix(400))")
    }

    func codes(_ r: ProcessResult) throws -> [String] {
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any], "\(r.out) \(r.err)")
        return (json["findings"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func espefuseVirtualFileDrivesTheDigestRules(_ chip: String) throws {
        let f = chip == "esp32s3" ? try ChipFixture.s3() : try ChipFixture.c3()
        let files = Files(dir: try TestEnvironment.temporaryDirectory("espforge-chip-pf"))
        defer { try? FileManager.default.removeItem(at: files.dir) }
        let efuses = files.path("efuse.bin")
        let key0 = TestEnvironment.fixture("secure/rsa_secure_boot_signing_key.pem").path
        try espefuse(chip, efuses, ["burn-key-digest", "BLOCK_KEY0", key0, "SECURE_BOOT_DIGEST0"])
        let base = ["preflight", "--chip", chip, "--chip-rev", "0.3", "--efuse-file", efuses]

        // Signed with the burned key: passes.
        let good = try Espforge.run(base + (try pairs(f, key: 0, in: files)))
        #expect(good.status == 0, "\(good.out)\(good.err)")
        #expect(good.out.contains("no findings") && good.out.contains("eFuses from \(efuses)"))
        // Signed with another key: PF019.
        let other = try Espforge.run(base + ["--json"] + (try pairs(f, key: 1, in: files)))
        #expect(other.status == 1)
        #expect(try codes(other).filter { $0 == "PF019" }.count == 2)
        // Slot 0 revoked (and Secure Boot on): PF021 for the images signed with the burned key.
        try espefuse(chip, efuses, ["burn-efuse", "SECURE_BOOT_KEY_REVOKE0", "1", "SECURE_BOOT_EN", "1"])
        let revoked = try Espforge.run(base + ["--json"] + (try pairs(f, key: 0, in: files)))
        #expect(revoked.status == 1)
        let found = try codes(revoked)
        #expect(found.filter { $0 == "PF021" }.count == 2 && !found.contains("PF019"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(revoked.stdout)) as? [String: Any])
        let kb = try #require(((json["target"] as? [String: Any])?["efuses"] as? [String: Any])?["keyBlocks"] as? [String: Any])
        #expect(kb["revokedSlots"] as? [Int] == [0] && kb["secureBootEnabled"] as? Bool == true)
    }

    @Test func efuseFileInputErrors() throws {
        let f = try ChipFixture.s3()
        let files = Files(dir: try TestEnvironment.temporaryDirectory("espforge-chip-pf"))
        defer { try? FileManager.default.removeItem(at: files.dir) }
        let good = files.path("s3.bin")
        try Data(EFuseVirtualFile.encode(try f.words(), map: f.map)).write(to: URL(fileURLWithPath: good))
        let plan = try pairs(f, key: 0, in: files)
        // An ESP32 target cannot take an S3/C3 eFuse file.
        let esp32 = try Espforge.run(["preflight", "--chip", "esp32", "--efuse-file", good] + plan)
        #expect(esp32.status != 0 && esp32.err.contains("--efuse-file reads ESP32-S3 / ESP32-C3"))
        // A file of the wrong size names the file and the expected size.
        let short = files.path("short.bin")
        try Data([UInt8](repeating: 0, count: 100)).write(to: URL(fileURLWithPath: short))
        let bad = try Espforge.run(["preflight", "--chip", "esp32s3", "--efuse-file", short] + plan)
        #expect(bad.status != 0 && bad.err.contains("short.bin has 100 bytes"))
        // espforge's own encoding of blank eFuses: the plan passes.
        let blank = try Espforge.run(["preflight", "--chip", "esp32s3", "--efuse-file", good] + plan)
        #expect(blank.status == 0, "\(blank.out)\(blank.err)")
    }
}

/// `espefuse summary --format json` of an S3/C3 gives the same facts as the eFuse file it was
/// printed from (the state: two digests, one revoked, an XTS-AES-128 key, encryption on, Secure
/// Boot on, download encryption off).
@Suite(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
struct ChipSummaryJSONTests {
    @Test(arguments: ["esp32s3", "esp32c3"])
    func summaryJSONAndEFuseFileGiveTheSameFacts(_ chip: String) throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-chip-json")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("efuse.bin").path
        func espefuse(_ args: [String]) throws {
            let r = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", file, "--do-not-confirm"] + args)
            #expect(r.status == 0, "espefuse \(args.joined(separator: " ")): \(r.out.suffix(400)) \(r.err.suffix(400))")
        }
        let key = dir.appendingPathComponent("xts.bin")
        try Data((0..<32).map { UInt8($0 * 7 + 1) }).write(to: key)
        try espefuse(["burn-key-digest", "BLOCK_KEY2", TestEnvironment.fixture("secure/rsa_secure_boot_signing_key.pem").path, "SECURE_BOOT_DIGEST0",
                      "BLOCK_KEY3", TestEnvironment.fixture("secure/rsa_secure_boot_signing_key2.pem").path, "SECURE_BOOT_DIGEST1"])
        try espefuse(["burn-key", "BLOCK_KEY0", key.path, "XTS_AES_128_KEY"])
        try espefuse(["burn-efuse", "SECURE_BOOT_KEY_REVOKE1", "1", "SECURE_BOOT_EN", "1", "SPI_BOOT_CRYPT_CNT", "1",
                      "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1", "DIS_PAD_JTAG", "1"])
        let json = dir.appendingPathComponent("summary.json").path
        try espefuse(["summary", "--format", "json", "--file", json])

        let fromFile = try SecurityFuseFacts.read(efuseFile: file, chip: chip).facts
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        let fromJSON = try SecurityFuseFacts(espefuseSummary: obj, map: try #require(EFuseFieldMap.named(chip)))
        #expect(fromJSON == fromFile)
        let kb = try #require(fromJSON.keyBlocks)
        #expect(kb.digestSlots.map(\.slot) == [0, 1] && kb.revokedSlots == [1] && kb.secureBootEnabled && kb.disPadJTAG)
        #expect(kb.keyBlocks[0].purpose == "XTS_AES_128_KEY" && kb.keyBlocks[0].readProtected && kb.keyBlocks[0].content == nil)
        #expect(fromJSON.flashEncryptionEnabled && fromJSON.flashEncryptionKeyPresent && fromJSON.disableDLEncrypt)
        // An ESP32 summary is not an S3/C3 one.
        #expect(throws: PreflightInputError.self) {
            try SecurityFuseFacts(espefuseSummary: ["FLASH_CRYPT_CNT": ["value": 0]], map: try #require(EFuseFieldMap.named(chip)))
        }
        // Through the command: the same findings as with --efuse-file.
        let f = chip == "esp32s3" ? try ChipFixture.s3() : try ChipFixture.c3()
        let files = ChipPreflightCLITests.Files(dir: dir)
        let plan = try ChipPreflightCLITests().pairs(f, key: 1, in: files)
        let viaJSON = try Espforge.run(["preflight", "--chip", chip, "--chip-rev", "0.3", "--efuse-summary", json, "--json"] + plan)
        let viaFile = try Espforge.run(["preflight", "--chip", chip, "--chip-rev", "0.3", "--efuse-file", file, "--json"] + plan)
        let a = try ChipPreflightCLITests().codes(viaJSON), b = try ChipPreflightCLITests().codes(viaFile)
        #expect(a == b && a.contains("PF021") && viaJSON.status == 1, "\(viaJSON.out) \(viaJSON.err)")
    }
}
