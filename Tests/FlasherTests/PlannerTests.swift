import EFuse
import ESPCore
import Flasher
import Foundation
import ImageFormat
import SecureBoot
import Testing
import TestSupport

private func facts(_ configure: (inout EFuseArray) -> Void = { _ in }) throws -> ChipFacts {
    var a = try EFuseArray.esp32Factory(mac: [0x24, 0x0A, 0xC4, 1, 2, 3], revision: 3)
    configure(&a)
    return ChipFacts(spec: .esp32, flashSize: 4 << 20, efuses: a)
}

private let fixtures = TestEnvironment.fixturesOrCI

@Suite struct SafetyPlannerTests {
    /// THE SEED: the flashing tool rewrote the flash-size byte of a signed bootloader.
    @Test(.enabled(if: fixtures, "needs ../shared/fixtures"))
    func refusesToChangeFlashSizeOfSignedBootloader() throws {
        let signed = try TestEnvironment.fixtureBytes("secure/bootloader_signed_v2_rsa.bin")
        let request = FlashRequest(regions: [FlashRegion(address: 0x1000, data: signed, name: "bootloader.bin")],
                                   flashSize: "4MB")
        let plan = FlashSafety.check(request, facts: try facts())
        #expect(plan.refused)
        // PF001 (was FP001 before the one engine: docs/errors.md).
        let f = try #require(plan.findings.first { $0.code == "PF001" })
        #expect(!f.overridable)
        // Names the bytes, the built value and the requested value.
        #expect(f.message.contains("header bytes 2..3"))
        #expect(f.evidence.contains { $0.contains("header now") && $0.contains("2MB") && $0.contains("byte 3 = 0x10") }, "\(f.evidence)")
        #expect(f.evidence.contains { $0.contains("after the write") && $0.contains("4MB") && $0.contains("byte 3 = 0x20") }, "\(f.evidence)")
        #expect(f.explanation.contains("signature"))
        #expect(f.fix.contains("keep"))
        // --force does not override it, and the data is untouched.
        let forced = FlashSafety.check(FlashRequest(regions: request.regions, flashSize: "4MB", force: true), facts: try facts())
        #expect(forced.refused)
        #expect(forced.regions[0].data == signed)
        // The default (keep) writes it as signed.
        let keep = FlashSafety.check(FlashRequest(regions: request.regions), facts: try facts())
        #expect(!keep.refused)
        #expect(keep.regions[0].data == signed)
    }

    @Test(.enabled(if: fixtures, "needs ../shared/fixtures"))
    func hashedImageNeedsForceAndThenGetsANewDigest() throws {
        let unsigned = try TestEnvironment.fixtureBytes("secure/bootloader_unsigned_v2.bin")
        let image = try ESPImage(unsigned)
        #expect(image.hashAppended)
        let regions = [FlashRegion(address: 0x1000, data: unsigned, name: "bl.bin")]
        let plan = FlashSafety.check(FlashRequest(regions: regions, flashMode: "qio"), facts: try facts())
        #expect(plan.blockingCodes == ["FP002"])
        let forced = FlashSafety.check(FlashRequest(regions: regions, flashMode: "qio", force: true), facts: try facts())
        #expect(!forced.refused)
        let out = try ESPImage(forced.regions[0].data)
        #expect(out.flashModeCode == 0)
        #expect(out.digestValid == true)
        // Same value as built: nothing to change, no finding.
        let same = FlashSafety.check(FlashRequest(regions: regions, flashMode: "dio"), facts: try facts())
        #expect(same.findings.allSatisfy { $0.code == "PF006" && $0.severity == .warning }, "\(same.findings.map(\.code))")
        #expect(FlashSafety.check(FlashRequest(regions: regions, flashSize: "3MB"), facts: try facts()).blockingCodes == ["FP003"])
    }

    /// An unsigned bootloader without an appended SHA-256: the header is adapted (PF001 info,
    /// formerly FP000) and the report's entries carry the rewritten bytes; the other entries are
    /// written as given, in the order given.
    @Test(.enabled(if: fixtures, "needs ../shared/fixtures"))
    func unhashedBootloaderHeaderIsAdapted() throws {
        let hashed = try TestEnvironment.fixtureBytes("secure/bootloader_unsigned_v2.bin")
        var bl = Array(hashed[0..<(try ESPImage(hashed).checksumOffset + 1)])   // without the appended SHA-256 …
        bl[23] = 0   // … and without its flag
        #expect(try !ESPImage(bl).hashAppended)
        let app = FlashRegion(address: 0x10000, data: [UInt8](repeating: 0x5A, count: 0x100), name: "data")
        let plan = FlashSafety.check(FlashRequest(regions: [app, FlashRegion(address: 0x1000, data: bl, name: "bl.bin")],
                                                  flashMode: "qio"), facts: try facts())
        #expect(!plan.refused, "\(plan.blockingCodes)")
        #expect(plan.findings.contains { $0.code == "PF001" && $0.severity == .info })
        #expect(plan.regions.map(\.name) == ["data", "bl.bin"])
        #expect(plan.regions[0].data == app.data)
        #expect(plan.regions[1].data[2] == 0 && bl[2] != 0, "the mode byte becomes QIO (0)")
        #expect(Array(plan.regions[1].data[4...]) == Array(bl[4...]), "only header bytes 2..3 change")
    }

    @Test func geometryRules() throws {
        let a = FlashRegion(address: 0x10000, data: [UInt8](repeating: 1, count: 0x2000), name: "a")
        let b = FlashRegion(address: 0x11000, data: [UInt8](repeating: 2, count: 0x100), name: "b")
        let c = FlashRegion(address: 0x3FF000, data: [UInt8](repeating: 3, count: 0x2000), name: "c")
        let d = FlashRegion(address: 0x20010, data: [1, 2, 3, 4], name: "d")
        let e = FlashRegion(address: 0x30000, data: [], name: "e")
        let plan = FlashSafety.check(FlashRequest(regions: [c, b, a, d, e], force: true), facts: try facts())
        #expect(Set(plan.blockingCodes) == ["RG001", "PF008", "RG003", "RG004"])  // PF008 was RG002
        #expect(plan.findings.first { $0.code == "RG001" }?.message.contains("overlaps b") == true)
        #expect(plan.findings.allSatisfy { !$0.fix.isEmpty })
    }

    @Test(.enabled(if: fixtures, "needs ../shared/fixtures"))
    func plaintextOnAnEncryptedChip() throws {
        let bl = try TestEnvironment.fixtureBytes("secure/bootloader.bin")
        let enc = try TestEnvironment.fixtureBytes("secure/bootloader-encrypted.bin")
        let on = try facts { set(&$0, "FLASH_CRYPT_CNT", 1); setFlashKey(&$0) }
        let plain = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x1000, data: bl, name: "bl")], force: true), facts: on)
        #expect(plain.blockingCodes == ["PF012"])  // was FE001
        #expect(plain.findings[0].evidence.contains { $0.contains("FLASH_CRYPT_CNT = 0x1") })
        // Ciphertext (already encrypted for the chip's key) is accepted, with a note.
        let cipher = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x1000, data: enc, name: "enc")]), facts: on)
        #expect(!cipher.refused)
        #expect(cipher.findings.map(\.code) == ["FE004"])
        // Even count = off again: no rule.
        let off = try facts { set(&$0, "FLASH_CRYPT_CNT", 3); setFlashKey(&$0) }
        #expect(FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x1000, data: bl, name: "bl")]), facts: off).findings.isEmpty)
        // … and without a key in BLOCK1 the count is refused on its own (PF014).
        let noKey = try facts { set(&$0, "FLASH_CRYPT_CNT", 3) }
        #expect(FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x1000, data: bl, name: "bl")]), facts: noKey).blockingCodes == ["PF014"])
        // --encrypt with download-mode encryption disabled.
        let noDL = try facts { set(&$0, "FLASH_CRYPT_CNT", 1); set(&$0, "DISABLE_DL_ENCRYPT", 1); setFlashKey(&$0) }
        #expect(FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x1000, data: bl, name: "bl")], encrypt: true), facts: noDL).blockingCodes == ["PF015"])  // was FE002
        // --encrypt on a chip without flash encryption: overridable.
        let p = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x1000, data: bl, name: "bl")], encrypt: true), facts: try facts())
        #expect(p.blockingCodes == ["PF012"])  // was FE003
        #expect(p.findings[0].overridable)
    }

    @Test(.enabled(if: fixtures, "needs ../shared/fixtures"))
    func bootloaderKeyMustMatchBlock2() throws {
        let signed = try TestEnvironment.fixtureBytes("secure/bootloader_signed_v2_rsa.bin")
        let unsigned = try TestEnvironment.fixtureBytes("secure/bootloader_unsigned_v2.bin")
        let digest = try TestEnvironment.fixtureBytes("secure/rsa_public_key_digest.bin")
        let region = { (d: [UInt8]) in [FlashRegion(address: 0x1000, data: d, name: "bl")] }
        let good = try facts { setBlock2(&$0, digest); set(&$0, "ABS_DONE_1", 1) }
        let accepted = FlashSafety.check(FlashRequest(regions: region(signed)), facts: good)
        #expect(accepted.findings.allSatisfy { $0.code == "PF006" && $0.severity == .warning }, "\(accepted.findings.map(\.code))")
        // Another key's digest burned, Secure Boot on: refused, --force cannot help.
        var other = digest
        other[0] ^= 0xFF
        let wrong = try facts { setBlock2(&$0, other); set(&$0, "ABS_DONE_1", 1) }
        let p = FlashSafety.check(FlashRequest(regions: region(signed), force: true), facts: wrong)
        #expect(p.blockingCodes == ["PF005"])  // was SB001
        #expect(p.findings[0].overridable == false)
        // Digest burned but Secure Boot not yet enabled: the chip still boots, --force may override.
        let prepared = try facts { setBlock2(&$0, other) }
        let q = FlashSafety.check(FlashRequest(regions: region(signed), force: true), facts: prepared)
        #expect(!q.refused)
        #expect(q.findings.first?.overridden == true)
        // Unsigned bootloader on a Secure Boot chip.
        #expect(FlashSafety.check(FlashRequest(regions: region(unsigned), force: true), facts: good).blockingCodes == ["PF017"])  // was SB002
    }

    @Test(.enabled(if: fixtures, "needs ../shared/fixtures"))
    func bootloaderAtTheWrongOffset() throws {
        let bl = try TestEnvironment.fixtureBytes("secure/bootloader.bin")
        let plan = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x0, data: bl, name: "bl")]), facts: try facts())
        #expect(plan.blockingCodes == ["PF016"])  // was BL001
        #expect(plan.findings[0].message.contains("0x1000"))
        let forced = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x0, data: bl, name: "bl")], force: true), facts: try facts())
        #expect(!forced.refused)
        // An app at its partition is no bootloader.
        let app = try TestEnvironment.fixtureBytes("secure/hello-world-signed.bin")
        #expect(FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x10000, data: app, name: "app")]), facts: try facts()).findings.isEmpty)
    }

    @Test func randomInputNeverCrashesThePlanner() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let f = try facts { set(&$0, "FLASH_CRYPT_CNT", 1); set(&$0, "ABS_DONE_1", 1) }
        for _ in 0..<40 {
            var data = rng.bytes(Int.random(in: 0...600, using: &rng))
            if !data.isEmpty, Bool.random(using: &rng) { data[0] = 0xE9 }
            let addr = [0, 0x1000, 0x8000, 0x10000, Int.random(in: 0...0x500000, using: &rng)].randomElement(using: &rng) ?? 0
            _ = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: addr, data: data, name: "r")],
                                                flashMode: "dio", flashSize: "8MB"), facts: f)
        }
        // Stub JSON parsing survives garbage too.
        for _ in 0..<20 {
            #expect(throws: FlasherError.self, "seed \(seed)") { _ = try StubImage.parse(json: rng.bytes(50), source: "x") }
        }
    }
}
