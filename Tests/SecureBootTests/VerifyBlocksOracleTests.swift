import Foundation
import Testing
import TestSupport
@testable import SecureBoot

/// `espforge secure-boot verify` on S3/C3 images with up to three signature blocks: the blocks it
/// reports as verifying with each key are the ones `espsecure verify-signature` reports, and with
/// an `espefuse --virt` eFuse file each block is matched to its digest slot and revocation.
@Suite("secure-boot verify: blocks and digest slots vs espsecure/espefuse", oracleTrait, fixtureTrait)
struct VerifyBlocksOracleTests {
    static let keys = [Fx.rsaKey, Fx.rsaKey2, Fx.rsaKey3]

    /// Block numbers espsecure reports as "verification successful" for `key`.
    func espsecureBlocks(_ image: String, _ key: String) throws -> (status: Int32, blocks: [Int]) {
        let r = try Oracle.run("espsecure", ["verify-signature", "--version", "2", "-k", key, image])
        let text = r.out + r.err
        let blocks = (0..<3).filter { text.contains("Signature block \($0) verification successful") }
        return (r.status, blocks)
    }

    func espforgeReport(_ args: [String]) throws -> (status: Int32, json: [String: Any]) {
        let r = try Espforge.run(["secure-boot", "verify", "--json"] + args)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any], "\(r.out) \(r.err)")
        return (r.status, json)
    }

    func verifiedBlocks(_ json: [String: Any]) -> [[Int]] {
        (json["keys"] as? [[String: Any]] ?? []).map { $0["verifiedBlocks"] as? [Int] ?? [] }
    }

    @Test(arguments: ["esp32s3", "esp32c3"], [false, true])
    func blocksPerKeyAgreeWithEspsecure(chip: String, signedByEspsecure: Bool) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let s = try Scratch(); defer { s.remove() }
        let input = try s.write(randomImage(&rng), "in.bin")
        let out = s.path("out.bin")
        // Keys 1 and 3 sign (blocks 0 and 1); key 2 does not.
        let signers = [Fx.path(Self.keys[0]), Fx.path(Self.keys[2])]
        if signedByEspsecure {
            try espsecureOK(["sign-data", input, "--version", "2", "-o", out, "-k"] + signers)
        } else {
            try espforgeOK(["secure-boot", "sign", "--chip", chip] + signers.flatMap { ["--key", $0] } + [input, "-o", out])
        }
        for key in Self.keys.map(Fx.path) {
            let theirs = try espsecureBlocks(out, key)
            let mine = try espforgeReport(["--chip", chip, "--key", key, out])
            #expect(verifiedBlocks(mine.json) == [theirs.blocks], "seed=\(seed) key \(key)")
            #expect((mine.status == 0) == (theirs.status == 0), "seed=\(seed) key \(key)")
        }
        #expect(try espsecureBlocks(out, Fx.path(Self.keys[2])).blocks == [1], "the oracle sees the third key in block 1")
        // All three keys at once: one row per key, exit 1 because key 2 verifies nothing.
        let all = try espforgeReport(["--chip", chip] + Self.keys.flatMap { ["--key", Fx.path($0)] } + [out])
        #expect(verifiedBlocks(all.json) == [[0], [], [1]] && all.status == 1)
    }

    @Test(arguments: ["esp32s3", "esp32c3"])
    func digestSlotsAndRevocationFromAnEspefuseFile(chip: String) throws {
        let s = try Scratch(); defer { s.remove() }
        var rng = SeededRandom(seed: testSeed())
        let input = try s.write(randomImage(&rng), "in.bin")
        let image = s.path("signed.bin")
        try espforgeOK(["secure-boot", "sign", "--chip", chip] + Self.keys.prefix(2).flatMap { ["--key", Fx.path($0)] } + [input, "-o", image])
        // Key 2 in slot 0 (BLOCK_KEY1), key 1 in slot 2 (BLOCK_KEY4); slot 2 revoked.
        let efuses = s.path("efuse.bin")
        func espefuse(_ args: [String]) throws {
            let r = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", efuses, "--do-not-confirm"] + args)
            #expect(r.status == 0, "\(r.out.suffix(300)) \(r.err.suffix(300))")
        }
        try espefuse(["burn-key-digest", "BLOCK_KEY1", Fx.path(Self.keys[1]), "SECURE_BOOT_DIGEST0",
                      "BLOCK_KEY4", Fx.path(Self.keys[0]), "SECURE_BOOT_DIGEST2"])
        let live = try espforgeReport(["--chip", chip, "--efuse-file", efuses, image])
        var blocks = try #require(live.json["blocks"] as? [[String: Any]])
        #expect(blocks.map { $0["slot"] as? Int } == [2, 0])
        #expect(blocks.map { $0["slotRevoked"] as? Bool } == [false, false])
        #expect(live.json["accepted"] as? Bool == true && live.status == 0)
        let slots = try #require(live.json["slots"] as? [[String: Any]])
        #expect(slots.map { $0["keyBlock"] as? Int } == [1, 4] && slots.map { $0["blocks"] as? [Int] } == [[1], [0]])

        try espefuse(["burn-efuse", "SECURE_BOOT_KEY_REVOKE2", "1"])
        let one = try espforgeReport(["--chip", chip, "--efuse-file", efuses, image])
        blocks = try #require(one.json["blocks"] as? [[String: Any]])
        #expect(blocks.map { $0["slotRevoked"] as? Bool } == [true, false] && one.json["accepted"] as? Bool == true)

        try espefuse(["burn-efuse", "SECURE_BOOT_KEY_REVOKE0", "1"])
        let none = try Espforge.run(["secure-boot", "verify", "--chip", chip, "--efuse-file", efuses, image])
        #expect(none.status == 1 && none.out.contains("REVOKED") && none.out.contains("the chip would NOT accept this image"), "\(none.out)")
        // The ESP32 rules cannot read an S3/C3 eFuse file.
        let wrong = try Espforge.run(["secure-boot", "verify", "--chip", "esp32", "--efuse-file", efuses, image])
        #expect(wrong.status != 0 && wrong.err.contains("--efuse-file needs --chip esp32s3 or --chip esp32c3"))
    }
}
