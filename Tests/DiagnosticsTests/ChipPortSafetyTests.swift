import Diagnostics
import EFuse
import ESPCore
import Foundation
import Testing
import TestSupport

/// Issue 17 §2: the safety rules on live ESP32-S3 / ESP32-C3 boards. `preflight --port` and
/// `flash write --port` on S3/C3 virtual devices (`virtual:DIR`, the chip's ROM loader): the chip
/// is detected, its eFuse blocks read through the field map, and the one rule engine decides;
/// a refused plan leaves the flash untouched.
@Suite(.enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures (../shared/fixtures) are missing"))
struct ChipPortSafetyTests {
    static let chips = ["esp32s3", "esp32c3"]

    final class Bench {
        let dir: URL
        let chip: String
        let fixture: ChipFixture
        init(_ chip: String) throws {
            self.chip = chip
            fixture = chip == "esp32s3" ? try ChipFixture.s3() : try ChipFixture.c3()
            dir = try TestEnvironment.temporaryDirectory("espforge-chip-port")
        }
        deinit { try? FileManager.default.removeItem(at: dir) }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        var state: String { path("dev") }
        var port: String { "virtual:" + state }
        var flash: [UInt8] { (FileManager.default.contents(atPath: state + "/flash.bin")).map { [UInt8]($0) } ?? [] }

        /// Creates the device, then edits its eFuses (decoded from efuse.bin, encoded back: the
        /// MAC and revision the device was created with stay).
        func create(_ edit: (inout EFuseWordsEditor) throws -> Void = { _ in }) throws {
            let r = try Espforge.run(["device", "create", "--chip", chip, "--state", state])
            #expect(r.status == 0, "\(r.out)\(r.err)")
            let file = state + "/efuse.bin"
            let words = try EFuseVirtualFile.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: file))), map: fixture.map)
            var e = EFuseWordsEditor(map: fixture.map, words: words)
            try edit(&e)
            try Data(EFuseVirtualFile.encode(e.words, map: fixture.map)).write(to: URL(fileURLWithPath: file))
        }

        /// Bootloader, table and app (signed with `key`, or unsigned) as ADDR FILE pairs.
        func pairs(key: Int?, images: ChipFixture? = nil) throws -> [String] {
            let f = images ?? fixture
            let tag = "\(f.chip.name)-\(key.map(String.init) ?? "u")"
            let bl = path("bl-\(tag).bin"), pt = path("pt-\(tag).bin"), app = path("app-\(tag).bin")
            try Data(try key.map { try f.sign(f.bootloader, [$0]) } ?? f.bootloader).write(to: URL(fileURLWithPath: bl))
            try Data(f.table).write(to: URL(fileURLWithPath: pt))
            try Data(try key.map { try f.sign(f.app, [$0]) } ?? f.app).write(to: URL(fileURLWithPath: app))
            return ["0x0", bl, "0x8000", pt, "0x10000", app]
        }

        func preflight(_ pairs: [String]) throws -> (ProcessResult, [String: Any]) {
            let r = try Espforge.run(["preflight", "--port", port, "--before", "no-reset", "--json"] + pairs)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any], "\(r.out) \(r.err)")
            return (r, json)
        }

        /// `flash write`; returns the result and whether the flash changed.
        func flashWrite(_ pairs: [String]) throws -> (ProcessResult, changed: Bool) {
            let before = flash
            let r = try Espforge.run(["flash", "write", "--port", port, "--before", "no-reset"] + pairs)
            return (r, flash != before)
        }
    }

    func codes(_ json: [String: Any]) -> [String] {
        (json["findings"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
    }

    /// Secure Boot on with key 0's digest in slot 0: images signed with key 1 are refused by both
    /// commands (PF019) before a byte is written; images signed with key 0 pass.
    @Test(arguments: chips)
    func signingKeyInNoDigestSlotIsRefusedOnTheBoard(_ chip: String) throws {
        let b = try Bench(chip)
        try b.create { e in
            try e.digest(slot: 0, keyBlock: 0, try ChipFixture.digest(0))
            try e.set("SECURE_BOOT_EN", 1)
        }
        let wrong = try b.pairs(key: 1)
        let (pf, json) = try b.preflight(wrong)
        #expect(pf.status == 1)
        #expect(codes(json).filter { $0 == "PF019" }.count == 2, "\(codes(json))")
        let target = try #require(json["target"] as? [String: Any])
        #expect(target["chip"] as? String == chip && target["source"] as? String == "port \(b.port)")
        let kb = try #require((target["efuses"] as? [String: Any])?["keyBlocks"] as? [String: Any])
        #expect(kb["secureBootEnabled"] as? Bool == true)

        // The device folder read offline (--state) gives the same findings as the port.
        let state = try Espforge.run(["preflight", "--state", b.state, "--json"] + wrong)
        let stateJSON = try #require(try JSONSerialization.jsonObject(with: Data(state.stdout)) as? [String: Any], "\(state.err)")
        #expect(state.status == 1 && codes(stateJSON) == codes(json), "\(codes(stateJSON)) vs \(codes(json))")
        let stateTarget = try #require(stateJSON["target"] as? [String: Any])
        #expect(stateTarget["chipRevision"] as? Int == target["chipRevision"] as? Int
                && stateTarget["flashSize"] as? Int == target["flashSize"] as? Int, "\(stateTarget) vs \(target)")

        let text = try Espforge.run(["preflight", "--port", b.port, "--before", "no-reset"] + wrong)
        #expect(text.out.contains("ERROR PF019") && text.out.contains(ChipSpec.named(chip)?.displayName ?? "?"), "\(text.out)")

        let flashed = try b.flashWrite(wrong)
        #expect(flashed.0.status != 0 && flashed.0.err.contains("PF019"), "\(flashed.0.out)\(flashed.0.err)")
        #expect(!flashed.changed)

        let right = try b.pairs(key: 0)
        let (good, goodJSON) = try b.preflight(right)
        // Only warnings left (PF028: JTAG and direct boot still open on this test board).
        #expect(good.status == 0 && goodJSON["errors"] as? Int == 0 && !codes(goodJSON).contains("PF019"),
                "\(codes(goodJSON)) \(good.err)")
        // The allowed plan goes through (ROM loader, MD5-verified): exactly its bytes at its
        // addresses, the flash around them as it was.
        let before = b.flash
        let written = try b.flashWrite(right)
        #expect(written.0.status == 0, "\(written.0.out)\(written.0.err)")
        var expected = before
        for i in stride(from: 0, to: right.count, by: 2) {
            let address = try #require(Int(right[i].dropFirst(2), radix: 16))
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: right[i + 1])))
            expected.replaceSubrange(address..<address + bytes.count, with: bytes)
        }
        #expect(b.flash == expected)
        // Again with --skip-unchanged: every region's MD5 already matches, nothing is sent.
        let again = try Espforge.run(["flash", "write", "--port", b.port, "--before", "no-reset", "--skip-unchanged", "--json"] + right)
        let events = again.out.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(again.status == 0 && events.filter { $0["event"] as? String == "unchanged" }.count == 3
                && !events.contains { $0["event"] as? String == "written" }, "\(again.out)\(again.err)")
    }

    /// An image built for the other chip is refused on the board (PF018: image chip id vs the
    /// detected chip), and the flash stays as it was.
    @Test(arguments: chips)
    func imageForTheOtherChipIsRefused(_ chip: String) throws {
        let b = try Bench(chip)
        try b.create()
        let other = chip == "esp32s3" ? try ChipFixture.c3() : try ChipFixture.s3()
        let plan = try b.pairs(key: nil, images: other)
        let (pf, json) = try b.preflight(plan)
        #expect(pf.status == 1 && codes(json).contains("PF018"), "\(codes(json))")
        let flashed = try b.flashWrite(plan)
        #expect(flashed.0.status != 0 && flashed.0.err.contains("PF018"), "\(flashed.0.err)")
        #expect(!flashed.changed)
    }

    /// Plaintext images onto an S3 with flash encryption on (SPI_BOOT_CRYPT_CNT = 1, an XTS key):
    /// the chip would decrypt them into garbage; refused, nothing written.
    @Test func plaintextOntoEncryptedS3IsRefused() throws {
        let b = try Bench("esp32s3")
        try b.create { e in
            try e.key(1, purpose: "XTS_AES_128_KEY", [UInt8](repeating: 0x5A, count: 32))
            try e.set("SPI_BOOT_CRYPT_CNT", 1)
        }
        let plan = try b.pairs(key: nil)
        let (pf, json) = try b.preflight(plan)
        let found = codes(json)
        // PF012: plaintext images onto a chip that decrypts what it reads.
        #expect(pf.status == 1 && found.filter { $0 == "PF012" }.count == 3, "\(found)")
        let target = try #require(json["target"] as? [String: Any])
        let kb = try #require((target["efuses"] as? [String: Any])?["keyBlocks"] as? [String: Any])
        #expect(kb["spiBootCryptCnt"] as? Int == 1, "\(kb)")
        let flashed = try b.flashWrite(plan)
        #expect(flashed.0.status != 0 && flashed.0.err.contains("PF012"), "\(flashed.0.err)")
        #expect(!flashed.changed)
    }

    /// The eFuses burned by `espefuse --virt` 5.6.0 (the oracle) into the device's efuse.bin are
    /// what the port read sees.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func espefuseBurnedDeviceIsReadOverThePort(_ chip: String) throws {
        let b = try Bench(chip)
        try b.create()
        let key0 = TestEnvironment.fixture("secure/rsa_secure_boot_signing_key.pem").path
        let burn = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", b.state + "/efuse.bin",
                                               "--do-not-confirm", "burn-key-digest", "BLOCK_KEY2", key0, "SECURE_BOOT_DIGEST1"])
        #expect(burn.status == 0, "\(burn.out.suffix(400)) \(burn.err.suffix(400))")
        let (pf, json) = try b.preflight(try b.pairs(key: 1))
        #expect(pf.status == 1 && codes(json).contains("PF019"), "\(codes(json))")
        let target = try #require(json["target"] as? [String: Any])
        let kb = try #require((target["efuses"] as? [String: Any])?["keyBlocks"] as? [String: Any])
        let blocks = try #require(kb["keyBlocks"] as? [[String: Any]], "\(kb)")
        #expect(blocks.contains { $0["index"] as? Int == 2 && $0["purpose"] as? String == "SECURE_BOOT_DIGEST1" && $0["empty"] as? Bool == false },
                "\(blocks)")
        let (good, _) = try b.preflight(try b.pairs(key: 0))
        #expect(good.status == 0, "\(good.out)")
    }

    /// The same over `socket://` (`espforge device serve`, the ESP32-C3's ROM loader in another
    /// process): refused with PF019 and nothing written; the plan signed with the burned key
    /// goes through, and exactly its bytes land.
    @Test func overSocketRefusedThenWritten() throws {
        let b = try Bench("esp32c3")
        try b.create { e in
            try e.digest(slot: 0, keyBlock: 0, try ChipFixture.digest(0))
            try e.set("SECURE_BOOT_EN", 1)
        }
        let wrong = try b.pairs(key: 1), right = try b.pairs(key: 0)
        let before = b.flash
        do {
            let server = try DeviceServerProcess(state: b.state)
            defer { server.stop() }
            let port = "socket://127.0.0.1:\(server.port)"
            let pf = try Espforge.run(["preflight", "--port", port, "--json"] + wrong)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(pf.stdout)) as? [String: Any], "\(pf.err)")
            #expect(pf.status == 1 && codes(json).contains("PF019"), "\(codes(json))")
            #expect((json["target"] as? [String: Any])?["chip"] as? String == "esp32c3")
            let refused = try Espforge.run(["flash", "write", "--port", port, "--after", "no-reset"] + wrong)
            #expect(refused.status != 0 && refused.err.contains("PF019"), "\(refused.out)\(refused.err)")
        }
        #expect(b.flash == before)
        do {
            let server = try DeviceServerProcess(state: b.state)
            defer { server.stop() }
            let ok = try Espforge.run(["flash", "write", "--port", "socket://127.0.0.1:\(server.port)", "--after", "no-reset",
                                  "--baud", "921600"] + right)
            #expect(ok.status == 0, "\(ok.out)\(ok.err)")
        }
        var expected = before
        for i in stride(from: 0, to: right.count, by: 2) {
            let address = try #require(Int(right[i].dropFirst(2), radix: 16))
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: right[i + 1])))
            expected.replaceSubrange(address..<address + bytes.count, with: bytes)
        }
        #expect(b.flash == expected)
    }
}
