import Crypto
import ESPCore
import Foundation
import Partitions
import Testing
import TestSupport

/// The seed board's table, as its bootloader printed it (../shared/seed/ boot log).
let seedCSV = """
    # Name,   Type, SubType,  Offset,   Size,     Flags
    nvs_key,  data, nvs_keys, 0x11000,  0x1000,   encrypted
    nvs,      data, nvs,      0x12000,  0x20000,
    otadata,  data, ota,      0x32000,  0x2000,
    phy_init, data, phy,      0x34000,  0x1000,
    coredump, data, coredump, 0x35000,  0x20000,
    ota_0,    app,  ota_0,    0x60000,  0x1a0000,
    ota_1,    app,  ota_1,    0x210000, 0x1a0000,
    """

/// The seven entries of the seed table, hand-assembled from the layout rules (magic AA 50, type,
/// subtype, offset LE, size LE, 16-byte NUL-padded label, flags LE). gen_esp32part.py (ESP-IDF
/// master, run once during development) produced the same bytes.
let seedEntriesHex =
    "aa50010400100100001000006e76735f6b657900000000000000000001000000" +
    "aa50010200200100000002006e76730000000000000000000000000000000000" +
    "aa50010000200300002000006f74616461746100000000000000000000000000" +
    "aa50010100400300001000007068795f696e6974000000000000000000000000" +
    "aa5001030050030000000200636f726564756d70000000000000000000000000" +
    "aa5000100000060000001a006f74615f30000000000000000000000000000000" +
    "aa5000110000210000001a006f74615f31000000000000000000000000000000"

func md5Hex(_ bytes: [UInt8]) -> String { Array(Insecure.MD5.hash(data: bytes)).hexString }

func build(_ csv: String, _ options: PartitionTableOptions = .init()) throws -> PartitionTableBuild {
    try PartitionTableBuild(csv: csv, options: options)
}

/// Runs `body`, expecting a PartitionTableError, and returns it.
func expectError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> PartitionTableError? {
    do {
        try body()
        Issue.record("expected an error", sourceLocation: sourceLocation)
        return nil
    } catch let e as PartitionTableError {
        return e
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

@Suite struct SeedTableTests {
    @Test func buildsByteExact() throws {
        let b = try build(seedCSV, .init(flashSize: 4 << 20))
        #expect(b.binary.count == 0xC00)
        #expect(Array(b.binary[0..<0xE0]).hexString == seedEntriesHex)
        // MD5 entry: EB EB, 14 × FF, MD5 of the 7 entries.
        #expect(Array(b.binary[0xE0..<0xF0]) == [0xEB, 0xEB] + [UInt8](repeating: 0xFF, count: 14))
        #expect(Array(b.binary[0xF0..<0x100]).hexString == "c9fa3d3185590dd0dc71b5448bb0214a")
        #expect(Array(b.binary[0xF0..<0x100]).hexString == md5Hex(Array(b.binary[0..<0xE0])))
        #expect(b.binary[0x100...].allSatisfy { $0 == 0xFF })
        // Whole file as gen_esp32part wrote it.
        #expect(md5Hex(b.binary) == "ecf189d79ae916cf505df02f6da7df10")
        // A correct table: nvs_keys is encrypted, nvs is not; no warnings.
        #expect(b.warnings.isEmpty, "\(b.warnings)")
    }

    @Test func showsAndRoundTrips() throws {
        let b = try build(seedCSV)
        let parsed = try PartitionTable.parse(binary: b.binary)
        #expect(parsed.md5 == .valid)
        #expect(parsed.length == 0x120)
        #expect(parsed.warnings.isEmpty)
        #expect(parsed.table.entries == b.table.entries)
        let csv = parsed.table.csv()
        #expect(csv == """
            # ESP-IDF Partition Table
            # Name, Type, SubType, Offset, Size, Flags
            nvs_key,data,nvs_keys,0x11000,4K,encrypted
            nvs,data,nvs,0x12000,128K,
            otadata,data,ota,0x32000,8K,
            phy_init,data,phy,0x34000,4K,
            coredump,data,coredump,0x35000,128K,
            ota_0,app,ota_0,0x60000,1664K,
            ota_1,app,ota_1,0x210000,1664K,

            """)
        // CSV → binary → CSV → binary is stable.
        #expect(try build(csv).binary == b.binary)
        // The table fits 4 MB but not 2 MB (ota_1 ends at 0x3b0000).
        #expect(throws: PartitionTableError.pastFlashEnd(name: "ota_1", end: 0x3B0000, flashSize: 2 << 20,
                                                         source: .csv(line: 8))) {
            try build(seedCSV, .init(flashSize: 2 << 20))
        }
    }

    @Test func seedOtadataBootsLikeTheLog() throws {
        // The log: "No factory image, trying OTA 0" on erased otadata, then
        // "Set actual ota_seq=1 in otadata[0]" — i.e. build(bootSlot: 0).
        let table = try build(seedCSV).table
        let blank = try Otadata.parse(Otadata.blank())
        #expect(blank.boot(otaAppCount: table.otaApps.count, hasFactory: false) == .firstOTA)
        let set = try Otadata.parse(Otadata.build(bootSlot: 0))
        #expect(set.copies[0].sequence == 1)
        #expect(set.boot(otaAppCount: table.otaApps.count, hasFactory: false) == .ota(0))
    }
}

@Suite(.enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures not found"))
struct FixtureTests {
    @Test func singleAppFixtureRoundTrips() throws {
        let fixture = try TestEnvironment.fixtureBytes("images/partitions_singleapp.bin")
        #expect(fixture.count == 96)
        let parsed = try PartitionTable.parse(binary: fixture)
        #expect(parsed.md5 == .absent)
        #expect(parsed.warnings.map(\.kind).contains(.noEndMarker))
        #expect(parsed.table.entries.map(\.name) == ["factory", "rfdata", "wifidata"])
        let csv = parsed.table.csv()
        #expect(csv == """
            # ESP-IDF Partition Table
            # Name, Type, SubType, Offset, Size, Flags
            factory,app,factory,0x10000,1M,
            rfdata,data,phy,0x110000,256K,
            wifidata,data,nvs,0x150000,256K,

            """)
        // CSV → binary without MD5 reproduces the fixture byte for byte, then 0xFF padding.
        let rebuilt = try build(csv, .init(md5: false)).binary
        #expect(Array(rebuilt[0..<96]) == fixture)
        #expect(rebuilt.count == 0xC00)
        #expect(rebuilt[96...].allSatisfy { $0 == 0xFF })
        // With MD5 the entries are the same and the MD5 entry follows them.
        let withMD5 = try build(csv).binary
        #expect(Array(withMD5[0..<96]) == fixture)
        #expect(Array(withMD5[96..<98]) == [0xEB, 0xEB])
        #expect(Array(withMD5[112..<128]) == Array(Insecure.MD5.hash(data: fixture)))
        #expect(try PartitionTable.parse(binary: withMD5).table.entries == parsed.table.entries)
    }
}

@Suite struct CSVParsingTests {
    @Test func autoPlacementDefaultSingleApp() throws {
        // ESP-IDF's default single-app table with empty offsets.
        let b = try build("""
            # auto placement
            nvs,      data, nvs,     ,        0x6000,
            phy_init, data, phy,     ,        0x1000,
            factory,  app,  factory, ,        1M,
            """)
        #expect(b.table.entries.map(\.offset) == [0x9000, 0xF000, 0x10000])
        #expect(md5Hex(b.binary) == "5d61d196adc3dba01928f264eb169be7") // gen_esp32part's output
    }

    @Test func autoPlacementAlignsAppsAndResolvesNegativeSizes() throws {
        let b = try build("""
            otadata, data, ota, , 0x2000
            ota_0, app, ota_0, , 0x100000
            ota_1, app, 0x11, , 1M
            custom, 0x40, 7, , 5K, readonly
            store, data, spiffs, , -0x400000, encrypted:readonly
            """)
        let e = b.table.entries
        #expect(e.map(\.offset) == [0x9000, 0x10000, 0x110000, 0x210000, 0x212000])
        #expect(e[4].size == 0x400000 - 0x212000)
        #expect(e[3].type == 0x40 && e[3].subtype == 7 && e[3].flags == PartitionEntry.flagReadOnly)
        #expect(e[4].flags == PartitionEntry.flagEncrypted | PartitionEntry.flagReadOnly)
        #expect(md5Hex(b.binary) == "fe6363957e3c73e0b62fafd1833c7cac") // gen_esp32part's output
        #expect(b.table.csv().contains("custom,64,7,0x210000,5K,readonly\n"))
        #expect(b.table.csv().contains("store,data,spiffs,0x212000,1976K,encrypted:readonly\n"))
    }

    @Test func autoPlacementAfterCustomTableOffset() throws {
        let b = try build("nvs,data,nvs,,16K\napp,app,factory,,64K", .init(tableOffset: 0x10000))
        #expect(b.table.entries.map(\.offset) == [0x11000, 0x20000])
    }

    @Test func typesAndSubtypesByNameOrNumber() throws {
        let t = try PartitionTable.parse(csv: """
            a, APP, Factory, 0x10000, 64K
            b, 0, 0x10, 0x20000, 64K
            c, data, 0x99, 0x30000, 4K
            d, 1, nvs_keys, 0x31000, 4K, encrypted
            e, data, , 0x32000, 4K
            f, 0x41, 0x10, 0x33000, 0x1000
            g, app, ota_15, 0x40000, 64K
            h, app, tee_1, 0x50000, 64K
            i, data, littlefs, 0x60000, 0x1_000
            """).table.entries
        #expect(t.map(\.type) == [0, 0, 1, 1, 1, 0x41, 0, 0, 1])
        #expect(t.map(\.subtype) == [0, 0x10, 0x99, 4, 6, 0x10, 0x1F, 0x31, 0x83])
        #expect(t[8].size == 0x1000)
    }

    @Test func sizesWithSuffixes() throws {
        let t = try PartitionTable.parse(csv: """
            a, data, nvs, 36K, 24k
            b, data, phy, 0xF000, 0x1K
            c, app, factory, 1M, 1m
            d, app, ota_0, 0x200000, 1024K
            """).table.entries
        #expect(t.map(\.offset) == [0x9000, 0xF000, 0x100000, 0x200000])
        #expect(t.map(\.size) == [0x6000, 0x400, 0x100000, 0x100000])
    }

    @Test func commentsBlankLinesCRLFAndMissingFields() throws {
        let text = "\u{FEFF}# header\r\n\r\n   # indented comment\r\nnvs,data,nvs,0x9000,0x6000\r\n\tfactory , app , factory , 0x10000 , 1M , \r\n"
        let t = try PartitionTable.parse(csv: text).table
        #expect(t.entries.map(\.name) == ["nvs", "factory"])
        #expect(t.sources == [.csv(line: 4), .csv(line: 5)])
    }

    @Test func environmentVariables() throws {
        var o = PartitionTableOptions()
        o.environment = ["APP_SIZE": "0x100000", "NAME": "main"]
        let t = try PartitionTable.parse(csv: "${NAME}, app, factory, 0x10000, $APP_SIZE", options: o).table
        #expect(t.entries[0].name == "main" && t.entries[0].size == 0x100000)
        #expect(throws: PartitionTableError.unknownVariable("NOPE", line: 2, column: 26)) {
            try PartitionTable.parse(csv: "\nfactory, app, factory, 0x$NOPE, 1M", options: o)
        }
    }

    @Test func labelOfSixteenBytesFitsExactly() throws {
        let b = try build("abcdefghijklmnop, app, factory, 0x10000, 1M")
        #expect(Array(b.binary[12..<28]) == Array("abcdefghijklmnop".utf8))
        #expect(try PartitionTable.parse(binary: b.binary).table.entries[0].name == "abcdefghijklmnop")
    }

    @Test func syntaxErrorsPointAtLineAndColumn() {
        let cases: [(String, PartitionTableError)] = [
            ("# c\nnvs, data, nvs, 0x9000, 0x6zz0", .invalidNumber(field: "size", text: "0x6zz0", line: 2, column: 25)),
            ("nvs, data, nvs, 9000h, 24K", .invalidNumber(field: "offset", text: "9000h", line: 1, column: 17)),
            ("nvs, dta, nvs, , 24K", .unknownKeyword(field: "type", text: "dta",
                                                     known: ["bootloader", "partition_table", "app", "data"], line: 1, column: 6)),
            ("x, data, nvx, , 24K", .unknownKeyword(field: "subtype", text: "nvx",
                                                    known: PartitionKeywords.subtypes(forType: 1).map(\.name), line: 1, column: 10)),
            ("x, 0x40, foo, , 24K", .unknownKeyword(field: "subtype", text: "foo", known: [], line: 1, column: 10)),
            ("x, , nvs, , 24K", .emptyField(field: "type", line: 1, column: 4)),
            ("x, app, , , 1M", .emptyAppSubtype(line: 1, column: 9)),
            ("\n\nx, data, nvs, 0x9000", .emptyField(field: "size", line: 3, column: 21)),
            ("x, data, nvs, 0x9000, 24K, encrypted:secret", .unknownFlag("secret", line: 1, column: 38)),
            ("x, data, nvs, 0x9000, 24K, encrypted readonly", .unknownFlag("encrypted readonly", line: 1, column: 28)),
            ("abcdefghijklmnopq, data, nvs, 0x9000, 24K", .nameTooLong("abcdefghijklmnopq", line: 1, column: 1)),
            ("x, 0x100, 0, 0x9000, 24K", .valueOutOfRange(field: "type", value: 0x100, max: 0xFF, line: 1, column: 4)),
            ("x, data, 300, 0x9000, 24K", .valueOutOfRange(field: "subtype", value: 300, max: 0xFF, line: 1, column: 10)),
            ("x, data, nvs, 0x100000000, 24K", .valueOutOfRange(field: "offset", value: 0x1_0000_0000, max: 0xFFFF_FFFF,
                                                                 line: 1, column: 15)),
            ("x, data, nvs, 010, 24K", .invalidNumber(field: "offset", text: "010", line: 1, column: 15)),
            ("x, data, nvs, 0x20000, -0x10000", .negativeSizeBeforeOffset(name: "x", end: 0x10000, offset: 0x20000,
                                                                           line: 1, column: 24)),
            ("x, data, nvs, 0x8000, 24K", .offsetBeforePrevious(name: "x", offset: 0x8000, previousEnd: 0x9000,
                                                                firstEntry: true, line: 1, column: 15)),
            ("a, data, nvs, 0x9000, 24K\nb, data, phy, 0xE000, 4K",
             .offsetBeforePrevious(name: "b", offset: 0xE000, previousEnd: 0xF000, firstEntry: false, line: 2, column: 15)),
        ]
        for (csv, expected) in cases {
            let error = expectError { _ = try build(csv) }
            #expect(error == expected, "CSV: \(csv)")
            if let error {
                let d = error.diagnostic
                #expect(d.line != nil && d.column != nil, "no line/column for \(csv)")
            }
        }
    }

    @Test func extraFieldsWarn() throws {
        let r = try PartitionTable.parse(csv: "factory, app, factory, 0x10000, 1M, , oops")
        #expect(r.warnings.map(\.kind) == [.extraFields])
        #expect(r.warnings[0].source == .csv(line: 1))
    }

    @Test func pythonIntegerSyntax() {
        let valid: [(String, Int)] = [("0", 0), ("00", 0), ("4096", 4096), ("0x1000", 0x1000), ("0X1F", 31),
                                      ("0o17", 15), ("0b101", 5), ("1_000", 1000), ("+5", 5), ("-0x10", -16),
                                      ("4k", 4096), ("4K", 4096), ("2M", 2 << 20), ("1kk", 1 << 20)]
        for (text, value) in valid { #expect(CSVInteger.parse(text) == value, "\(text)") }
        let invalid = ["010", "0x", "1__0", "_1", "1_", "4KB", "--5", "0xg", "1.5", "4 K"]
        for text in invalid { #expect(CSVInteger.parse(text) == nil, "\(text)") }
    }
}

@Suite struct ValidationTests {
    func validate(_ csv: String, _ options: PartitionTableOptions = .init()) throws -> [PartitionWarning] {
        try build(csv, options).warnings
    }

    @Test func errorsPointAtTheirLine() {
        let cases: [(String, PartitionTableOptions, PartitionTableError)] = [
            // App partitions on 64 KiB, data on 4 KiB.
            ("nvs,data,nvs,0x9000,0x6000\nfactory,app,factory,0x18000,1M", .init(),
             .misalignedOffset(name: "factory", offset: 0x18000, alignment: 0x10000, source: .csv(line: 2))),
            ("nvs,data,nvs,0x9800,0x6000", .init(),
             .misalignedOffset(name: "nvs", offset: 0x9800, alignment: 0x1000, source: .csv(line: 1))),
            ("factory,app,factory,0x10000,0x10800", .init(),
             .misalignedSize(name: "factory", size: 0x10800, alignment: 0x1000, source: .csv(line: 1))),
            ("factory,app,factory,0x10000,0x11000", .init(secureBootV1: true),
             .misalignedSize(name: "factory", size: 0x11000, alignment: 0x10000, source: .csv(line: 1))),
            ("x,data,spiffs,0x9000,0", .init(), .emptyPartition(name: "x", source: .csv(line: 1))),
            // Duplicate names.
            ("nvs,data,nvs,,0x6000\n# c\nnvs,data,phy,,0x1000", .init(),
             .duplicateName("nvs", sources: [.csv(line: 1), .csv(line: 3)])),
            // Overlaps when lines are not in address order.
            ("a,data,nvs,0x20000,0x10000\nb,data,phy,,0x1000\nc,data,spiffs,0x9000,0x18000", .init(),
             .offsetBeforePrevious(name: "c", offset: 0x9000, previousEnd: 0x31000, firstEntry: false, line: 3, column: 15)),
            // Past the flash size.
            ("factory,app,factory,0x10000,0x3F0000\nstore,data,spiffs,,4K", .init(flashSize: 4 << 20),
             .pastFlashEnd(name: "store", end: 0x401000, flashSize: 4 << 20, source: .csv(line: 2))),
            // Table offset checks (bootloader at 0x1000 on ESP32, 0x0 on ESP32-S3).
            ("factory,app,factory,,1M", .init(tableOffset: 0x1000),
             .tableOverlapsBootloader(tableOffset: 0x1000, bootloaderOffset: 0x1000, chip: "ESP32")),
            ("factory,app,factory,,1M", .init(tableOffset: 0x8800), .tableOffsetMisaligned(tableOffset: 0x8800)),
            // otadata: one, of 0x2000 bytes.
            ("ota1,data,ota,,0x2000\nota2,data,ota,,0x2000\nota_0,app,ota_0,,1M", .init(),
             .multipleOtadata(subtype: "ota", sources: [.csv(line: 1), .csv(line: 2)])),
            ("otadata,data,ota,,0x1000\nota_0,app,ota_0,,1M", .init(),
             .otadataSize(name: "otadata", size: 0x1000, source: .csv(line: 1))),
            ("t1,data,tee_ota,,0x2000\nt2,data,tee_ota,,0x2000", .init(),
             .multipleOtadata(subtype: "tee_ota", sources: [.csv(line: 1), .csv(line: 2)])),
            // OTA apps need otadata.
            ("nvs,data,nvs,,0x6000\nota_0,app,ota_0,,1M\nota_1,app,ota_1,,1M", .init(),
             .otaAppsWithoutOtadata(name: "ota_0", source: .csv(line: 2))),
            // Always read-write partitions.
            ("otadata,data,ota,,0x2000,readonly\nota_0,app,ota_0,,1M", .init(),
             .readOnlyNotAllowed(name: "otadata", subtype: "ota", source: .csv(line: 1))),
            ("cd,data,coredump,,64K,readonly", .init(),
             .readOnlyNotAllowed(name: "cd", subtype: "coredump", source: .csv(line: 1))),
            // Small NVS must be readonly.
            ("nvs,data,nvs,,0x2000", .init(), .nvsTooSmallForReadWrite(name: "nvs", size: 0x2000, source: .csv(line: 1))),
        ]
        for (csv, options, expected) in cases {
            let error = expectError { _ = try build(csv, options) }
            #expect(error == expected, "CSV: \(csv)")
        }
        // A readonly small NVS is fine.
        #expect(throws: Never.self) { try build("nvs,data,nvs,,0x2000,readonly\nfactory,app,factory,,1M") }
    }

    @Test func bootloaderMustEndBeforeTheTable() throws {
        var o = PartitionTableOptions()
        o.bootloaderSize = 0x7000 // 0x1000 + 0x7000 = 0x8000: just fits
        #expect(throws: Never.self) { try build("factory,app,factory,,1M", o) }
        o.bootloaderSize = 0x7001
        #expect(throws: PartitionTableError.bootloaderTooLarge(bootloaderOffset: 0x1000, bootloaderSize: 0x7001, tableOffset: 0x8000)) {
            try build("factory,app,factory,,1M", o)
        }
        o.tableOffset = 0x10000 // what the seed board does to make room
        #expect(throws: Never.self) { try build("factory,app,factory,,1M", o) }
    }

    @Test func overlapInBinaryTablePointsAtEntryOffset() throws {
        let t = PartitionTable(entries: [
            PartitionEntry(name: "a", type: 1, subtype: 2, offset: 0x9000, size: 0x6000),
            PartitionEntry(name: "b", type: 0, subtype: 0, offset: 0x10000, size: 0x100000),
            PartitionEntry(name: "c", type: 1, subtype: 0x82, offset: 0xC000, size: 0x1000),
        ], sources: [.binary(index: 0), .binary(index: 1), .binary(index: 2)])
        let e = expectError { _ = try t.validate() }
        #expect(e == .overlap(name: "c", offset: 0xC000, other: "a", otherStart: 0x9000, otherEnd: 0xF000, source: .binary(index: 2)))
        #expect(e?.diagnostic.offset == 64)
        let below = PartitionTable(entries: [PartitionEntry(name: "x", type: 1, subtype: 0x82, offset: 0x8000, size: 0x1000)],
                                   sources: [.binary(index: 0)])
        #expect(throws: PartitionTableError.belowTable(name: "x", offset: 0x8000, firstFree: 0x9000, source: .binary(index: 0))) {
            try below.validate()
        }
    }

    @Test func securityWarnings() throws {
        let w = try validate("""
            nvs_key,  data, nvs_keys, , 0x800
            nvs,      data, nvs,      , 0x6000, encrypted
            factory,  app,  factory,  , 1M
            """)
        #expect(w.map(\.kind) == [.nvsKeysNotEncrypted, .nvsKeysTooSmall, .nvsEncrypted])
        #expect(w.map(\.source) == [.csv(line: 1), .csv(line: 1), .csv(line: 2)])
        #expect(w[2].diagnostic.description.contains("line 2"))
    }

    @Test func layoutWarnings() throws {
        #expect(try validate("nvs,data,nvs,,0x6000").map(\.kind) == [.noApp])
        #expect(try validate("otadata,data,ota,,0x2000\nfactory,app,factory,,1M").map(\.kind) == [.otadataWithoutOtaApps])
        #expect(try validate("otadata,data,ota,,0x2000\nota_0,app,ota_0,,1M\nota_2,app,ota_2,,1M").map(\.kind)
                == [.otaSlotsNotContiguous])
        #expect(try validate("otadata,data,ota,,0x2000\na,app,ota_0,,1M\nb,app,ota_0,,1M").map(\.kind) == [.duplicateAppSubtype])
        // gen_esp32part's "name is a keyword of another kind" warning.
        #expect(try validate("app,data,nvs,,0x6000\nfactory,app,factory,,1M").map(\.kind) == [.nameLooksLikeKeyword])
        #expect(try validate("phy,data,nvs,,0x6000\nfactory,app,factory,,1M").map(\.kind) == [.nameLooksLikeKeyword])
        #expect(try validate("phy,data,phy,,0x1000\nfactory,app,factory,,1M").isEmpty)
    }

    @Test func primaryBootloaderAndTableEntriesTakeTheirPlace() throws {
        let b = try build("""
            bootloader, bootloader, primary, N/A, N/A
            pt, partition_table, primary, N/A, N/A
            factory, app, factory, , 1M
            """, .init(chip: .esp32s3))
        #expect(b.table.entries.map(\.offset) == [0x0, 0x8000, 0x10000])
        #expect(b.table.entries.map(\.size) == [0x8000, 0x1000, 0x100000])
    }

    @Test func tooManyEntries() throws {
        func table(_ n: Int) -> String { (0..<n).map { "p\($0),data,spiffs,,4K" }.joined(separator: "\n") + "\nf,app,factory,,1M" }
        #expect(try build(table(93)).binary.count == 0xC00) // 94 entries + MD5 = 95 × 32 < 0xC00
        #expect(throws: PartitionTableError.tooLarge(entries: 95, bytes: 96 * 32, max: 0xC00)) { try build(table(94)) }
        #expect(try build(table(94), .init(md5: false)).binary.count == 0xC00)
    }
}

@Suite struct BinaryParsingTests {
    @Test func badMD5IsReportedWithOffset() throws {
        var bin = try build(seedCSV).binary
        bin[0x30] ^= 0x01 // inside the nvs entry's label padding
        let e = expectError { _ = try PartitionTable.parse(binary: bin) }
        guard case let .md5Mismatch(offset, _, stored)? = e else {
            Issue.record("expected md5Mismatch, got \(String(describing: e))"); return
        }
        #expect(offset == 0xE0)
        #expect(stored == "c9fa3d3185590dd0dc71b5448bb0214a")
        #expect(e?.diagnostic.offset == 0xE0)
        // Without checking, it parses.
        #expect(try PartitionTable.parse(binary: bin, verifyMD5: false).md5 == .unchecked)
    }

    @Test func badMagicIsReportedWithOffset() throws {
        var bin = try build(seedCSV).binary
        bin[0x40] = 0x12
        #expect(throws: PartitionTableError.badMagic(offset: 0x40, found: 0x5012)) { try PartitionTable.parse(binary: bin) }
        #expect(throws: PartitionTableError.truncatedEntry(offset: 32, length: 5)) {
            try PartitionTable.parse(binary: Array(bin[0..<37]))
        }
    }

    @Test func unknownFlagBitsWarn() throws {
        var entry = PartitionTable.encode(PartitionEntry(name: "x", type: 1, subtype: 2, offset: 0x9000, size: 0x6000, flags: 0x11))
        entry += [UInt8](repeating: 0xFF, count: 32)
        let p = try PartitionTable.parse(binary: entry)
        #expect(p.warnings.map(\.kind) == [.unknownFlags, .noMD5])
        #expect(p.table.csv().contains("x,data,nvs,0x9000,24K,encrypted\n"))
    }

    @Test func randomBytesNeverCrash() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let valid = (try? build(seedCSV).binary) ?? []
        var parsedSome = 0
        for round in 0..<400 {
            var bytes: [UInt8]
            switch round % 4 {
            case 0: // pure noise
                bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: // valid magic, noise after
                bytes = (0..<Int.random(in: 0...130, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if bytes.count >= 2 { bytes[0] = 0xAA; bytes[1] = 0x50 }
            case 2: // a valid table, truncated
                bytes = Array(valid.prefix(Int.random(in: 0...valid.count, using: &rng)))
            default: // a valid table with flipped bytes
                bytes = valid
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    bytes[Int.random(in: 0..<0x120, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            if let p = try? PartitionTable.parse(binary: bytes) {
                parsedSome += 1
                _ = p.table.csv()
                _ = try? p.table.validate()
            }
            _ = try? Otadata.parse(bytes + [UInt8](repeating: 0xFF, count: Int.random(in: 0...0x1100, using: &rng)))
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? PartitionTable.parse(csv: text)
        }
        #expect(parsedSome > 0, "seed \(seed)")
    }

    @Test func randomCSVTablesRoundTrip() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dataSubtypes = ["nvs", "phy", "coredump", "spiffs", "fat", "littlefs", "undefined", "0x40"]
        for _ in 0..<40 {
            var lines = ["otadata, data, ota, , 0x2000"]
            let apps = Int.random(in: 1...4, using: &rng)
            for i in 0..<apps { lines.append("ota_\(i), app, ota_\(i), , \(Int.random(in: 1...16, using: &rng) * 64)K") }
            for i in 0..<Int.random(in: 0...8, using: &rng) {
                let sub = dataSubtypes.randomElement(using: &rng) ?? "nvs"
                let size = sub == "nvs" ? Int.random(in: 3...40, using: &rng) * 4 : Int.random(in: 1...40, using: &rng) * 4
                let flags = ["", "readonly", sub == "nvs" || sub == "coredump" ? "" : "encrypted"].randomElement(using: &rng) ?? ""
                lines.append("d\(i), data, \(sub), , \(size)K, \(sub == "coredump" ? "" : flags)")
            }
            lines.shuffle(using: &rng)
            let csv = lines.joined(separator: "\n")
            let b = try build(csv)
            let back = try PartitionTable.parse(binary: b.binary)
            #expect(back.table.entries == b.table.entries, "seed \(seed)\n\(csv)")
            #expect(try build(back.table.csv()).binary == b.binary, "seed \(seed)\n\(csv)")
        }
    }
}
