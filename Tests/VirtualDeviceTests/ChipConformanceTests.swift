import EFuse
import Foundation
import TestSupport
import Testing
import VirtualDevice

/// Issue 17 §2: esptool and espefuse 5.6.0 against virtual ESP32-S3 / ESP32-C3 devices over
/// socket://, the same list as for the ESP32 (ConformanceTests). Modelled from documentation: no
/// golden recording of the S3/C3 ROM exists (docs/virtual-device-chips.md).
@Suite struct ChipConformanceTests {
    static let chips = ["esp32s3", "esp32c3"]

    func served(_ chip: String, _ rng: inout SeededRandom) throws -> (ServedDevice, String) {
        let oui = try #require(VirtualChip.named(chip)).macOUI
        let mac = (oui + (0..<3).map { _ in UInt8.random(in: 0...255, using: &rng) })
            .map { String(format: "%02x", $0) }.joined(separator: ":")
        let dev = try ServedDevice(mac: mac, extra: ["--chip", chip])
        try dev.start()
        return (dev, mac)
    }

    func esptool(_ dev: ServedDevice, _ args: [String], stub: Bool = true) throws -> ProcessResult {
        var a = ["--chip", "auto", "--port", dev.portURL, "--before", "no-reset", "--after", "no-reset"]
        if !stub { a.append("--no-stub") }
        return try Oracle.run("esptool", a + args)
    }

    func espefuse(_ dev: ServedDevice, _ chip: String, _ args: [String]) throws -> ProcessResult {
        try Oracle.run("espefuse", ["--chip", chip, "--port", dev.portURL, "--before", "no-reset", "--do-not-confirm"] + args)
    }

    func espefuseVirt(_ file: String, _ chip: String, _ args: [String]) throws -> ProcessResult {
        try Oracle.run("espefuse", ["--chip", chip, "--virt", "--path-efuse-file", file, "--do-not-confirm"] + args)
    }

    /// The summary from its header on (the lines before it describe the connection).
    func summaryBody(_ r: ProcessResult) -> String {
        guard let range = r.out.range(of: "=== Run \"summary\" command ===") else { return "(no summary)\n" + r.out + r.err }
        return String(r.out[range.lowerBound...])
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func esptoolDetectsIdentifiesAndFlashes(chip: String) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let (dev, mac) = try served(chip, &rng)
        defer { dev.stop() }
        let name = try #require(VirtualChip.named(chip)).displayName

        let id = try esptool(dev, ["chip-id"], stub: false)
        expectOK(id, "chip-id", seed)
        #expect(id.out.contains("Detecting chip type... \(name)"), "\(id.out.suffix(600))")
        #expect(id.out.contains("MAC:                \(mac)"))
        let readMAC = try esptool(dev, ["read-mac"])
        expectOK(readMAC, "read-mac (stub)", seed)
        #expect(readMAC.out.contains("Stub flasher running"))
        #expect(readMAC.out.contains(mac))
        let flashID = try esptool(dev, ["flash-id"], stub: false)
        expectOK(flashID, "flash-id", seed)
        #expect(flashID.out.contains("Manufacturer: ef"))
        #expect(flashID.out.contains("Detected flash size: 4MB"))

        let a = rng.bytes(Int.random(in: 20_000...90_000, using: &rng))
        let b = rng.bytes(Int.random(in: 1000...5000, using: &rng))
        let pa = try dev.writeTemp(a, "a.bin"), pb = try dev.writeTemp(b, "b.bin")
        expectOK(try esptool(dev, ["write-flash", "0x10000", pa]), "write-flash (stub)", seed)
        expectOK(try esptool(dev, ["write-flash", "0x30000", pb], stub: false), "write-flash (ROM, compressed)", seed)
        expectOK(try esptool(dev, ["write-flash", "-u", "0x40000", pb], stub: false), "write-flash (ROM, plain)", seed)
        let verify = try esptool(dev, ["verify-flash", "0x10000", pa, "0x30000", pb, "0x40000", pb])
        expectOK(verify, "verify-flash", seed)
        #expect(verify.out.contains("Verification successful"))
        let out = try dev.writeTemp([], "read.bin")
        expectOK(try esptool(dev, ["read-flash", "0x10000", String(a.count), out]), "read-flash (stub)", seed)
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))) == a, "seed \(seed)")
        let slow = try dev.writeTemp([], "slow.bin")
        expectOK(try esptool(dev, ["read-flash", "0x10000", "200", slow], stub: false), "read-flash (ROM)", seed)
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: slow))) == Array(a.prefix(200)), "seed \(seed)")
        expectOK(try esptool(dev, ["erase-region", "0x30000", "0x1000"]), "erase-region (stub)", seed)
        dev.stop()
        let flash = try dev.flash()
        #expect(Array(flash[0x10000..<(0x10000 + a.count)]) == a, "seed \(seed)")
        #expect(flash[0x30000..<0x31000].allSatisfy { $0 == 0xFF })
        #expect(Array(flash[0x40000..<(0x40000 + b.count)]) == b)
        // Nothing written between the regions (the S3/C3 ROM's compressed write is not modelled
        // with the ESP32 ECO3 ROM's stale-window tail).
        #expect(flash[(0x30000 + b.count)..<0x40000].allSatisfy { $0 == 0xFF } || b.count > 0x1000)
        #expect(flash[(0x40000 + b.count)..<0x50000].allSatisfy { $0 == 0xFF })
    }

    /// espefuse over socket:// and `espefuse --virt` on a copy of the device's efuse.bin: the same
    /// summary, and after the same burns the same fuses (the read registers' part of the file;
    /// programming/timing registers are volatile on the chip and not kept — see the docs).
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func espefuseOverSocketMatchesEspefuseVirt(chip: String) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let (dev, _) = try served(chip, &rng)
        defer { dev.stop() }
        let map = try #require(EFuseFieldMap.named(chip))
        let virt = try dev.writeTemp([UInt8](try Data(contentsOf: URL(fileURLWithPath: dev.state + "/efuse.bin"))), "virt.bin")

        let s1 = try espefuse(dev, chip, ["summary"]), s2 = try espefuseVirt(virt, chip, ["summary"])
        expectOK(s1, "summary (socket)", seed)
        #expect(summaryBody(s1) == summaryBody(s2))

        let key = try dev.writeTemp(rng.bytes(chip == "esp32s3" ? 64 : 32), "xts.bin")
        let hmac = try dev.writeTemp(rng.bytes(32), "hmac.bin")
        let pem = dev.root.appendingPathComponent("sb.pem").path
        expectOK(try Oracle.run("espsecure", ["generate-signing-key", "--version", "2", "--scheme", "rsa3072", pem]), "keygen", seed)
        let xtsPurpose = chip == "esp32s3" ? "XTS_AES_256_KEY" : "XTS_AES_128_KEY"
        let burns: [[String]] = [
            ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "1", "DIS_PAD_JTAG", "1"],
            ["burn-key", "BLOCK_KEY0", key, xtsPurpose],
            ["burn-key", chip == "esp32s3" ? "BLOCK_KEY2" : "BLOCK_KEY1", hmac, "HMAC_UP", "--no-read-protect"],
            ["burn-key-digest", "BLOCK_KEY3", pem, "SECURE_BOOT_DIGEST0"],
            ["burn-efuse", "SECURE_BOOT_EN", "1", "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1"],
            ["burn-efuse", "SECURE_BOOT_KEY_REVOKE2", "1"],
        ]
        for args in burns {
            let r1 = try espefuse(dev, chip, args), r2 = try espefuseVirt(virt, chip, args)
            #expect(r1.status == r2.status, "\(args): socket \(r1.status), virt \(r2.status)\n\(r1.out.suffix(800))\n\(r1.err.suffix(800))")
            expectOK(r1, args.joined(separator: " "), seed)
        }
        let after1 = try espefuse(dev, chip, ["summary"]), after2 = try espefuseVirt(virt, chip, ["summary"])
        #expect(summaryBody(after1) == summaryBody(after2))
        dev.stop()

        let fromDevice = try EFuseVirtualFile.read(dev.state + "/efuse.bin", chip: chip).1
        let fromVirt = try EFuseVirtualFile.read(virt, chip: chip).1
        #expect(EFuseVirtualFile.encode(fromDevice, map: map) == EFuseVirtualFile.encode(fromVirt, map: map), "seed \(seed)")
        // The burn took: purposes, digest, flags (not an empty comparison).
        let summary = EFuseFieldMapSummary(words: fromDevice, map: map)
        #expect(summary.security.secureBootEnabled)
        #expect(summary.security.secureBootDigestSlots == [0])
        #expect(summary.security.revokedDigestSlots == [2])
        #expect(summary.keyBlocks[0].readProtected)
        // The key itself is kept by the device (the chip's engine uses it), not in efuse.bin.
        #expect(FileManager.default.fileExists(atPath: dev.state + "/efuse-protected.bin"))
    }

    /// Encrypted writes in download mode use the XTS key burned by espefuse (ROM and stub); they
    /// equal espsecure's encryption, and stop once DIS_DOWNLOAD_MANUAL_ENCRYPT is burned.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func encryptedWritesMatchEspsecure(chip: String) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let (dev, _) = try served(chip, &rng)
        defer { dev.stop() }
        let keyBytes = rng.bytes(chip == "esp32s3" ? 64 : 32)
        let key = try dev.writeTemp(keyBytes, "xts.bin")
        expectOK(try espefuse(dev, chip, ["burn-key", "BLOCK_KEY0", key, chip == "esp32s3" ? "XTS_AES_256_KEY" : "XTS_AES_128_KEY"]),
                 "burn-key", seed)
        let plain = rng.bytes(4096 * Int.random(in: 1...4, using: &rng))
        let pp = try dev.writeTemp(plain, "plain.bin")
        expectOK(try esptool(dev, ["write-flash", "--encrypt", "0x20000", pp]), "write-flash --encrypt (stub)", seed)
        expectOK(try esptool(dev, ["write-flash", "--encrypt", "0x60000", pp], stub: false), "write-flash --encrypt (ROM)", seed)
        let expected = [0x20000, 0x60000].map { addr -> [UInt8] in
            let out = dev.root.appendingPathComponent("enc-\(addr).bin").path
            _ = try? Oracle.run("espsecure", ["encrypt-flash-data", "--aes-xts", "--keyfile", key, "--address",
                                               String(addr), "--output", out, pp])
            return (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: out)))) ?? []
        }
        expectOK(try espefuse(dev, chip, ["burn-efuse", "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1"]), "burn DIS_DOWNLOAD_MANUAL_ENCRYPT", seed)
        let refused = try esptool(dev, ["write-flash", "--encrypt", "0xA0000", pp])
        #expect(refused.status != 0, "an encrypted write after DIS_DOWNLOAD_MANUAL_ENCRYPT succeeded")
        dev.stop()
        let flash = try dev.flash()
        #expect(Array(flash[0x20000..<(0x20000 + plain.count)]) == expected[0], "seed \(seed)")
        #expect(Array(flash[0x60000..<(0x60000 + plain.count)]) == expected[1], "seed \(seed)")
        #expect(flash[0xA0000..<(0xA0000 + plain.count)].allSatisfy { $0 == 0xFF })
    }
}

/// Issue 17 §2: `espforge chip info` on virtual S3/C3 devices reports the chip, MAC, revision and
/// the S3/C3 security state (not an ESP32's).
@Suite struct ChipInfoOnFieldMapChipsTests {
    @Test(arguments: ChipConformanceTests.chips)
    func chipInfoReportsTheChipAndItsSecurityState(chip: String) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let vc = try #require(VirtualChip.named(chip))
        let mac = (vc.macOUI + rng.bytes(3)).map { String(format: "%02x", $0) }.joined(separator: ":")
        let dev = try ServedDevice(mac: mac, extra: ["--chip", chip, "--chip-rev-minor", "1"])
        // Fuses as a secured chip has them: Secure Boot on with a digest in BLOCK_KEY2 (slot 1),
        // flash encryption on (one SPI_BOOT_CRYPT_CNT bit), slot 0 revoked.
        let map = vc.efuseMap
        var words = try EFuseVirtualFile.read(dev.state + "/efuse.bin", chip: chip).1
        func set(_ name: String, _ v: UInt64) throws { words.setInteger(try #require(map.field(named: name)), v) }
        try set("SECURE_BOOT_EN", 1)
        try set("SPI_BOOT_CRYPT_CNT", 1)
        try set("KEY_PURPOSE_2", 10)
        try set("SECURE_BOOT_KEY_REVOKE0", 1)
        let digest = rng.bytes(32)
        words.setBytes(try #require(map.field(named: "BLOCK_KEY2")), digest)
        try Data(EFuseVirtualFile.encode(words, map: map)).write(to: URL(fileURLWithPath: dev.state + "/efuse.bin"))
        try dev.start()
        defer { dev.stop() }

        let text = try Espforge.run(["chip", "info", "--port", dev.portURL, "--before", "no-reset"])
        #expect(text.status == 0, "\(text.err)")
        #expect(text.out.contains("Chip:         \(chip == "esp32s3" ? "ESP32-S3 (QFN56)" : "ESP32-C3 (QFN32)") (revision v0.1)"), "\(text.out)")
        #expect(text.out.contains("MAC:          \(mac)"))
        #expect(text.out.contains("SECURE_BOOT_EN yes; digest slots 1; revoked 0"))
        #expect(text.out.contains("flash encryption ON"))
        #expect(!text.out.contains("ABS_DONE"), "an ESP32 report")

        let json = try Espforge.run(["chip", "info", "--port", dev.portURL, "--before", "no-reset", "--json"])
        #expect(json.status == 0, "\(json.err)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any])
        #expect(obj["chip"] as? String == vc.displayName)
        #expect(obj["mac"] as? String == mac)
        let summary = try #require(obj["fieldMapSummary"] as? [String: Any])
        let keys = try #require(summary["keyBlocks"] as? [[String: Any]])
        #expect(keys[2]["digest"] as? String == digest.map { String(format: "%02x", $0) }.joined())
    }
}

extension ChipInfoOnFieldMapChipsTests {
    @Test func chipInfoSaysWhyAChipInSecureDownloadModeCannotBeRead() throws {
        let dev = try ServedDevice(mac: "58:cf:79:00:00:42", extra: ["--chip", "esp32c3"])
        let map = EFuseFieldMap.esp32c3
        var words = try EFuseVirtualFile.read(dev.state + "/efuse.bin", chip: "esp32c3").1
        words.setInteger(try #require(map.field(named: "ENABLE_SECURITY_DOWNLOAD")), 1)
        try Data(EFuseVirtualFile.encode(words, map: map)).write(to: URL(fileURLWithPath: dev.state + "/efuse.bin"))
        try dev.start()
        defer { dev.stop() }
        let r = try Espforge.run(["chip", "info", "--port", dev.portURL, "--before", "no-reset"])
        #expect(r.status != 0)
        #expect(r.err.contains("Secure Download Mode"), "\(r.err)")
    }
}
