import Crypto
import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

@Suite("ESP image parser")
struct ImageParseTests {
    @Test("every image fixture parses like esptool image-info says",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: imageFixtures)
    func fixtureMatchesOracle(_ name: String) throws {
        let bytes = try TestEnvironment.fixtureBytes(name)
        let image = try ESPImage(bytes)
        let oracle = try oracleImageInfo(TestEnvironment.fixture(name).path)
        #expect(image.segmentCount == oracle.segmentCount, "\(name)")
        #expect(image.segments.count == oracle.segments.count, "\(name)")
        for (mine, theirs) in zip(image.segments, oracle.segments) {
            #expect(mine.length == theirs.length, "\(name) segment \(mine.index)")
            #expect(mine.loadAddress == theirs.load, "\(name) segment \(mine.index)")
            #expect(mine.headerOffset == theirs.fileOffset, "\(name) segment \(mine.index)")
            #expect(mine.memoryTypes.joined(separator: ", ") == theirs.types, "\(name) segment \(mine.index)")
        }
        #expect(image.checksumValid == oracle.checksumValid, "\(name)")
        #expect(image.digestValid == oracle.hashValid, "\(name)")
        #expect(image.flashSizeName == oracle.flashSize, "\(name)")
        #expect(image.flashFrequencyName == oracle.flashFreq, "\(name)")
        #expect(image.flashModeName?.uppercased() == oracle.flashMode, "\(name)")
        #expect(image.appDescriptor?.projectName == oracle.projectName, "\(name)")
        #expect(image.appDescriptor?.elfSHA256 == oracle.elfSHA256, "\(name)")
        #expect(image.bootloaderDescriptor?.idfVersion == oracle.bootloaderIDF, "\(name)")
        #expect(image.warnings.isEmpty, "\(name): \(image.warnings)")
        #expect(image.chip?.name == "esp32")
    }

    @Test("signature sector detection on the Secure Boot V2 fixtures",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func signatureSector() throws {
        for name in ["secure/bootloader_signed_v2_rsa.bin", "secure/bootloader_signed_v2_ecdsa256.bin",
                     "secure/bootloader_multi_signed_v2_rsa.bin"] {
            let bytes = try TestEnvironment.fixtureBytes(name)
            let image = try ESPImage(bytes)
            #expect(image.hasSignatureSector, "\(name)")
            #expect(image.signatureSectorOffset == 0x8000, "\(name)")
            #expect(image.signatureSectorOffset % 4096 == 0)
            #expect(image.signatureSectorOffset + 4096 == bytes.count, "\(name)")
            #expect(image.imageEnd == 0x7710, "\(name)")
        }
        for name in ["secure/bootloader_unsigned_v2.bin", "images/bootloader_esp32_v5_2.bin", "secure/hello-world-signed.bin"] {
            let image = try ESPImage(try TestEnvironment.fixtureBytes(name))
            #expect(!image.hasSignatureSector, "\(name)")
        }
        // The V1-signed app has a non-padding trailer right after the digest.
        let v1 = try ESPImage(try TestEnvironment.fixtureBytes("secure/hello-world-signed.bin"))
        #expect(v1.trailingDataOffset == v1.imageEnd)
        #expect(v1.appDescriptor?.projectName == "hello-world")
        #expect(v1.appDescriptor?.secureVersion == 0)
        let unsigned = try ESPImage(try TestEnvironment.fixtureBytes("secure/bootloader_unsigned_v2.bin"))
        #expect(unsigned.trailingDataOffset == nil, "the unsigned SBv2 bootloader is padded with 0xFF only")
    }

    @Test("non-image fixtures are rejected with an error, not parsed",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"), arguments: nonImageFixtures)
    func nonImages(_ name: String) throws {
        let bytes = try TestEnvironment.fixtureBytes(name)
        #expect(throws: ImageError.self) { try ESPImage(bytes) }
    }

    @Test("every truncation of a real image throws an error naming an offset inside the file",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func truncations() throws {
        let bytes = try TestEnvironment.fixtureBytes("images/bootloader_esp32_v5_2.bin")
        let full = try ESPImage(bytes)
        for n in stride(from: 0, to: full.imageEnd, by: 7) {
            do {
                _ = try ESPImage(Array(bytes[0..<n]))
                Issue.record("prefix of \(n) bytes parsed without error")
            } catch {
                let d = error.diagnostic
                #expect(d.offset != nil, "prefix \(n): \(d)")
                #expect((d.offset ?? -1) <= n + 16, "prefix \(n): \(d)")
            }
        }
        #expect(try ESPImage(Array(bytes[0..<full.imageEnd])).digestValid == true)
    }

    @Test("a truncated segment names the segment and the end-of-file offset")
    func truncatedSegmentMessage() throws {
        var img: [UInt8] = [0xE9, 1, 2, 0x20, 0, 0, 0, 0, 0xEE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        img.appendLE(UInt32(0x3FFB_0000))
        img.appendLE(UInt32(0x100))
        img += [UInt8](repeating: 1, count: 0x20)
        do {
            _ = try ESPImage(img)
            Issue.record("parsed a truncated image")
        } catch {
            let text = error.diagnostic.description
            #expect(text.contains("segment 0 length 0x100 runs past end of file at byte offset 0x40"), "\(text)")
            #expect(error.diagnostic.offset == 0x1C)
        }
    }

    @Test("random bytes, bit flips and truncations never crash the parser",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func fuzz() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let originals = try ["images/bootloader_esp32_v5_2.bin", "secure/bootloader_signed_v2_rsa.bin",
                             "secure/hello-world-signed.bin"].map { try TestEnvironment.fixtureBytes($0) }
        var parsed = 0, rejected = 0
        for round in 0..<1500 {
            var input: [UInt8]
            switch round % 4 {
            case 0:
                input = rng.bytes(Int.random(in: 0...300, using: &rng))
                if !input.isEmpty && Bool.random(using: &rng) { input[0] = 0xE9 }
                if input.count > 23 { input[23] = UInt8.random(in: 0...1, using: &rng) }
            case 1:
                let o = originals[Int.random(in: 0..<originals.count, using: &rng)]
                input = Array(o[0..<Int.random(in: 0...o.count, using: &rng)])
            default:
                input = originals[Int.random(in: 0..<originals.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    // Flip bits mostly in the headers, where they change the structure.
                    let limit = Bool.random(using: &rng) ? min(64, input.count) : input.count
                    let i = Int.random(in: 0..<limit, using: &rng)
                    input[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
                }
            }
            do {
                let img = try ESPImage(input)
                parsed += 1
                #expect(img.imageEnd <= input.count, "seed \(seed) round \(round)")
                #expect(img.segments.allSatisfy { $0.dataOffset + $0.length <= input.count }, "seed \(seed) round \(round)")
                _ = try? ImageRetarget.retarget(input, parameters: FlashParameters(size: "4MB"), stripSignature: Bool.random(using: &rng))
            } catch {  // typed throws: always an ImageError
                rejected += 1
            }
        }
        #expect(parsed > 0 && rejected > 0, "seed \(seed): parsed \(parsed), rejected \(rejected)")
    }

    @Test("a flipped bit in segment data makes the checksum or digest invalid",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func integrityDetection() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let bytes = try TestEnvironment.fixtureBytes("images/bootloader_esp32_v5_2.bin")
        let image = try ESPImage(bytes)
        for _ in 0..<20 {
            let seg = image.segments[Int.random(in: 0..<image.segments.count, using: &rng)]
            var copy = bytes
            copy[seg.dataOffset + Int.random(in: 0..<seg.length, using: &rng)] ^= 0x10
            let broken = try ESPImage(copy)
            #expect(!broken.checksumValid, "seed \(seed)")
            #expect(broken.digestValid == false, "seed \(seed)")
        }
        var header = bytes
        header[3] ^= 0x10 // flash size: only the digest covers the header
        let h = try ESPImage(header)
        #expect(h.checksumValid)
        #expect(h.digestValid == false)
    }
}
