import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

@Suite("espforge image (CLI)")
struct ImageCLITests {
    @Test("image info prints decoded header, segments and integrity; --json is valid JSON",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func info() throws {
        let path = TestEnvironment.fixture("secure/hello-world-signed.bin").path
        let r = try Espforge.run(["image", "info", path])
        #expect(r.status == 0, "\(r.err)")
        for s in ["Flash mode:      DIO", "Flash size:      2MB", "Flash frequency: 40m", "0x400d0018  IROM",
                  "Checksum:        0x30 (valid)", "(valid)", "Project name:   hello-world",
                  "ELF SHA-256:    f4611958b4281922f26ed2ba71db7ebf581023781965ab72915a1f93fa5c545c"] {
            #expect(r.out.contains(s), "missing '\(s)' in:\n\(r.out)")
        }
        let j = try Espforge.run(["image", "info", "--json", TestEnvironment.fixture("secure/bootloader_signed_v2_rsa.bin").path])
        #expect(j.status == 0, "\(j.err)")
        let obj = try JSONSerialization.jsonObject(with: Data(j.stdout)) as? [String: Any]
        #expect(obj?["hasSignatureSector"] as? Bool == true)
        #expect(obj?["signatureSectorOffset"] as? Int == 0x8000)
        #expect((obj?["segments"] as? [Any])?.count == 4)
        #expect((obj?["integrity"] as? [String: Any])?["sha256Valid"] as? Bool == true)
    }

    @Test("truncated or non-image input: one error line naming the byte offset, exit 1",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func badInput() throws {
        let dir = try TestEnvironment.temporaryDirectory("image-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bytes = try TestEnvironment.fixtureBytes("images/bootloader_esp32_v5_2.bin")
        for n in [0, 5, 30, 3000, 26700] {
            let p = try temporaryFile(dir, "t\(n).bin", Array(bytes[0..<n]))
            let r = try Espforge.run(["image", "info", p])
            #expect(r.status == 1, "prefix \(n): \(r.out)")
            #expect(r.err.hasPrefix("error: \(p): byte offset"), "prefix \(n): \(r.err)")
            #expect(r.err.contains("offset"), "prefix \(n): \(r.err)")
            #expect(!r.err.contains("Fatal error") && !r.err.contains("Stack"), "prefix \(n): \(r.err)")
        }
        let enc = try Espforge.run(["image", "info", TestEnvironment.fixture("secure/bootloader-encrypted.bin").path])
        #expect(enc.status == 1 && enc.err.contains("magic"), "\(enc.err)")
        let missing = try Espforge.run(["image", "info", dir.appendingPathComponent("nope.bin").path])
        #expect(missing.status == 1 && missing.err.contains("no such file"))
    }

    @Test("elf2image writes what the library builds; bad options exit non-zero",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func elf2image() throws {
        let dir = try TestEnvironment.temporaryDirectory("image-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let elf = TestEnvironment.fixture("elf/esp32-zephyr.elf").path
        let out = dir.appendingPathComponent("z.bin").path
        let r = try Espforge.run(["image", "elf2image", "--chip", "esp32", "--flash-mode", "dio", "--flash-size", "4MB",
                                  "--secure-pad-v2", elf, "-o", out])
        #expect(r.status == 0, "\(r.err)")
        var o = ImageBuildOptions()
        o.flashMode = "dio"; o.flashSize = "4MB"; o.securePadV2 = true
        let same = try readFile(out) == (try ImageBuilder.elf2image(elf: try readFile(elf), chip: .esp32, options: o))
        #expect(same)
        let bad = try Espforge.run(["image", "elf2image", "--chip", "esp32", "--flash-size", "3MB", elf, "-o", out])
        #expect(bad.status == 1 && bad.err.contains("unknown flash size '3MB'") && bad.err.contains("hint:"), "\(bad.err)")
        let chip = try Espforge.run(["image", "elf2image", "--chip", "esp8266", elf, "-o", out])
        #expect(chip.status == 1 && chip.err.contains("unknown chip"), "\(chip.err)")
        let notELF = try Espforge.run(["image", "elf2image", "--chip", "esp32",
                                       TestEnvironment.fixture("images/bootloader_esp32.bin").path, "-o", out])
        #expect(notELF.status == 1 && notELF.err.contains("ELF"), "\(notELF.err)")
    }

    @Test("retarget refuses a signed image with a re-sign explanation; --strip-signature works",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func retarget() throws {
        let dir = try TestEnvironment.temporaryDirectory("image-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let signed = TestEnvironment.fixture("secure/bootloader_signed_v2_rsa.bin").path
        let out = dir.appendingPathComponent("r.bin").path
        let r = try Espforge.run(["image", "retarget", "--flash-size", "4MB", signed, "-o", out])
        #expect(r.status == 1)
        #expect(r.err.contains("re-sign") && r.err.contains("--strip-signature"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: out))
        let s = try Espforge.run(["image", "retarget", "--flash-size", "4MB", "--strip-signature", signed, "-o", out])
        #expect(s.status == 0, "\(s.err)")
        let image = try ESPImage(try readFile(out))
        #expect(image.flashSizeName == "4MB" && image.digestValid == true && !image.hasSignatureSector)
        let u = try Espforge.run(["image", "retarget", "--flash-size", "8MB", "--flash-mode", "dout",
                                  TestEnvironment.fixture("images/bootloader_esp32_v5_2.bin").path, "-o", out])
        #expect(u.status == 0, "\(u.err)")
        let i2 = try ESPImage(try readFile(out))
        #expect(i2.flashSizeName == "8MB" && i2.flashModeName == "dout" && i2.digestValid == true)
    }

    @Test("every image command has help with an example")
    func help() throws {
        for c in [["image"], ["image", "info"], ["image", "elf2image"], ["image", "retarget"]] {
            let r = try Espforge.run(c + ["--help"])
            #expect(r.status == 0)
            #expect(r.out.contains("Example"), "\(c)")
        }
    }
}
