import ESPCore
import Foundation
import Partitions
import Testing
import TestSupport

/// `PartitionTableFile`, `PartitionTableReport`, `OtadataReport` and `Otadata.image`: what the
/// `partitions` and `otadata` commands do, through the library.
@Suite("Partition table files and otadata (library)")
struct PartitionTableFileTests {
    static let csv = """
        nvs,      data, nvs,     ,        0x4000,
        otadata,  data, ota,     ,        0x2000,
        phy_init, data, phy,     ,        0x1000,
        ota_0,    app,  ota_0,   ,        1M,
        ota_1,    app,  ota_1,   ,        1M,

        """

    @Test("a CSV and the binary built from it load to the same table; the report decodes every entry")
    func csvAndBinary() throws {
        let dir = try TestEnvironment.temporaryDirectory("ptable")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csvPath = dir.appendingPathComponent("t.csv").path, binPath = dir.appendingPathComponent("t.bin").path
        try Self.csv.write(toFile: csvPath, atomically: true, encoding: .utf8)
        let fromCSV = try PartitionTableFile.load(csvPath, options: PartitionTableOptions())
        #expect(!fromCSV.isBinary && fromCSV.md5 == nil)
        try AtomicFile.write(try fromCSV.table.binary(), to: binPath)
        let fromBinary = try PartitionTableFile.load(binPath, options: PartitionTableOptions())
        #expect(fromBinary.isBinary && fromBinary.md5 == .valid)
        #expect(fromBinary.table.entries == fromCSV.table.entries)
        // Inside a flash dump: the same table read at 0x8000.
        try AtomicFile.write([UInt8](repeating: 0xFF, count: 0x8000) + (try fromCSV.table.binary()), to: binPath)
        #expect(try PartitionTableFile.load(binPath, options: PartitionTableOptions(), at: 0x8000).table.entries == fromCSV.table.entries)
        #expect(throws: UsageError.self) { try PartitionTableFile.load(binPath, options: PartitionTableOptions(), at: 0x100000) }

        let (problem, warnings) = fromBinary.review(options: PartitionTableOptions(flashSize: 4 << 20))
        #expect(problem == nil)
        let report = fromBinary.report(warnings: warnings)
        #expect(report.format == "binary" && report.md5 == "valid")
        #expect(report.partitions.map(\.name) == ["nvs", "otadata", "phy_init", "ota_0", "ota_1"])
        let ota1 = try #require(report.partitions.last)
        #expect(ota1.typeName == "app" && ota1.subtypeName == "ota_1" && ota1.offset == 0x110000 && ota1.sizeHex == "0x00100000")
        #expect(try JSONDecoder().decode(PartitionTableReport.self, from: Data(try report.json().utf8)) == report)
        // Too small a flash: the layout error comes back as the problem, not thrown.
        #expect(fromBinary.review(options: PartitionTableOptions(flashSize: 1 << 20)).problem != nil)
    }

    @Test("otadata images: a slot the table has, an explicit sequence, erased; bad values are usage errors")
    func otadataImages() throws {
        let dir = try TestEnvironment.temporaryDirectory("otadata")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csvPath = dir.appendingPathComponent("t.csv").path
        try Self.csv.write(toFile: csvPath, atomically: true, encoding: .utf8)
        let (slot1, summary) = try Otadata.image(boot: "OTA_1", sequence: nil, state: "valid", tablePath: csvPath)
        #expect(summary == "boots ota_1 (sequence 2)" && slot1 == Otadata.build(bootSlot: 1, state: .valid))
        #expect(throws: UsageError.self) { try Otadata.image(boot: "ota_2", sequence: nil, state: "undefined", tablePath: csvPath) }
        #expect(try Otadata.image(boot: "none", sequence: 9, state: "new", tablePath: nil).summary == "sequence 9")
        #expect(try Otadata.image(boot: "none", sequence: nil, state: "undefined", tablePath: nil).bytes == Otadata.blank())
        #expect(throws: UsageError.self) { try Otadata.image(boot: "ota_16", sequence: nil, state: "undefined", tablePath: nil) }
        #expect(throws: UsageError.self) { try Otadata.image(boot: "none", sequence: nil, state: "sleepy", tablePath: nil) }

        let report = OtadataReport(try Otadata.parse(slot1), otaApps: 2, factory: false)
        #expect(report.boots == "ota_1" && report.activeCopy == 0)
        #expect(report.copies[0].state == "valid" && report.copies[0].crcValid && report.copies[1].erased)
        #expect(report.text == "copy 0 @0x0000: seq 2, state valid, crc ok\ncopy 1 @0x1000: erased\nactive copy: 0\n"
                + "boots: ota_1 (2 OTA app partition(s))\n")
        var broken = slot1
        broken[28] ^= 0xFF // the first copy's CRC
        let invalid = OtadataReport(try Otadata.parse(broken), otaApps: 2, factory: true)
        #expect(invalid.boots == "factory (otadata invalid)" && invalid.copies[0].crcValid == false)
        #expect(invalid.text.contains("crc BAD (stored"))
    }

    @Test("layout options from text: bad chip, offset or size are usage errors naming the option")
    func optionsFromText() throws {
        let o = try PartitionTableOptions(chipName: "esp32s3", tableOffset: "0x9000", flashSize: "8MB", md5: false,
                                          secureBootV1: false, environment: [:], bootloaderPath: nil)
        #expect(o.chip.name == "esp32s3" && o.tableOffset == 0x9000 && o.flashSize == 8 << 20 && !o.md5)
        do {
            _ = try PartitionTableOptions(chipName: "esp32", tableOffset: "x", flashSize: nil, md5: true, secureBootV1: false,
                                          environment: [:], bootloaderPath: nil)
            Issue.record("accepted --offset x")
        } catch let e as UsageError {
            #expect(e.diagnostic.message == "--offset 'x' is not a valid offset")
        }
    }
}
