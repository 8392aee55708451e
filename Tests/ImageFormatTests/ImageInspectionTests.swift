import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

/// `ImageInspection`: what `image info` reports, through the library alone.
@Suite("ImageInspection (library)")
struct ImageInspectionTests {
    @Test("a signed bootloader: header, segments, integrity and the signature block checked against its key digest",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func signedBootloader() throws {
        let bytes = try TestEnvironment.fixtureBytes("secure/bootloader_signed_v2_rsa.bin")
        guard case let .esp32Family(report) = try ImageInspection.inspect(bytes) else {
            Issue.record("not reported as an ESP32-family image"); return
        }
        #expect(report.fileSize == bytes.count)
        #expect(report.hasSignatureSector && report.signatureSectorOffset == 0x8000)
        #expect(report.segments.count == 4 && report.header.segmentCount == 4)
        #expect(report.integrity.checksumValid && report.integrity.sha256Valid == true)
        let sector = try #require(report.secureBoot)
        #expect(sector.offset == 0x8000 && sector.blocks.count == 1)
        let digest = try TestEnvironment.fixtureBytes("secure/rsa_public_key_digest.bin")
        #expect(sector.blocks[0].keyDigest == digest.hexString)
        #expect(sector.blocks[0].crcValid && sector.blocks[0].imageDigestMatches && sector.blocks[0].signatureValid == true)
        let text = ImageInspection.esp32Family(report).text
        #expect(text.contains("Secure Boot V2 signature sector at 0x00008000:"))
        #expect(text.contains("    key digest:     \(digest.hexString)"))
        #expect(text.hasSuffix("\n"))
        // The JSON form decodes back to the same report.
        let json = try ImageInspection.esp32Family(report).json()
        #expect(try JSONDecoder().decode(ImageInfoReport.self, from: Data(json.utf8)) == report)
    }

    @Test("a damaged signature block is reported, not thrown",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func damagedSignature() throws {
        var bytes = try TestEnvironment.fixtureBytes("secure/bootloader_signed_v2_rsa.bin")
        bytes[0x8000 + 100] ^= 0xFF // inside block 0's key fields: the CRC no longer matches
        guard case let .esp32Family(report) = try ImageInspection.inspect(bytes) else { Issue.record("wrong family"); return }
        let sector = try #require(report.secureBoot)
        #expect(sector.blocks.first?.crcValid == false)
        #expect(sector.problems.contains { $0.contains("CRC32 mismatch") })
        #expect(ImageInspection.esp32Family(report).text.contains("    CRC:            INVALID"))
    }

    @Test("an unsigned image has no signature report; a truncated one throws an ImageError with an offset",
          .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"))
    func unsignedAndTruncated() throws {
        let bytes = try TestEnvironment.fixtureBytes("images/bootloader_esp32.bin")
        guard case let .esp32Family(report) = try ImageInspection.inspect(bytes) else { Issue.record("wrong family"); return }
        #expect(report.secureBoot == nil && !report.hasSignatureSector)
        #expect(ImageInspection.esp32Family(report).text.contains("Secure Boot V2 signature: none"))
        #expect(throws: ImageError.self) { try ImageInspection.inspect(Array(bytes.prefix(30))) }
    }

    @Test("the segment table row: right-aligned index, hex offsets, memory types")
    func segmentRow() {
        #expect(SegmentTable.row(index: 3, fileOffset: 0x18, length: 0x100, loadAddress: "0x40080000", memoryTypes: ["IRAM"])
                == "  3  0x00000018  0x00000100  0x40080000  IRAM")
        #expect(SegmentTable.row(index: 12, fileOffset: 0, length: 1, loadAddress: "0x0", memoryTypes: []).hasSuffix("0x0  -"))
    }

    @Test("elf2image options from text: sizes and offsets parse, bad values are usage errors naming the option")
    func buildOptionsFromText() throws {
        var o = ImageBuildOptions()
        try o.set(mmuPageSize: "32KB", elfSHA256Offset: "0xb0", padToSize: "4KB")
        #expect(o.mmuPageSize == 32768 && o.elfSHA256Offset == 0xB0 && o.padToSize == 4096)
        do {
            try o.set(mmuPageSize: nil, elfSHA256Offset: nil, padToSize: "lots")
            Issue.record("accepted --pad-to-size lots")
        } catch let e as UsageError {
            #expect(e.diagnostic.message.contains("--pad-to-size 'lots'"))
        }
        #expect(try ImageBuilder.imageChip(named: "esp32s3").name == "esp32s3")
        #expect(throws: UsageError.self) { try ImageBuilder.imageChip(named: "esp9000") }
    }
}
