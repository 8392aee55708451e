import Crypto
import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

/// Every field `esptool image-info` (5.6.0) prints, as text: `"<section>/<key>"` → value, plus the
/// segment table. Sections are named without the chip prefix ("Image Header", "Application Information").
struct OracleImageFields {
    var fields: [String: String] = [:]
    var segments: [OracleImageInfo.Segment] = []
    subscript(_ key: String) -> String? { fields[key] }
}

func oracleImageFields(_ path: String) throws -> OracleImageFields {
    let r = try Oracle.run("esptool", ["image-info", path])
    guard r.status == 0 else { throw TestSupportError.missing("esptool image-info failed for \(path): \(r.err)\(r.out)") }
    var out = OracleImageFields()
    var section = ""
    for raw in r.out.split(separator: "\n", omittingEmptySubsequences: false) {
        let line = raw.trimmingCharacters(in: .whitespaces)
        if line.hasPrefix("=====") || line.isEmpty { continue }
        if !line.contains(":") {
            if line.hasSuffix("Information") || line.hasSuffix("Header") || line.hasSuffix("Footer") {
                for suffix in ["Extended Image Header", "Image Header", "Image Footer", "Segments Information",
                               "Application Information", "Bootloader Information"] where line.hasSuffix(suffix) {
                    section = suffix
                    break
                }
                continue
            }
        }
        if section == "Segments Information" {
            let cols = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
            if cols.count >= 4, cols[0].allSatisfy(\.isNumber), let len = Int(cols[1].dropFirst(2), radix: 16),
               let load = UInt32(cols[2].dropFirst(2), radix: 16), let off = Int(cols[3].dropFirst(2), radix: 16) {
                out.segments.append(.init(length: len, load: load, fileOffset: off,
                                          types: cols.count > 4 ? cols[4].trimmingCharacters(in: .whitespaces) : ""))
            }
            continue
        }
        guard let colon = line.firstIndex(of: ":") else { continue }
        let key = String(line[..<colon])
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        out.fields[section.isEmpty ? key : "\(section)/\(key)"] = value
    }
    return out
}

/// One image to compare: a real ESP-IDF v5.2.2 build in ../shared, or one generated from a real one.
struct ChipImageCase: CustomTestStringConvertible, Sendable {
    var chip: String
    var name: String
    /// Path relative to ../shared/fixtures/espressif.
    var fixture: String
    /// For generated cases: chip id and RAM window (base, size) to move RAM segments into.
    var retarget: (chipID: UInt16, ramBase: UInt32, ramSize: UInt32)?
    var testDescription: String { "\(chip) \(name)" + (retarget == nil ? "" : " (generated)") }
}

let chipFixtureDirectories = [
    ("esp32", "ESP32"), ("esp32s2", "ESP32_S2"), ("esp32s3", "ESP32_S3"), ("esp32c2", "ESP32_C2"),
    ("esp32c3", "ESP32_C3"), ("esp32c5", "ESP32_C5"), ("esp32c6", "ESP32_C6"), ("esp32h2", "ESP32_H2"),
    ("esp32p4", "ESP32_P4"),
]

/// Real builds for nine chips; ESP32-C61 and ESP32-H4 (no real build in ../shared) from the ESP32-C6
/// build with the chip id changed, RAM segments moved into the chip's DRAM window and the SHA-256
/// recomputed.
let chipImageCases: [ChipImageCase] =
    chipFixtureDirectories.flatMap { chip, dir in
        ["bootloader.bin", "hello_world.bin"].map { ChipImageCase(chip: chip, name: $0, fixture: "chips/\(dir)/\($0)") }
    } + ["bootloader.bin", "hello_world.bin"].flatMap { name in [
        ChipImageCase(chip: "esp32c61", name: name, fixture: "chips/ESP32_C6/\(name)", retarget: (20, 0x4080_0000, 0x6_0000)),
        ChipImageCase(chip: "esp32h4", name: name, fixture: "chips/ESP32_C6/\(name)", retarget: (28, 0x4081_0000, 0x5_0000)),
    ] }

/// Rewrites an ESP32-C6 image for another RISC-V chip (see ``chipImageCases``).
func retargetedImage(_ bytes: [UInt8], chipID: UInt16, ramBase: UInt32, ramSize: UInt32) throws -> [UInt8] {
    let parsed = try ESPImage(bytes)
    var out = bytes
    out.storeLE(chipID, at: 12)
    for s in parsed.segments where (0x4080_0000..<0x4088_0000).contains(s.loadAddress) {
        out.storeLE(ramBase + (s.loadAddress - 0x4080_0000) % ramSize, at: s.headerOffset)
    }
    if parsed.hashAppended {
        let end = parsed.checksumOffset + 1
        out.replaceSubrange(end..<(end + 32), with: Array(SHA256.hash(data: out[0..<end])))
    }
    return out
}

@Suite("image info per chip against esptool image-info")
struct ChipImageTableTests {
    @Test("every chip in the image table has its own facts and a distinct chip id")
    func chipTable() {
        let names = ChipSpec.imageChips.map(\.name)
        #expect(names == ["esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32c61",
                          "esp32h2", "esp32h4", "esp32p4"])
        #expect(Set(ChipSpec.imageChips.map(\.imageChipID)).count == 11)
        #expect(ChipSpec.all.allSatisfy { c in ChipSpec.imageChips.contains { $0.name == c.name } })
        // esptool lists 80m before 40m for the C6, both code 0: the first name wins, as there.
        #expect(ChipSpec.esp32c6.flashFrequency(code: 0)?.name == "80m")
        #expect(ChipSpec.esp32h2.flashFrequency(code: 0xF)?.name == "48m")
        #expect(ChipSpec.esp32p4.bootloaderOffset == 0x2000 && ChipSpec.esp32s2.bootloaderOffset == 0x1000)
    }

    @Test("image info --json and text agree with esptool image-info on every field",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: chipImageCases)
    func agreesWithEsptool(_ c: ChipImageCase) throws {
        var path = TestEnvironment.fixture(c.fixture).path
        if let t = c.retarget {
            let dir = try TestEnvironment.temporaryDirectory("chip-images")
            let bytes = try retargetedImage(try TestEnvironment.fixtureBytes(c.fixture), chipID: t.chipID,
                                            ramBase: t.ramBase, ramSize: t.ramSize)
            path = try temporaryFile(dir, "\(c.chip)-\(c.name)", bytes)
        }
        let o = try oracleImageFields(path)
        let r = try Espforge.run(["image", "info", "--json", path])
        try #require(r.status == 0, "\(r.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let header = try #require(json["header"] as? [String: Any])
        let ext = try #require(json["extendedHeader"] as? [String: Any])
        let integrity = try #require(json["integrity"] as? [String: Any])
        let segments = try #require(json["segments"] as? [[String: Any]])
        func int(_ s: String?) -> Int? {
            guard let s = s?.split(separator: " ").first.map(String.init) else { return nil }
            return s.hasPrefix("0x") ? Int(s.dropFirst(2), radix: 16) : Int(s)
        }
        let spec = try #require(ChipSpec.named(c.chip, in: ChipSpec.imageChips))

        // Header.
        #expect(o["Image Header/Segments"].flatMap(Int.init) == header["segmentCount"] as? Int)
        #expect(int(o["Image Header/Entry point"]) == int(header["entryPoint"] as? String))
        #expect(o["Image Header/Flash size"] == header["flashSize"] as? String)
        #expect(o["Image Header/Flash freq"] == header["flashFrequency"] as? String)
        #expect(o["Image Header/Flash mode"] == header["flashMode"] as? String)
        // Extended header.
        #expect(int(o["Extended Image Header/WP pin"]) == int(ext["wpPin"] as? String))
        let drives = (o["Extended Image Header/Flash pins drive settings"] ?? "").split(separator: ",").compactMap {
            int($0.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) })
        }
        #expect(drives == ext["spiPinDrive"] as? [Int])
        #expect(o["Extended Image Header/Chip ID"] == "\(spec.imageChipID) (\(spec.displayName))")
        #expect(ext["chipID"] as? Int == Int(spec.imageChipID) && ext["chip"] as? String == spec.displayName)
        let minRev = o["Extended Image Header/Minimal chip revision"] ?? ""
        #expect(minRev == "\(ext["minRevisionFull"] as? String ?? "?"), (legacy min_rev = \(ext["minRevision"] as? Int ?? -1))")
        let maxRev = ext["maxRevisionFull"] as? String ?? "?"
        #expect(o["Extended Image Header/Maximal chip revision"] == (maxRev.hasPrefix("unset") ? "v655.35" : maxRev))
        // Segments.
        try #require(o.segments.count == segments.count)
        for (theirs, mine) in zip(o.segments, segments) {
            #expect(theirs.length == mine["length"] as? Int)
            #expect(Int(theirs.load) == int(mine["loadAddress"] as? String))
            #expect(theirs.fileOffset == mine["fileOffset"] as? Int)
            #expect(theirs.types == (mine["memoryTypes"] as? [String])?.joined(separator: ", "), "segment at \(theirs.fileOffset)")
        }
        // Footer.
        let checksum = o["Image Footer/Checksum"] ?? ""
        #expect(int(checksum) == int(integrity["storedChecksum"] as? String))
        #expect(checksum.hasSuffix("(valid)") == (integrity["checksumValid"] as? Bool))
        if let hash = o["Image Footer/Validation hash"] {
            #expect(hash == "\(integrity["computedSHA256"] as? String ?? "?") (\(integrity["sha256Valid"] as? Bool == true ? "valid" : "invalid"))")
        } else {
            #expect(integrity["storedSHA256"] == nil)
        }
        // Descriptors.
        let app = json["appDescriptor"] as? [String: Any]
        #expect((o["Application Information/Project name"] != nil) == (app != nil))
        if let a = app {
            #expect(o["Application Information/Project name"] == a["projectName"] as? String)
            #expect(o["Application Information/App version"] == a["version"] as? String)
            #expect(o["Application Information/Compile time"] == "\(a["date"] as? String ?? "") \(a["time"] as? String ?? "")")
            #expect(o["Application Information/ELF file SHA256"] == a["elfSHA256"] as? String)
            #expect(o["Application Information/ESP-IDF"] == a["idfVersion"] as? String)
            func rev(_ k: String) -> String { (a[k] as? Int).map { "\($0 / 100).\($0 % 100)" } ?? "?" }
            #expect(o["Application Information/Minimal eFuse block revision"] == rev("minEfuseBlockRevisionFull"))
            #expect(o["Application Information/Maximal eFuse block revision"] == rev("maxEfuseBlockRevisionFull"))
            let log2 = a["mmuPageSizeLog2"] as? Int ?? 0
            #expect(o["Application Information/MMU page size"] == (log2 == 0 ? nil : "\((1 << log2) / 1024) KB"))
            #expect(o["Application Information/Secure version"] == (a["secureVersion"] as? Int).map(String.init))
        }
        let boot = json["bootloaderDescriptor"] as? [String: Any]
        #expect((o["Bootloader Information/ESP-IDF"] != nil) == (boot != nil))
        if let b = boot {
            #expect(o["Bootloader Information/Bootloader version"] == (b["version"] as? Int).map(String.init))
            #expect(o["Bootloader Information/ESP-IDF"] == b["idfVersion"] as? String)
            #expect(o["Bootloader Information/Compile time"] == b["dateTime"] as? String)
        }
        #expect((json["warnings"] as? [String])?.isEmpty == true, "\(json["warnings"] ?? "")")

        // The text form names the same chip, flash parameters and memory types.
        let text = try Espforge.run(["image", "info", path])
        try #require(text.status == 0, "\(text.err)")
        #expect(text.out.contains("Chip:            \(spec.displayName) (chip id \(spec.imageChipID))"))
        #expect(text.out.contains("Flash size:      \(o["Image Header/Flash size"] ?? "?")\n"))
        #expect(text.out.contains("Flash frequency: \(o["Image Header/Flash freq"] ?? "?")\n"))
        #expect(text.out.contains("Flash mode:      \(o["Image Header/Flash mode"] ?? "?")\n"))
        for s in o.segments where !s.types.isEmpty {
            #expect(text.out.contains("  \(NumberParsing.hex(s.load, width: 8))  \(s.types)\n"), "\(s.types)")
        }
        if let p = o["Application Information/Project name"] { #expect(text.out.contains("Project name:   \(p)\n")) }
        #expect(!text.out.contains("unknown"))
    }
}
