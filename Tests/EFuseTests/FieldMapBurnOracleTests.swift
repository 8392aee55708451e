import EFuse
import ESPCore
import Foundation
import TestSupport
import Testing

/// Differential tests of the offline S3/C3 burns: the same sequence of operations applied by
/// `espefuse --virt --chip CHIP --path-efuse-file` 5.6.0 to its file and by
/// `espforge efuse … --chip CHIP --virt-file` to a copy must leave byte-identical files (blocks,
/// Reed–Solomon check values, controller registers) after every step, and equal summaries.
/// A refused operation must leave both files untouched. A fresh file per test.
@Suite struct FieldMapBurnOracleTests {
    static let chips = ["esp32s3", "esp32c3"]

    /// One operation: espefuse's arguments and espforge's (both without chip and file).
    struct Step {
        var oracle: [String]
        var mine: [String]
        var refused = false
    }

    final class Bench {
        let chip: String
        let dir: URL
        let theirs: String
        let mine: String
        init(_ chip: String) throws {
            self.chip = chip
            dir = try TestEnvironment.temporaryDirectory("espforge-fieldmap-burn")
            theirs = dir.appendingPathComponent("espefuse.bin").path
            mine = dir.appendingPathComponent("espforge.bin").path
            try Data(count: 512).write(to: URL(fileURLWithPath: theirs))
            try Data(count: 512).write(to: URL(fileURLWithPath: mine))
        }
        deinit { try? FileManager.default.removeItem(at: dir) }

        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            let p = path(name)
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            return p
        }
        func bytes(_ p: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: p))) }

        /// Runs the step on both files and checks them; returns espforge's stdout.
        @discardableResult
        func run(_ step: Step, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
            let before = try bytes(mine)
            let o = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", theirs, "--do-not-confirm"] + step.oracle)
            let m = try Espforge.run(["efuse"] + step.mine + ["--chip", chip, "--virt-file", mine, "--yes"])
            if step.refused {
                #expect(o.status != 0, "espefuse accepted \(step.oracle)", sourceLocation: sourceLocation)
                #expect(m.status == 1, "espforge did not refuse \(step.mine): \(m.out)", sourceLocation: sourceLocation)
                #expect(m.err.contains("error:"), sourceLocation: sourceLocation)
                let unchanged = try bytes(mine) == before
                #expect(unchanged, "a refused burn changed the file", sourceLocation: sourceLocation)
            } else {
                #expect(o.status == 0, "espefuse \(step.oracle): \(o.out.suffix(800)) \(o.err.suffix(400))", sourceLocation: sourceLocation)
                #expect(m.status == 0, "espforge \(step.mine): \(m.out) \(m.err)", sourceLocation: sourceLocation)
            }
            let a = try bytes(theirs), b = try bytes(mine)
            let identical = a == b
            #expect(identical, "\(chip) after \(step.mine): files differ at register offsets \(differences(a, b))", sourceLocation: sourceLocation)
            return m.out
        }

        /// Register offsets (from the controller base) of the words that differ.
        func differences(_ a: [UInt8], _ b: [UInt8]) -> String {
            guard a.count == b.count else { return "sizes \(a.count) / \(b.count)" }
            let ra = Array(a.reversed()), rb = Array(b.reversed())
            return stride(from: 0, to: ra.count, by: 4).filter { ra[$0..<$0 + 4] != rb[$0..<$0 + 4] }
                .map { NumberParsing.hex($0, width: 3) }.joined(separator: ", ")
        }

        /// espefuse's JSON summary of both files, and espforge's summary of its own.
        func summariesAgree(sourceLocation: SourceLocation = #_sourceLocation) throws -> EFuseFieldMapSummary {
            func oracleJSON(_ file: String) throws -> NSDictionary {
                let out = path("summary-\(UUID().uuidString.prefix(6)).json")
                let r = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", file, "summary", "--format", "json", "--file", out])
                #expect(r.status == 0, sourceLocation: sourceLocation)
                return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? NSDictionary)
            }
            #expect(try oracleJSON(theirs) == oracleJSON(mine), "espefuse summarises the two files differently", sourceLocation: sourceLocation)
            let r = try Espforge.run(["efuse", "summary", "--chip", chip, "--virt-file", mine, "--json"])
            #expect(r.status == 0, "\(r.err)", sourceLocation: sourceLocation)
            let s = try JSONDecoder().decode(EFuseFieldMapSummary.self, from: Data(r.stdout))
            let map = try #require(EFuseFieldMap.named(chip))
            #expect(s == EFuseFieldMapSummary(words: try EFuseVirtualFile.decode(try bytes(theirs), map: map), map: map), sourceLocation: sourceLocation)
            return s
        }
    }

    static func key(_ seed: Int, _ n: Int = 32) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: seed &* 53 &+ $0 &* 11 &+ 5) } }

    // MARK: - burn, keys, protections, a refusal

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func sequenceMatchesEspefuseByteForByte(chip: String) throws {
        let b = try Bench(chip)
        let k1 = try b.write("k1.bin", Self.key(1)), k2 = try b.write("k2.bin", Self.key(2))
        let k64 = try b.write("k64.bin", Self.key(3, 64)), k4 = try b.write("k4.bin", Self.key(4))
        var steps: [Step] = [
            Step(oracle: ["burn-key", "BLOCK_KEY0", k1, "XTS_AES_128_KEY", "BLOCK_KEY1", k2, "HMAC_UP"],
                 mine: ["burn-key", "BLOCK_KEY0", k1, "XTS_AES_128_KEY", "BLOCK_KEY1", k2, "HMAC_UP"]),
        ]
        if chip == "esp32s3" {
            steps.append(Step(oracle: ["burn-key", "BLOCK_KEY2", k64, "XTS_AES_256_KEY"], mine: ["burn-key", "BLOCK_KEY2", k64, "XTS_AES_256_KEY"]))
            // The next free block after BLOCK_KEY4 is BLOCK_KEY5, which cannot hold an XTS key: both refuse.
            steps.append(Step(oracle: ["burn-key", "BLOCK_KEY4", k64, "XTS_AES_256_KEY"], mine: ["burn-key", "BLOCK_KEY4", k64, "XTS_AES_256_KEY"], refused: true))
            // The S3 ROM cannot boot with both: both refuse.
            steps.append(Step(oracle: ["burn-efuse", "DIS_USB_JTAG", "1", "DIS_USB_SERIAL_JTAG", "1"],
                              mine: ["burn", "DIS_USB_JTAG=1", "DIS_USB_SERIAL_JTAG=1"], refused: true))
        } else {
            // The C3 has no XTS-AES-256: both refuse, nothing changes.
            steps.append(Step(oracle: ["burn-key", "BLOCK_KEY2", k64, "XTS_AES_256_KEY"], mine: ["burn-key", "BLOCK_KEY2", k64, "XTS_AES_256_KEY"], refused: true))
            steps.append(Step(oracle: ["burn-key", "--no-write-protect", "BLOCK_KEY2", k4, "USER"], mine: ["burn-key", "--no-write-protect", "BLOCK_KEY2", k4, "USER"]))
        }
        steps += [
            Step(oracle: ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "1", "SECURE_BOOT_EN", "1", "SECURE_BOOT_KEY_REVOKE2", "1",
                          "DIS_PAD_JTAG", "1", "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1", "SECURE_VERSION", "0x1234", "KEY_PURPOSE_5", "6"],
                 mine: ["burn", "SPI_BOOT_CRYPT_CNT=1", "SECURE_BOOT_EN=1", "SECURE_BOOT_KEY_REVOKE2=1", "DIS_PAD_JTAG=1",
                        "DIS_DOWNLOAD_MANUAL_ENCRYPT=1", "SECURE_VERSION=0x1234", "KEY_PURPOSE_5=6"]),
            Step(oracle: ["burn-efuse", "CUSTOM_MAC", "10:22:33:44:55:66"], mine: ["burn", "CUSTOM_MAC=10:22:33:44:55:66"]),
            // BLOCK_USR_DATA now holds data (Reed–Solomon: programmed once): both refuse.
            Step(oracle: ["burn-efuse", "BLOCK_USR_DATA", String(repeating: "a5", count: 32)],
                 mine: ["burn", "BLOCK_USR_DATA=" + String(repeating: "a5", count: 32)], refused: true),
            // KEY_PURPOSE_5 was set to HMAC_DOWN_JTAG above: a key of that purpose goes in.
            Step(oracle: ["burn-key", "BLOCK_KEY5", k4, "HMAC_DOWN_JTAG"], mine: ["burn-key", "BLOCK_KEY5", k4, "HMAC_DOWN_JTAG"]),
            // A bit would have to clear: both refuse.
            Step(oracle: ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "2"], mine: ["burn", "SPI_BOOT_CRYPT_CNT=2"], refused: true),
            // A key into a block that holds one: both refuse.
            Step(oracle: ["burn-key", "BLOCK_KEY1", k4, "HMAC_UP"], mine: ["burn-key", "BLOCK_KEY1", k4, "HMAC_UP"], refused: true),
            Step(oracle: ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "3"], mine: ["burn", "SPI_BOOT_CRYPT_CNT=3"]),
            Step(oracle: ["write-protect-efuse", "SPI_BOOT_CRYPT_CNT", "BLOCK_USR_DATA", "MAC"],
                 mine: ["write-protect", "SPI_BOOT_CRYPT_CNT", "BLOCK_USR_DATA", "MAC"]),
            Step(oracle: ["read-protect-efuse", "BLOCK_SYS_DATA2"], mine: ["read-protect", "BLOCK_SYS_DATA2"]),
            // Write-protected now: both refuse.
            Step(oracle: ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "7"], mine: ["burn", "SPI_BOOT_CRYPT_CNT=7"], refused: true),
            // A digest block must stay readable: both refuse (BLOCK_KEY4 is empty, purpose USER).
            Step(oracle: ["read-protect-efuse", "BLOCK_KEY4"], mine: ["read-protect", "BLOCK_KEY4"], refused: true),
        ]
        for s in steps { try b.run(s) }
        let s = try b.summariesAgree()
        #expect(s.security.flashEncryptionKeyPurposes == (chip == "esp32s3" ? ["XTS_AES_128_KEY", "XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"] : ["XTS_AES_128_KEY"]))
        #expect(s.keyBlocks[0].readProtected && s.keyBlocks[1].readProtected && s.security.secureBootEnabled)
        #expect(s.security.spiBootCryptCnt == 3 && !s.security.flashEncryptionEnabled)
        #expect(s.security.readProtectedBits.contains(6) && s.security.revokedDigestSlots == [2])
        #expect(s.field("CUSTOM_MAC")?.value == "10:22:33:44:55:66")
        #expect(s.keyBlocks[5].purposeName == "HMAC_DOWN_JTAG" && s.keyBlocks[5].readProtected && s.keyBlocks[5].purposeWriteProtected)
    }

    /// Every key purpose of the chip, one fresh file each, with and without the protections.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func everyPurposeMatchesEspefuse(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        for (i, p) in map.keyPurposes.enumerated() where p.name != "RESERVED" && !p.name.hasPrefix("XTS_AES_256_KEY_") {
            let b = try Bench(chip)
            let k = try b.write("k.bin", Self.key(10 + i))
            let block = "BLOCK_KEY\(i % 5)"
            let flags = i % 3 == 1 ? ["--no-read-protect"] : (i % 3 == 2 ? ["--no-write-protect"] : [])
            let out = try b.run(Step(oracle: ["burn-key"] + flags + [block, k, p.name], mine: ["burn-key"] + flags + [block, k, p.name]))
            #expect(!out.contains(Self.key(10 + i).hexString) && !out.contains(Array(Self.key(10 + i).reversed()).hexString) || p.name.hasPrefix("SECURE_BOOT"),
                    "key material printed for \(p.name)")
            if flags == ["--no-read-protect"] && p.readProtected {
                // Left readable on purpose: hide it afterwards (write-protected block, still allowed).
                try b.run(Step(oracle: ["read-protect-efuse", block], mine: ["read-protect", block]))
            }
        }
    }

    // MARK: - burn-key-digest

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func keyDigestsMatchEspefuse(chip: String) throws {
        let b = try Bench(chip)
        var pems: [String] = []
        for slot in 0..<4 {
            let pem = b.path("key\(slot).pem")
            // Three RSA-3072 keys and one ECDSA P-256 key (espsecure digests both).
            let scheme = slot == 3 ? "ecdsa256" : "rsa3072"
            let g = try Oracle.run("espsecure", ["generate-signing-key", "--version", "2", "--scheme", scheme, pem])
            #expect(g.status == 0, "\(g.err)")
            pems.append(pem)
        }
        // One digest, then three at once, then one into a used block (refused).
        try b.run(Step(oracle: ["burn-key-digest", "BLOCK_KEY0", pems[0], "SECURE_BOOT_DIGEST0"],
                       mine: ["burn-key-digest", "BLOCK_KEY0", pems[0], "SECURE_BOOT_DIGEST0"]))
        let three = ["BLOCK_KEY2", pems[1], "SECURE_BOOT_DIGEST1", "BLOCK_KEY3", pems[2], "SECURE_BOOT_DIGEST2",
                     "BLOCK_KEY4", pems[3], "SECURE_BOOT_DIGEST0"]
        try b.run(Step(oracle: ["burn-key-digest", "--no-write-protect"] + three, mine: ["burn-key-digest", "--no-write-protect"] + three))
        try b.run(Step(oracle: ["burn-key-digest", "BLOCK_KEY0", pems[1], "SECURE_BOOT_DIGEST0"],
                       mine: ["burn-key-digest", "BLOCK_KEY0", pems[1], "SECURE_BOOT_DIGEST0"], refused: true))
        try b.run(Step(oracle: ["burn-efuse", "SECURE_BOOT_EN", "1", "SECURE_BOOT_KEY_REVOKE1", "1"],
                       mine: ["burn", "SECURE_BOOT_EN=1", "SECURE_BOOT_KEY_REVOKE1=1"]))
        let s = try b.summariesAgree()
        var digests: [String] = []
        for pem in pems {
            let out = b.path("d-\(digests.count).bin")
            let d = try Oracle.run("espsecure", ["digest-sbv2-public-key", "--keyfile", pem, "--output", out])
            #expect(d.status == 0)
            digests.append(try b.bytes(out).hexString)
        }
        #expect(s.keyBlocks.map(\.digest) == [digests[0], nil, digests[1], digests[2], digests[3], nil])
        #expect(s.keyBlocks[0].writeProtected && !s.keyBlocks[2].writeProtected && s.keyBlocks[2].purposeWriteProtected)
        #expect(s.security.secureBootDigestSlots == [0, 1, 2] && s.security.revokedDigestSlots == [1])
    }

    // MARK: - CLI behaviour without the oracle

    @Test func planWithoutYesBurnsNothingAndKeysAreNotPrinted() throws {
        let b = try Bench("esp32s3")
        let key = Self.key(99)
        let k = try b.write("k.bin", key)
        let before = try b.bytes(b.mine)
        let r = try Espforge.run(["efuse", "burn-key", "--chip", "esp32s3", "--virt-file", b.mine, "BLOCK_KEY1", k, "HMAC_UP"])
        #expect(r.status == 2)
        #expect(r.out.contains("BLOCK_KEY1 (BLOCK5): 32-byte key (not shown)") && r.out.contains("--yes"))
        #expect(try b.bytes(b.mine) == before)
        let y = try Espforge.run(["efuse", "burn-key", "--chip", "esp32s3", "--virt-file", b.mine, "BLOCK_KEY1", k, "HMAC_UP", "--yes"])
        #expect(y.status == 0 && y.out.contains("all requested bits read back as burned"))
        let mode = try FileManager.default.attributesOfItem(atPath: b.mine)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        for out in [r.out, y.out, r.err, y.err] {
            #expect(!out.contains(key.hexString) && !out.contains(Array(key.reversed()).hexString))
        }
        let again = try Espforge.run(["efuse", "burn-key", "--chip", "esp32s3", "--virt-file", b.mine, "BLOCK_KEY1", k, "HMAC_UP", "--yes"])
        #expect(again.status == 1 && again.err.contains("BLOCK_KEY1 is not free"))
        let badLen = try Espforge.run(["efuse", "burn-key", "--chip", "esp32s3", "--virt-file", b.mine, "BLOCK_KEY2", try b.write("short.bin", [1, 2, 3]), "USER", "--yes"])
        #expect(badLen.status == 1 && badLen.err.contains("short.bin") && badLen.err.contains("3 bytes"))
        let triples = try Espforge.run(["efuse", "burn-key", "--chip", "esp32s3", "--virt-file", b.mine, "BLOCK_KEY2", k])
        #expect(triples.status == 1 && triples.err.contains("triples"))
        let both = try Espforge.run(["efuse", "summary", "--chip", "esp32s3", "--virt-file", b.mine, "--port", "virtual:x"])
        #expect(both.status == 1 && both.err.contains("cannot be used together"))
        let noChip = try Espforge.run(["efuse", "summary", "--virt-file", b.mine])
        #expect(noChip.status == 1 && noChip.err.contains("--virt-file needs --chip"))
        let esp32 = try Espforge.run(["efuse", "burn", "--chip", "esp32", "--virt-file", b.mine, "X=1", "--yes"])
        #expect(esp32.status == 1 && esp32.err.contains("no eFuse field map for chip 'esp32'"))
        let text = try Espforge.run(["efuse", "summary", "--chip", "esp32s3", "--virt-file", b.mine])
        #expect(text.status == 0 && text.out.contains("BLOCK_KEY1: HMAC_UP, unreadable (read-protected, write-protected, purpose locked)"))
    }
}
