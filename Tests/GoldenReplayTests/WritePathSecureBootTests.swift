import Diagnostics
import EFuse
import ESPCore
import Flasher
import Foundation
import Provisioning
import Testing
import TestSupport
import VirtualDevice

/// The images the real ROM rejected with Secure Boot V2 on (B3/B4) must be refused by the write
/// path before anything is written; the one it accepted must pass.
@Suite("Write path vs the real ROM's Secure Boot V2 verdicts",
       .enabled(if: GoldenCorpus.availableOrCI, "golden corpus ../shared/golden/qemu-esp32 not found"))
struct WritePathSecureBootTests {
    /// The B3 eFuses: the digest of sb_pub.pem in BLK2, ABS_DONE_1 (as the README's words).
    static func efuses() throws -> EFuseArray {
        let readme = try ScenarioReadme(try GoldenCorpus.text("B3-sbv2-rom-signed/README.md"))
        return try EFuseArray(layout: .esp32, bytes: readme.efuseBytes)
    }

    static func facts() throws -> ChipFacts {
        ChipFacts(spec: .esp32, flashSize: 4 << 20, efuses: try efuses().readable(layout: .esp32))
    }

    static func plan(_ image: [UInt8]) throws -> SafetyReport {
        FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x1000, data: image, name: "bootloader")]), facts: try facts())
    }

    @Test("ROM-rejected images are refused with the reason the ROM gave; the accepted one passes")
    func verdicts() throws {
        let signed = try GoldenCorpus.bytes("B3-sbv2-rom-signed/inputs/ramhello-signed.bin")
        #expect(!(try Self.plan(signed)).refused, "the real ROM booted this image")
        // Tampered payload and the seed's header rewrite: key digest right, signature wrong.
        for path in ["B3-sbv2-rom-tampered/inputs/ramhello-tampered.bin", "B4-seed-signed-rewritten/inputs/bl8-signed-rewritten.bin"] {
            let p = try Self.plan(try GoldenCorpus.bytes(path))
            // PF003 (was SB005 before the one engine: docs/errors.md).
            #expect(p.refused && p.blockingCodes == ["PF003"], "\(path): \(p.findings.map(\.code))")
            #expect(p.findings.first { $0.code == "PF003" }?.overridable == false, "ABS_DONE_1 is set: --force must not override")
        }
        let untrusted = try Self.plan(try GoldenCorpus.bytes("B3-sbv2-rom-untrusted/inputs/ramhello-untrusted.bin"))
        #expect(untrusted.blockingCodes == ["PF005"])  // was SB001
        let unsigned = try Self.plan(try GoldenCorpus.bytes("B3-sbv2-rom-unsigned/inputs/ramhello-unsigned.bin"))
        #expect(unsigned.blockingCodes == ["PF017"])  // was SB002
    }

    @Test("a signature block with a bad CRC is reported as damaged, not as unsigned")
    func damagedBlock() throws {
        var image = try GoldenCorpus.bytes("B3-sbv2-rom-signed/inputs/ramhello-signed.bin")
        image[4096 + 1196] ^= 0x01   // a CRC32 byte of block 0 (sector at 0x1000 of the file)
        let p = try Self.plan(image)
        #expect(p.blockingCodes == ["PF003"], "\(p.findings.map { "\($0.code) \($0.message)" })")  // was SB004
        #expect(p.findings.first { $0.code == "PF003" }?.evidence.contains { $0.contains("CRC32") } == true)
    }

    @Test("provisioning's in-process link refuses the tampered bootloader and writes nothing")
    func inProcessLinkRefuses() throws {
        let dir = try TestEnvironment.temporaryDirectory("golden-sb-link")
        defer { try? FileManager.default.removeItem(at: dir) }
        let dev = Device(description: DeviceDescription(mac: "00:00:00:00:00:00", flashSize: 4 << 20, flashID: 0x1640C8),
                         flash: NORFlash(size: 4 << 20), efuses: try Self.efuses())
        try DeviceStore(directory: dir.path).create(dev, force: true)
        let link = try VirtualTarget(directory: dir.path).connect()
        defer { link.close() }
        let tampered = try GoldenCorpus.bytes("B3-sbv2-rom-tampered/inputs/ramhello-tampered.bin")
        #expect(throws: (any Error).self) { try link.write([(name: "bootloader", offset: 0x1000, bytes: tampered)]) }
        #expect(try DeviceStore(directory: dir.path).load().flash.read(0x1000, 4) == [0xFF, 0xFF, 0xFF, 0xFF])
        let signed = try GoldenCorpus.bytes("B3-sbv2-rom-signed/inputs/ramhello-signed.bin")
        try link.write([(name: "bootloader", offset: 0x1000, bytes: signed)])
        #expect(try DeviceStore(directory: dir.path).load().flash.read(0x1000, signed.count) == signed)
    }
}
