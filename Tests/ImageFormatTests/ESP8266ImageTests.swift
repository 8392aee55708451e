import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

/// Builds an ESP8266 image by hand: version 1 (`0xE9`) or version 2 (`0xEA` + IROM + second header).
func esp8266Image(version: Int, mode: UInt8 = 2, sizeFreq: UInt8 = 0x40, entry: UInt32 = 0x4010_0004,
                  segments: [(UInt32, [UInt8])], irom: [UInt8] = [], corruptChecksum: Bool = false) -> [UInt8] {
    var out: [UInt8] = []
    func header(_ magic: UInt8, _ count: Int) {
        out += [magic, UInt8(count), mode, sizeFreq]
        out.appendLE(entry)
    }
    if version == 2 {
        header(0xEA, 4)
        out.appendLE(UInt32(0)); out.appendLE(UInt32(irom.count)); out += irom
    }
    header(0xE9, segments.count)
    var checksum: UInt8 = 0xEF
    for (addr, data) in segments {
        out.appendLE(addr); out.appendLE(UInt32(data.count)); out += data
        for b in data { checksum ^= b }
    }
    while out.count % 16 != 15 { out.append(0) }
    out.append(corruptChecksum ? checksum ^ 0x5A : checksum)
    return out
}

/// A version-1 image whose first segment length (byte 12) is no ESP32-family chip id, as real ones are.
let esp8266Cases: [(String, [UInt8])] = [
    ("v1", esp8266Image(version: 1, segments: [(0x4010_0000, Array(0..<0x18)), (0x3FFE_8000, Array(repeating: 0xA5, count: 0x24))])),
    ("v1 bad checksum", esp8266Image(version: 1, sizeFreq: 0x9F, segments: [(0x4010_0000, Array(repeating: 7, count: 0x2C))], corruptChecksum: true)),
    ("v2", esp8266Image(version: 2, mode: 0, sizeFreq: 0x21, segments: [(0x4010_0000, Array(repeating: 3, count: 0x1C)), (0x3FFE_8000, [1, 2, 3, 4])],
                        irom: Array(repeating: 0x11, count: 0x30))),
]

@Suite("ESP8266 images")
struct ESP8266ImageTests {
    @Test("image info recognises ESP8266 images and agrees with esptool image-info",
          .enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: esp8266Cases.map(\.0))
    func agreesWithEsptool(_ name: String) throws {
        let bytes = try #require(esp8266Cases.first { $0.0 == name }?.1)
        let dir = try TestEnvironment.temporaryDirectory("esp8266")
        let path = try temporaryFile(dir, name.replacingOccurrences(of: " ", with: "_") + ".bin", bytes)
        let o = try oracleImageFields(path)
        let r = try Espforge.run(["image", "info", "--json", path])
        try #require(r.status == 0, "\(r.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        #expect(json["chip"] as? String == "ESP8266")
        #expect(o["Image Header/Image version"] == (json["imageVersion"] as? Int).map(String.init))
        #expect(o["Image Header/Segments"] == (json["segmentCount"] as? Int).map(String.init))
        #expect(o["Image Header/Flash size"] == json["flashSize"] as? String)
        #expect(o["Image Header/Flash freq"] == json["flashFrequency"] as? String)
        #expect(o["Image Header/Flash mode"] == json["flashMode"] as? String)
        #expect(o["Image Header/Entry point"].flatMap { Int($0.dropFirst(2), radix: 16) }
                == (json["entryPoint"] as? String).flatMap { Int($0.dropFirst(2), radix: 16) })
        let segs = try #require(json["segments"] as? [[String: Any]])
        try #require(segs.count == o.segments.count)
        for (theirs, mine) in zip(o.segments, segs) {
            #expect(theirs.length == mine["length"] as? Int)
            #expect(Int(theirs.load) == (mine["loadAddress"] as? String).flatMap { Int($0.dropFirst(2), radix: 16) })
            #expect(theirs.fileOffset == mine["fileOffset"] as? Int)
            #expect(theirs.types == (mine["memoryTypes"] as? [String])?.joined(separator: ", "))
        }
        let checksum = o["Image Footer/Checksum"] ?? ""
        #expect(checksum.hasPrefix(json["storedChecksum"] as? String ?? "?"))
        #expect(checksum.hasSuffix("(valid)") == (json["checksumValid"] as? Bool))

        let text = try Espforge.run(["image", "info", path])
        #expect(text.status == 0 && text.out.contains("Chip:            ESP8266 (image version"), "\(text.out)\(text.err)")
        #expect(!text.out.contains("corrupt") && !text.err.contains("ESP32 image"))
    }

    @Test("ESP8266 images are refused by the ESP32-family reader with a clear message")
    func refusedElsewhere() throws {
        for (name, bytes) in esp8266Cases {
            #expect(ESP8266Image.detectionReason(bytes) != nil, "\(name)")
            do {
                _ = try ESPImage(bytes)
                Issue.record("\(name): parsed as an ESP32-family image")
            } catch {
                guard case .esp8266Image = error else { Issue.record("\(name): \(error)"); continue }
                #expect(error.diagnostic.message.contains("ESP8266 image"))
            }
        }
    }

    @Test("ESP32-family images are not taken for ESP8266 ones", .enabled(if: TestEnvironment.fixturesOrCI, "fixtures missing (../shared)"),
          arguments: chipFixtureDirectories.map(\.1))
    func notESP8266(_ dir: String) throws {
        for name in ["bootloader.bin", "hello_world.bin"] {
            let bytes = try TestEnvironment.fixtureBytes("chips/\(dir)/\(name)")
            #expect(ESP8266Image.detectionReason(bytes) == nil)
            guard case .esp32Family = try AnyESPImage.parse(bytes) else { Issue.record("\(dir)/\(name)"); continue }
        }
    }
}
