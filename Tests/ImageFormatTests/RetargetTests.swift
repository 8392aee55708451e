import Crypto
import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

@Suite("retarget")
struct RetargetTests {
    /// Unsigned ESP32 bootloader images: esptool's merge-bin rewrites their header at 0x1000, the
    /// same operation as write-flash, offline.
    static let unsigned = ["images/bootloader_esp32_v5_2.bin", "images/bootloader_esp32.bin",
                           "secure/bootloader.bin", "secure/bootloader_unsigned_v2.bin"]

    @Test("equals esptool's header rewrite (merge-bin at the bootloader offset) and esptool reports it valid",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)))
    func matchesOracle() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("retarget")
        defer { try? FileManager.default.removeItem(at: dir) }
        let modes = ["qio", "qout", "dio", "dout"], freqs = ["40m", "80m", "26m", "20m"]
        let sizes = ["1MB", "2MB", "4MB", "8MB", "16MB"]
        for (n, name) in Self.unsigned.enumerated() {
            let input = try TestEnvironment.fixtureBytes(name)
            let before = try ESPImage(input)
            let size = sizes.randomElement(using: &rng)!
            let mode = Bool.random(using: &rng) ? modes.randomElement(using: &rng)! : nil
            let freq = Bool.random(using: &rng) ? freqs.randomElement(using: &rng)! : nil
            let mine = try ImageRetarget.retarget(input, parameters: FlashParameters(mode: mode, frequency: freq, size: size),
                                                  stripSignature: false)
            let what = "seed \(seed) \(name) size \(size) mode \(mode ?? "keep") freq \(freq ?? "keep")"
            let ref = dir.appendingPathComponent("ref-\(n).bin").path
            let r = try Oracle.run("esptool", ["--chip", "esp32", "merge-bin", "-o", ref, "--target-offset", "0x1000",
                                               "--flash-mode", mode ?? "keep", "--flash-freq", freq ?? "keep",
                                               "--flash-size", size, "0x1000", TestEnvironment.fixture(name).path])
            #expect(r.status == 0, "\(what): \(r.err)")
            let same = mine == (try readFile(ref))
            #expect(same, "\(what)")

            // Facts: only bytes 2, 3 and the digest change; the checksum stays valid.
            let after = try ESPImage(mine)
            #expect(mine.count == input.count, "\(what)")
            #expect(after.checksumValid && after.storedChecksum == before.storedChecksum, "\(what)")
            #expect(after.digestValid != false, "\(what)")
            #expect(after.flashSizeName == size, "\(what)")
            if let mode { #expect(after.flashModeName == mode, "\(what)") } else { #expect(after.flashModeCode == before.flashModeCode, "\(what)") }
            if let freq { #expect(after.flashFrequencyName == freq, "\(what)") } else { #expect(after.flashFrequencyCode == before.flashFrequencyCode, "\(what)") }
            for i in 0..<mine.count where i != 2 && i != 3 && !(i > before.checksumOffset && i <= before.checksumOffset + 32 && before.hashAppended) {
                if mine[i] != input[i] { Issue.record("\(what): byte \(i) changed"); break }
            }
            let path = try temporaryFile(dir, "mine-\(n).bin", mine)
            let info = try oracleImageInfo(path)
            #expect(info.checksumValid == true, "\(what)")
            #expect(info.hashValid == before.digestValid, "\(what)")
            #expect(info.flashSize == size, "\(what)")
        }
    }

    @Test("signed images are refused; --strip-signature drops the sector and equals retargeting the unsigned image",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func signed() throws {
        let params = FlashParameters(mode: "qio", frequency: "80m", size: "4MB")
        let unsigned = try TestEnvironment.fixtureBytes("secure/bootloader_unsigned_v2.bin")
        let unsignedEnd = try ESPImage(unsigned).imageEnd
        let expected = Array(try ImageRetarget.retarget(unsigned, parameters: params, stripSignature: false)[0..<unsignedEnd])
        for name in ["secure/bootloader_signed_v2_rsa.bin", "secure/bootloader_signed_v2_ecdsa256.bin",
                     "secure/bootloader_multi_signed_v2_rsa.bin"] {
            let signed = try TestEnvironment.fixtureBytes(name)
            #expect(throws: ImageError.signedImage(sectorOffset: 0x8000), "\(name)") {
                try ImageRetarget.retarget(signed, parameters: params, stripSignature: false)
            }
            let stripped = try ImageRetarget.retarget(signed, parameters: params, stripSignature: true)
            let same = stripped == expected
            #expect(same, "\(name)")
            let parsed = try ESPImage(stripped)
            #expect(!parsed.hasSignatureSector && parsed.imageEnd == stripped.count)
            #expect(parsed.digestValid == true && parsed.checksumValid)
        }
        // The Secure Boot V1 signed app: trailing signature data is refused, then strippable.
        let v1 = try TestEnvironment.fixtureBytes("secure/hello-world-signed.bin")
        let end = try ESPImage(v1).imageEnd
        #expect(throws: ImageError.trailingData(offset: end)) {
            try ImageRetarget.retarget(v1, parameters: params, stripSignature: false)
        }
        #expect(try ImageRetarget.retarget(v1, parameters: params, stripSignature: true).count == end)
    }

    @Test("a damaged input image is refused rather than given a fresh digest",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func damaged() throws {
        var bytes = try TestEnvironment.fixtureBytes("images/bootloader_esp32_v5_2.bin")
        let image = try ESPImage(bytes)
        bytes[image.segments[1].dataOffset + 5] ^= 1
        #expect(throws: ImageError.self) {
            try ImageRetarget.retarget(bytes, parameters: FlashParameters(size: "4MB"), stripSignature: false)
        }
    }
}
