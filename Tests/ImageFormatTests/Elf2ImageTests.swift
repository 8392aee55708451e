import Crypto
import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

@Suite("elf2image")
struct Elf2ImageTests {
    struct Case: CustomStringConvertible {
        var elf: String
        var args: [String]
        var description: String { "\(elf) \(args.joined(separator: " "))" }
    }

    /// Random option combinations for one ELF (as command-line arguments for both tools).
    static func randomCases(elf: String, count: Int, rng: inout SeededRandom) -> [Case] {
        let modes = ["qio", "qout", "dio", "dout"], freqs = ["40m", "80m", "26m", "20m"]
        let sizes = ["1MB", "2MB", "4MB", "8MB", "16MB"]
        var out: [Case] = []
        for _ in 0..<count {
            var a: [String] = []
            if Bool.random(using: &rng) { a += ["--flash-mode", modes.randomElement(using: &rng)!] }
            if Bool.random(using: &rng) { a += ["--flash-freq", freqs.randomElement(using: &rng)!] }
            if Bool.random(using: &rng) { a += ["--flash-size", sizes.randomElement(using: &rng)!] }
            if Bool.random(using: &rng) { a += ["--min-rev", String(Int.random(in: 0...3, using: &rng))] }
            if Int.random(in: 0..<3, using: &rng) == 0 {
                a += ["--min-rev-full", String(Int.random(in: 0...301, using: &rng)),
                      "--max-rev-full", String(Int.random(in: 0...399, using: &rng))]
            }
            let digest = Int.random(in: 0..<6, using: &rng) != 0
            if !digest { a.append("--dont-append-digest") }
            if digest && Bool.random(using: &rng) { a.append("--secure-pad-v2") }
            if elf == "esp32-app-template" && Bool.random(using: &rng) { a += ["--elf-sha256-offset", "0xb0"] }
            // esptool 5.6.0 with --dont-append-digest --pad-to-size writes the 0xFF padding over the
            // header (from offset 2) instead of at the end; espforge pads at the end (see padWithoutDigest).
            if digest && Int.random(in: 0..<5, using: &rng) == 0 { a += ["--pad-to-size", "4KB"] }
            if Int.random(in: 0..<5, using: &rng) == 0 { a.append("--use-segments") }
            out.append(Case(elf: elf, args: a))
        }
        return out
    }

    func library(_ c: Case, elf: [UInt8]) throws -> [UInt8] {
        var o = ImageBuildOptions()
        var i = 0
        while i < c.args.count {
            let a = c.args[i]
            let v = i + 1 < c.args.count ? c.args[i + 1] : ""
            switch a {
            case "--flash-mode": o.flashMode = v; i += 1
            case "--flash-freq": o.flashFrequency = v; i += 1
            case "--flash-size": o.flashSize = v; i += 1
            case "--min-rev": o.minRevision = UInt8(v)!; i += 1
            case "--min-rev-full": o.minRevisionFull = UInt16(v)!; i += 1
            case "--max-rev-full": o.maxRevisionFull = UInt16(v)!; i += 1
            case "--elf-sha256-offset": o.elfSHA256Offset = NumberParsing.integer(v); i += 1
            case "--pad-to-size": o.padToSize = NumberParsing.size(v); i += 1
            case "--dont-append-digest": o.appendDigest = false
            case "--secure-pad-v2": o.securePadV2 = true
            case "--secure-pad": o.securePadV1 = true
            case "--use-segments": o.useSegments = true
            default: Issue.record("unknown test option \(a)")
            }
            i += 1
        }
        return try ImageBuilder.elf2image(elf: elf, chip: .esp32, options: o)
    }

    @Test("byte-identical to esptool elf2image over randomized options (all three ELFs)",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)))
    func matchesOracle() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("elf2image")
        defer { try? FileManager.default.removeItem(at: dir) }
        var cases: [Case] = elfFixtures.map { Case(elf: $0, args: []) } // esptool defaults
        cases.append(Case(elf: "esp32-app-template", args: ["--flash-mode", "dio", "--flash-freq", "40m", "--flash-size", "4MB",
                                                           "--min-rev", "3", "--min-rev-full", "300", "--max-rev-full", "399",
                                                           "--secure-pad-v2", "--elf-sha256-offset", "0xb0"]))
        cases.append(Case(elf: "esp32-bootloader", args: ["--secure-pad"]))
        cases.append(Case(elf: "esp32-zephyr", args: ["--use-segments", "--flash-mode", "dout"]))
        cases += Self.randomCases(elf: "esp32-app-template", count: 5, rng: &rng)
        cases += Self.randomCases(elf: "esp32-bootloader", count: 6, rng: &rng)
        cases += Self.randomCases(elf: "esp32-zephyr", count: 6, rng: &rng)
        var compared = 0
        for (n, c) in cases.enumerated() {
            let elfPath = TestEnvironment.fixture("elf/\(c.elf).elf").path
            let elf = try readFile(elfPath)
            let out = dir.appendingPathComponent("ref-\(n).bin").path
            let r = try Oracle.run("esptool", ["--chip", "esp32", "elf2image"] + c.args + [elfPath, "-o", out])
            if r.status != 0 {
                // esptool refuses this combination (e.g. a non-zero field at the ELF SHA-256
                // offset): espforge must refuse it too.
                #expect(throws: ImageError.self, "seed \(seed) case \(c): esptool refused: \(r.err)") {
                    try library(c, elf: elf)
                }
                continue
            }
            let expected = try readFile(out)
            let mine = try library(c, elf: elf)
            compared += 1
            let same = mine == expected
            #expect(same, "seed \(seed) case \(c): \(mine.count) vs esptool \(expected.count) bytes, first difference at \(zip(mine, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(mine.count, expected.count))")
            // What we build, we parse back as valid.
            let parsed = try ESPImage(mine)
            #expect(parsed.checksumValid && parsed.digestValid != false, "seed \(seed) case \(c)")
            if c.args.contains("--secure-pad-v2") { #expect(parsed.imageEnd % 0x10000 == 0, "seed \(seed) case \(c)") }
        }
        #expect(compared >= cases.count - 3, "seed \(seed): only \(compared) of \(cases.count) cases produced an image")
    }

    @Test("the same builder, driven by the chip table, matches esptool for ESP32-S3 and ESP32-C3",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: ["esp32s3", "esp32c3"])
    func otherChips(_ chipName: String) throws {
        // The fixtures are ESP32 ELFs; for another chip their addresses classify differently
        // (nothing is flash-mapped), which exercises that chip's memory map and flash codes.
        let chip = try #require(ChipSpec.named(chipName))
        let dir = try TestEnvironment.temporaryDirectory("elf2image")
        defer { try? FileManager.default.removeItem(at: dir) }
        for elfName in elfFixtures {
            let path = TestEnvironment.fixture("elf/\(elfName).elf").path
            let out = dir.appendingPathComponent("\(elfName).bin").path
            let r = try Oracle.run("esptool", ["--chip", chipName, "elf2image", "--flash-mode", "dio", "--flash-freq", "26m",
                                               "--flash-size", "8MB", path, "-o", out])
            #expect(r.status == 0, "\(r.err)")
            var o = ImageBuildOptions()
            o.flashMode = "dio"; o.flashFrequency = "26m"; o.flashSize = "8MB"
            let mine = try ImageBuilder.elf2image(elf: try readFile(path), chip: chip, options: o)
            let same = mine == (try readFile(out))
            #expect(same, "\(chipName) \(elfName)")
        }
    }

    @Test("--pad-to-size without a digest pads at the end (esptool 5.6.0 overwrites the header there)",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func padWithoutDigest() throws {
        let elf = try TestEnvironment.fixtureBytes("elf/esp32-zephyr.elf")
        var o = ImageBuildOptions()
        o.appendDigest = false
        let plain = try ImageBuilder.elf2image(elf: elf, chip: .esp32, options: o)
        o.padToSize = 4096
        let padded = try ImageBuilder.elf2image(elf: elf, chip: .esp32, options: o)
        #expect(padded.count % 4096 == 0 && padded.count > plain.count)
        let prefixSame = Array(padded[0..<plain.count]) == plain
        #expect(prefixSame)
        #expect(padded[plain.count...].allSatisfy { $0 == 0xFF })
        #expect(try ESPImage(padded).checksumValid)
    }

    @Test("the ELF SHA-256 lands in the app descriptor at 0xb0",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func elfSHA256() throws {
        let elf = try TestEnvironment.fixtureBytes("elf/esp32-app-template.elf")
        var o = ImageBuildOptions()
        o.elfSHA256Offset = 0xB0
        let image = try ImageBuilder.elf2image(elf: elf, chip: .esp32, options: o)
        let digest = Array(SHA256.hash(data: elf))
        #expect(Array(image[0xB0..<0xD0]) == digest)
        let parsed = try ESPImage(image)
        #expect(parsed.appDescriptor?.elfSHA256 == digest.hexString)
        #expect(parsed.segments.first?.memoryTypes == ["DROM"])
    }

    @Test("refuses the ELF SHA-256 offset on a non-zero field, like esptool",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)))
    func shaOffsetRefusal() throws {
        let path = TestEnvironment.fixture("elf/esp32-bootloader.elf").path
        let dir = try TestEnvironment.temporaryDirectory("elf2image")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try Oracle.run("esptool", ["--chip", "esp32", "elf2image", "--elf-sha256-offset", "0xb0", path,
                                           "-o", dir.appendingPathComponent("x.bin").path])
        #expect(r.status != 0)
        var o = ImageBuildOptions()
        o.elfSHA256Offset = 0xB0
        #expect(throws: ImageError.self) { try ImageBuilder.elf2image(elf: try readFile(path), chip: .esp32, options: o) }
    }

    @Test("unknown flash parameters are refused with the allowed list")
    func badParameters() throws {
        var o = ImageBuildOptions()
        o.flashSize = "3MB"
        do {
            _ = try ImageBuilder.build(elf: try ELFFile(minimalELF()), elfBytes: minimalELF(), chip: .esp32, options: o)
            Issue.record("accepted 3MB")
        } catch {
            #expect(error.diagnostic.hint?.contains("4MB") == true)
        }
    }

    @Test("random bytes, truncations and bit flips of an ELF never crash the reader or the builder",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func fuzzELF() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let original = try TestEnvironment.fixtureBytes("elf/esp32-bootloader.elf")
        var built = 0, rejected = 0
        for round in 0..<400 {
            var input: [UInt8]
            switch round % 3 {
            case 0:
                input = rng.bytes(Int.random(in: 0...200, using: &rng))
                if input.count > 52 && Bool.random(using: &rng) {
                    input.replaceSubrange(0..<6, with: [0x7F, 0x45, 0x4C, 0x46, 1, 1])
                    input[18] = 0x5E; input[19] = 0; input[46] = 0x28; input[47] = 0
                }
            case 1:
                input = Array(original[0..<Int.random(in: 0...original.count, using: &rng)])
            default:
                input = original
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let i = Bool.random(using: &rng) ? Int.random(in: 0..<52, using: &rng)
                                                     : Int.random(in: 0..<input.count, using: &rng)
                    input[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
                }
            }
            do {
                let image = try ImageBuilder.elf2image(elf: input, chip: .esp32, options: ImageBuildOptions())
                _ = try ESPImage(image)
                built += 1
            } catch {  // typed throws: always an ImageError
                rejected += 1
            }
        }
        #expect(built > 0 && rejected > 0, "seed \(seed): built \(built), rejected \(rejected)")
    }
}

/// A tiny valid Xtensa ELF with one IRAM section, for option-validation tests.
func minimalELF() -> [UInt8] {
    var e: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
    e.appendLE(UInt16(2)); e.appendLE(UInt16(0x5E)); e.appendLE(UInt32(1))
    e.appendLE(UInt32(0x4008_0000)) // entry
    e.appendLE(UInt32(0)) // phoff
    e.appendLE(UInt32(0x34 + 16 + 16)) // shoff
    e.appendLE(UInt32(0)); e.appendLE(UInt16(0x34)); e.appendLE(UInt16(0x20)); e.appendLE(UInt16(0))
    e.appendLE(UInt16(0x28)); e.appendLE(UInt16(3)); e.appendLE(UInt16(2))
    // 0x34: section data (16 bytes), 0x44: string table (16 bytes)
    e += [UInt8](repeating: 0xAB, count: 16)
    e += Array("\0.iram0.text\0.s\0".utf8)
    func sh(_ name: UInt32, _ type: UInt32, _ addr: UInt32, _ off: UInt32, _ size: UInt32) {
        for v in [name, type, 0, addr, off, size, 0, 0, 4, 0] { e.appendLE(v) }
    }
    sh(0, 0, 0, 0, 0)
    sh(1, 1, 0x4008_0000, 0x34, 16)
    sh(13, 3, 0, 0x44, 16)
    return e
}
