import EFuse
import ESPCore
import Foundation
import TestSupport
import Testing

/// ESP32-S3 / ESP32-C3 field maps against `espefuse --virt` 5.6.0: the oracle burns fields into its
/// virtual eFuse file; we decode the raw blocks in that file with our table and compare every
/// field with the oracle's `summary --format json` of the same file.
@Suite struct FieldMapOracleTests {
    static let chips = ["esp32s3", "esp32c3"]

    // MARK: - table checks (no oracle)

    @Test(arguments: chips) func tableIsConsistent(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        #expect(map.blockWordCounts.count == 11 && map.blockNames.count == 11)
        #expect(map.readRegisterOffset(block: 4) == 0x9C)
        #expect(map.readRegisterOffset(block: 10) + 32 <= UInt32(map.registerSpaceSize))
        var seen = Set<String>()
        for f in map.fields {
            #expect(seen.insert(f.name).inserted, "duplicate \(f.name)")
            #expect(f.startBit + f.width <= 32 * map.blockWordCounts[f.block], "\(f.name) runs past its block")
            if f.block == 0 && f.name != "WR_DIS" { #expect(f.writeProtect != nil, "\(f.name) has no WR_DIS bit") }
        }
        // BLOCK0 fields never overlap (the wider user-data block contains CUSTOM_MAC by design).
        let block0 = map.fields.filter { $0.block == 0 }
        for (i, a) in block0.enumerated() {
            for b in block0[(i + 1)...] {
                let overlap = a.startBit < b.startBit + b.width && b.startBit < a.startBit + a.width
                #expect(!overlap, "\(a.name) overlaps \(b.name)")
            }
        }
        for n in ["SECURE_BOOT_EN", "SECURE_BOOT_KEY_REVOKE0", "SECURE_BOOT_KEY_REVOKE1", "SECURE_BOOT_KEY_REVOKE2",
                  "SECURE_BOOT_AGGRESSIVE_REVOKE", "SPI_BOOT_CRYPT_CNT", "DIS_DOWNLOAD_MANUAL_ENCRYPT",
                  "ENABLE_SECURITY_DOWNLOAD", "DIS_USB_JTAG", "DIS_PAD_JTAG", "DIS_DIRECT_BOOT", "MAC",
                  "WAFER_VERSION_MAJOR", "WAFER_VERSION_MINOR_LO", "WAFER_VERSION_MINOR_HI", "RD_DIS", "WR_DIS"]
            + (0..<6).flatMap({ ["BLOCK_KEY\($0)", "KEY_PURPOSE_\($0)"] }) {
            #expect(map.field(named: n) != nil, "\(chip) lacks \(n)")
        }
        #expect(map.purposeValue("SECURE_BOOT_DIGEST2") == 11)
        #expect(map.purposeValue("XTS_AES_128_KEY") == 4)
        #expect((map.purposeValue("XTS_AES_256_KEY_1") != nil) == (chip == "esp32s3"))
    }

    @Test(arguments: chips) func virtualFileRoundTripsAndDecodes(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        var w = EFuseBlockWords(map: map)
        w.setInteger(try #require(map.field(named: "SPI_BOOT_CRYPT_CNT")), 7)
        w.setInteger(try #require(map.field(named: "KEY_PURPOSE_2")), 10)
        w.setBytes(try #require(map.field(named: "BLOCK_KEY2")), Array(0..<32))
        w.setInteger(try #require(map.field(named: "WAFER_VERSION_MINOR_HI")), 1)
        w.setInteger(try #require(map.field(named: "WAFER_VERSION_MINOR_LO")), 2)
        w.setInteger(try #require(map.field(named: "WAFER_VERSION_MAJOR")), 1)
        let file = EFuseVirtualFile.encode(w, map: map)
        #expect(file.count == 512)
        #expect(try EFuseVirtualFile.decode(file, map: map) == w)
        #expect(throws: EFuseFieldMapError.self) { try EFuseVirtualFile.decode(Array(file.dropLast()), map: map) }
        let s = EFuseFieldMapSummary(words: w, map: map)
        #expect(s.revision == "v1.10")
        #expect(s.security.flashEncryptionEnabled && s.security.spiBootCryptCnt == 7)
        #expect(s.security.secureBootDigestSlots == [1])
        #expect(s.keyBlocks[2].digest == Array(UInt8(0)..<32).hexString)
        #expect(s.field("KEY_PURPOSE_2")?.value == "SECURE_BOOT_DIGEST1")
    }

    @Test(arguments: chips) func readableSecretKeysAreNotShown(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        var w = EFuseBlockWords(map: map)
        w.setInteger(try #require(map.field(named: "KEY_PURPOSE_0")), 4)
        w.setBytes(try #require(map.field(named: "BLOCK_KEY0")), [UInt8](repeating: 0xA5, count: 32))
        let s = EFuseFieldMapSummary(words: w, map: map)
        let f = try #require(s.field("BLOCK_KEY0"))
        #expect(f.hex == nil && !f.value.contains("a5"))
        #expect(EFuseFieldMapSummary(words: w, map: map, revealKeys: true).field("BLOCK_KEY0")?.hex?.hasPrefix("a5a5") == true)
    }

    @Test(arguments: chips) func decodeCommandPrintsTheLibrarySummary(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        let dir = try TestEnvironment.temporaryDirectory("espforge-fieldmap")
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = EFuseBlockWords(map: map)
        w.setInteger(try #require(map.field(named: "SECURE_BOOT_EN")), 1)
        w.setInteger(try #require(map.field(named: "KEY_PURPOSE_1")), 9)
        w.setBytes(try #require(map.field(named: "BLOCK_KEY1")), [UInt8](repeating: 0x5A, count: 32))
        w.setInteger(try #require(map.field(named: "KEY_PURPOSE_0")), 4)
        w.setBytes(try #require(map.field(named: "BLOCK_KEY0")), [UInt8](repeating: 0xC3, count: 32))
        w.setInteger(try #require(map.field(named: "WR_DIS")), 1 << 24)
        let file = dir.appendingPathComponent("efuse.bin").path
        try Data(EFuseVirtualFile.encode(w, map: map)).write(to: URL(fileURLWithPath: file))

        let json = try Espforge.run(["efuse", "decode", "--chip", chip, "--from-file", file, "--json"])
        #expect(json.status == 0, "\(json.err)")
        let decoded = try JSONDecoder().decode(EFuseFieldMapSummary.self, from: Data(json.stdout))
        #expect(decoded == EFuseFieldMapSummary(words: w, map: map))
        #expect(decoded.security.secureBootDigestSlots == [0] && decoded.keyBlocks[1].digest == String(repeating: "5a", count: 32))

        let text = try Espforge.run(["efuse", "decode", "--chip", chip, "--from-file", file])
        #expect(text.status == 0)
        #expect(text.out.contains("SECURE_BOOT_EN yes"))
        #expect(text.out.contains("BLOCK_KEY1: SECURE_BOOT_DIGEST0, programmed (write-protected)"))
        #expect(text.out.contains(String(repeating: "5a", count: 32)))
        #expect(!text.out.lowercased().contains("c3 c3") && !text.out.lowercased().contains("c3c3"), "a readable XTS key was printed")

        let wrongChip = try Espforge.run(["efuse", "decode", "--chip", "esp32", "--from-file", file])
        #expect(wrongChip.status == 1 && wrongChip.err.contains("no eFuse field map for chip 'esp32'"))
        try Data([UInt8](repeating: 0, count: 100)).write(to: URL(fileURLWithPath: file))
        let short = try Espforge.run(["efuse", "decode", "--chip", chip, "--from-file", file])
        #expect(short.status == 1 && short.err.contains("has 100 bytes"))
    }

    // MARK: - differential tests against espefuse --virt

    /// Burns with the oracle, then compares. Each step is one espefuse invocation.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func burnedFieldsAgreeWithEspefuse(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        let dir = try TestEnvironment.temporaryDirectory("espforge-fieldmap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let efuseFile = dir.appendingPathComponent("efuse.bin").path
        let digest = (0..<32).map { UInt8(($0 * 7 + 3) & 0xFF) }
        let key = (0..<32).map { UInt8(0xF0 ^ $0) }
        try Data(digest).write(to: dir.appendingPathComponent("digest.bin"))
        try Data(key).write(to: dir.appendingPathComponent("key.bin"))
        let steps: [[String]] = [
            ["burn-key", "BLOCK_KEY0", dir.appendingPathComponent("digest.bin").path, "SECURE_BOOT_DIGEST0"],
            ["burn-key", "BLOCK_KEY2", dir.appendingPathComponent("key.bin").path, "XTS_AES_128_KEY"],
            ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "1", "SECURE_BOOT_EN", "1", "SECURE_BOOT_KEY_REVOKE2", "1",
             "DIS_PAD_JTAG", "1", "DIS_USB_JTAG", "1", "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1", "SECURE_VERSION", "0x1234",
             "ENABLE_SECURITY_DOWNLOAD", "1", "DIS_DIRECT_BOOT", "1", "KEY_PURPOSE_5", "6"],
            ["burn-efuse", "CUSTOM_MAC", "10:22:33:44:55:66"],
            ["write-protect-efuse", "DIS_PAD_JTAG", "SPI_BOOT_CRYPT_CNT"],
        ]
        for step in steps { try oracle(chip, efuseFile, step) }

        let words = try EFuseVirtualFile.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: efuseFile))), map: map)
        let mine = EFuseFieldMapSummary(words: words, map: map, revealKeys: true)
        let theirs = try oracleSummary(chip, efuseFile, dir)
        let (problems, compared) = compare(mine, theirs, map: map)
        #expect(problems.isEmpty, "\(chip): \(problems.joined(separator: "\n"))")
        #expect(compared == map.fields.count + map.composites.count)

        // The facts the burns must have produced (so the comparison above is not vacuous).
        #expect(mine.security.secureBootEnabled)
        #expect(mine.security.secureBootDigestSlots == [0])
        #expect(mine.keyBlocks[0].digest == digest.hexString && mine.keyBlocks[0].writeProtected)
        #expect(mine.keyBlocks[2].readProtected && mine.keyBlocks[2].purposeName == "XTS_AES_128_KEY")
        #expect(mine.security.flashEncryptionKeyPurposes == ["XTS_AES_128_KEY"])
        #expect(mine.security.revokedDigestSlots == [2])
        #expect(mine.security.flashEncryptionEnabled && mine.security.disPadJTAG && mine.security.disUSBJTAG)
        #expect(mine.security.disDownloadManualEncrypt && mine.security.enableSecurityDownload && mine.security.disDirectBoot)
        #expect(mine.security.writeProtectedBits.contains(2) && mine.security.writeProtectedBits.contains(4))
        #expect(mine.security.readProtectedBits == [2])
        #expect(mine.field("KEY_PURPOSE_5")?.value == "HMAC_DOWN_JTAG")
        #expect(mine.field("CUSTOM_MAC")?.value == "10:22:33:44:55:66")
    }

    /// Writes a file the oracle cannot burn (factory MAC, chip revision, flash/PSRAM codes), lets
    /// espefuse read it, and compares.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func craftedFactoryFieldsAgreeWithEspefuse(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        let dir = try TestEnvironment.temporaryDirectory("espforge-fieldmap")
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = EFuseBlockWords(map: map)
        func set(_ name: String, _ v: UInt64) throws { w.setInteger(try #require(map.field(named: name)), v) }
        w.setBytes(try #require(map.field(named: "MAC")), [0x66, 0x55, 0x44, 0x33, 0x22, 0x10])
        try set("WAFER_VERSION_MAJOR", 1)
        try set("WAFER_VERSION_MINOR_LO", 1)
        try set("WAFER_VERSION_MINOR_HI", 1)
        try set("PKG_VERSION", 1)
        try set("FLASH_CAP", 1)
        try set("FLASH_VENDOR", 2)
        try set("SPI_PAD_CONFIG_CS", 0x15)
        try set("SECURE_BOOT_AGGRESSIVE_REVOKE", 1)
        try set("KEY_PURPOSE_3", 11)
        try set("SOFT_DIS_JTAG", 5)
        try set("WDT_DELAY_SEL", 2)
        if chip == "esp32s3" { try set("PSRAM_CAP", 2); try set("PSRAM_VENDOR", 1); try set("KEY_PURPOSE_1", 2) }
        w.setBytes(try #require(map.field(named: "OPTIONAL_UNIQUE_ID")), (0..<16).map { UInt8(0x30 + $0) })
        let file = dir.appendingPathComponent("efuse.bin").path
        try Data(EFuseVirtualFile.encode(w, map: map)).write(to: URL(fileURLWithPath: file))

        let mine = EFuseFieldMapSummary(words: w, map: map, revealKeys: true)
        let (problems, compared) = compare(mine, try oracleSummary(chip, file, dir), map: map)
        #expect(problems.isEmpty, "\(chip): \(problems.joined(separator: "\n"))")
        #expect(compared == map.fields.count + map.composites.count)
        #expect(mine.mac == "10:22:33:44:55:66" && mine.revision == "v1.9")
        #expect(mine.security.aggressiveRevoke && mine.security.secureBootDigestSlots == [2])
    }

    /// Three Secure Boot V2 digests burned by `espefuse burn-key-digest` (one call, three RSA-3072
    /// keys from espsecure), one slot revoked: our slots and digests match espsecure's digests and
    /// every field matches espefuse's summary.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func threeKeyDigestsAgreeWithEspefuse(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        let dir = try TestEnvironment.temporaryDirectory("espforge-fieldmap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let efuseFile = dir.appendingPathComponent("efuse.bin").path
        var burn = ["burn-key-digest"]
        var digests: [String] = []
        for slot in 0..<3 {
            let pem = dir.appendingPathComponent("key\(slot).pem").path
            let digest = dir.appendingPathComponent("digest\(slot).bin").path
            let g = try Oracle.run("espsecure", ["generate-signing-key", "--version", "2", "--scheme", "rsa3072", pem])
            #expect(g.status == 0, "\(g.err)")
            let d = try Oracle.run("espsecure", ["digest-sbv2-public-key", "--keyfile", pem, "--output", digest])
            #expect(d.status == 0, "\(d.err)")
            digests.append([UInt8](try Data(contentsOf: URL(fileURLWithPath: digest))).hexString)
            burn += ["BLOCK_KEY\(slot + 3)", pem, "SECURE_BOOT_DIGEST\(slot)"]
        }
        try oracle(chip, efuseFile, burn)
        try oracle(chip, efuseFile, ["burn-efuse", "SECURE_BOOT_KEY_REVOKE1", "1", "SECURE_BOOT_EN", "1"])

        let words = try EFuseVirtualFile.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: efuseFile))), map: map)
        let mine = EFuseFieldMapSummary(words: words, map: map)
        let (problems, compared) = compare(mine, try oracleSummary(chip, efuseFile, dir), map: map)
        #expect(problems.isEmpty, "\(chip): \(problems.joined(separator: "\n"))")
        #expect(compared == map.fields.count + map.composites.count)
        #expect(mine.security.secureBootDigestSlots == [0, 1, 2] && mine.security.revokedDigestSlots == [1])
        #expect(mine.keyBlocks[3...].map(\.digest) == digests.map { Optional($0) })
        #expect(mine.keyBlocks[3...].allSatisfy { $0.writeProtected && !$0.readProtected })
    }

    /// Every field's WR_DIS and RD_DIS bit, checked with six files: file k sets the WR_DIS bits whose
    /// index has bit k set (and the same for RD_DIS, k < 3), the last file sets all of them. A field
    /// with the wrong protection bit (or none where espefuse has one) is writeable/readable in some
    /// file where espefuse says it is not, or the other way round.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func protectionBitsAgreeWithEspefuse(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        let dir = try TestEnvironment.temporaryDirectory("espforge-fieldmap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wrDis = try #require(map.field(named: "WR_DIS")), rdDis = try #require(map.field(named: "RD_DIS"))
        for k in 0...5 {
            var w = EFuseBlockWords(map: map)
            func pattern(_ bits: Int) -> UInt64 {
                var v: UInt64 = 0
                for n in 0..<bits where k == 5 || (n >> k) & 1 == 1 { v |= UInt64(1) << UInt64(n) }
                return v
            }
            let wr = pattern(32)
            let rd: UInt64 = k < 3 || k == 5 ? pattern(7) : 0
            w.setInteger(wrDis, wr)
            w.setInteger(rdDis, rd)
            let file = dir.appendingPathComponent("efuse\(k).bin").path
            try Data(EFuseVirtualFile.encode(w, map: map)).write(to: URL(fileURLWithPath: file))
            let mine = EFuseFieldMapSummary(words: w, map: map)
            let (problems, compared) = compare(mine, try oracleSummary(chip, file, dir), map: map)
            #expect(problems.isEmpty, "\(chip) WR_DIS \(NumberParsing.hex(wr)) RD_DIS \(NumberParsing.hex(rd)): \(problems.joined(separator: "\n"))")
            #expect(compared == map.fields.count + map.composites.count)
            #expect(mine.fields.contains { !$0.writeable })
        }
    }

    // MARK: - helpers

    private func oracle(_ chip: String, _ file: String, _ args: [String]) throws {
        let r = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", file, "--do-not-confirm"] + args)
        guard r.status == 0 else {
            throw TestSupportError.missing("espefuse \(args.joined(separator: " ")) failed: \(r.out.suffix(600)) \(r.err.suffix(600))")
        }
    }

    private func oracleSummary(_ chip: String, _ file: String, _ dir: URL) throws -> [String: [String: Any]] {
        let json = dir.appendingPathComponent("summary-\(UUID().uuidString.prefix(6)).json").path
        try oracle(chip, file, ["summary", "--format", "json", "--file", json])
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))
        return try #require(obj as? [String: [String: Any]])
    }

    /// Every disagreement, one line each, and how many fields were compared.
    private func compare(_ mine: EFuseFieldMapSummary, _ theirs: [String: [String: Any]],
                         map: EFuseFieldMap) -> ([String], Int) {
        var out: [String] = []
        var compared = 0
        let composites = Set(map.composites.map(\.name))
        for f in mine.fields {
            guard let e = theirs[f.name] else { out.append("\(f.name): not in espefuse's summary"); continue }
            compared += 1
            let type = e["efuse_type"] as? String ?? ""
            let raw = (e["raw_value"] as? String ?? "").lowercased()
            let rawHex = raw.hasPrefix("0x") ? String(raw.dropFirst(2)) : raw
            if composites.contains(f.name) {
                if (e["value"] as? NSNumber)?.uint64Value != f.integer { out.append("\(f.name): \(f.value) vs \(String(describing: e["value"]))") }
                continue
            }
            if e["readable"] as? Bool != f.readable { out.append("\(f.name): readable \(f.readable) vs espefuse \((e["readable"] as? Bool).map { "\($0)" } ?? "missing")") }
            if e["writeable"] as? Bool != f.writeable { out.append("\(f.name): writeable \(f.writeable) vs espefuse \((e["writeable"] as? Bool).map { "\($0)" } ?? "missing")") }
            if e["block"] as? Int != f.block || e["word"] as? Int != f.word || e["pos"] as? Int != f.bit
                || e["bit_len"] as? Int != f.width {
                out.append("\(f.name): position \(f.block)/\(f.word)/\(f.bit)/\(f.width) vs \(e["block"] ?? "")/\(e["word"] ?? "")/\(e["pos"] ?? "")/\(e["bit_len"] ?? "")")
            }
            if let n = f.integer, !type.hasPrefix("bytes") {
                if UInt64(rawHex, radix: 16) != n { out.append("\(f.name): raw \(n) vs \(raw)") }
                if type == "bool", e["value"] as? String == nil, (e["value"] as? NSNumber)?.boolValue != (n != 0) {
                    out.append("\(f.name): value \(f.value) vs \(String(describing: e["value"]))")
                }
                if type.hasPrefix("uint"), let s = e["value"] as? String, f.name.hasPrefix("KEY_PURPOSE_"), s != f.value {
                    out.append("\(f.name): value \(f.value) vs \(s)")
                }
                if type.hasPrefix("uint"), let v = e["value"] as? NSNumber, !(e["value"] is String), v.uint64Value != n {
                    out.append("\(f.name): value \(n) vs \(v)")
                }
            } else if f.readable {
                let value = e["value"] as? String ?? ""
                if f.name.hasSuffix("MAC") {
                    if !value.hasPrefix(f.value) { out.append("\(f.name): \(f.value) vs \(value)") }
                } else {
                    if rawHex != f.hex { out.append("\(f.name): raw \(f.hex ?? "nil") vs \(rawHex)") }
                    if value != f.value { out.append("\(f.name): value \(f.value) vs \(value)") }
                }
            }
        }
        return (out, compared)
    }
}
