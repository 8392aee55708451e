import ESPCore
import Foundation
import ImageFormat
import TestSupport

/// Facts `esptool image-info` prints about an image.
struct OracleImageInfo {
    struct Segment: Equatable { var length: Int; var load: UInt32; var fileOffset: Int; var types: String }
    var segmentCount: Int?
    var flashSize: String?
    var flashFreq: String?
    var flashMode: String?
    var segments: [Segment] = []
    var checksumValid: Bool?
    /// nil when "Not appended"/absent.
    var hashValid: Bool?
    var projectName: String?
    var elfSHA256: String?
    var bootloaderIDF: String?
}

func oracleImageInfo(_ path: String) throws -> OracleImageInfo {
    let r = try Oracle.run("esptool", ["image-info", path])
    guard r.status == 0 else { throw TestSupportError.missing("esptool image-info failed for \(path): \(r.err)\(r.out)") }
    var info = OracleImageInfo()
    var section = ""
    for raw in r.out.split(separator: "\n", omittingEmptySubsequences: false) {
        let line = raw.trimmingCharacters(in: .whitespaces)
        if raw.hasPrefix("=====") { continue }
        if !line.contains(":") && (line.hasSuffix("Information") || line.hasSuffix("Header") || line.hasSuffix("Footer")) {
            section = line
        }
        func value(_ key: String) -> String? {
            line.hasPrefix(key) ? String(line.dropFirst(key.count)).trimmingCharacters(in: .whitespaces) : nil
        }
        if let v = value("Segments:") { info.segmentCount = Int(v) }
        if let v = value("Flash size:") { info.flashSize = v }
        if let v = value("Flash freq:") { info.flashFreq = v }
        if let v = value("Flash mode:") { info.flashMode = v }
        if let v = value("Checksum:") { info.checksumValid = v.hasSuffix("(valid)") }
        if let v = value("Validation hash:") { info.hashValid = v.hasSuffix("(valid)") }
        if let v = value("Project name:") { info.projectName = v }
        if let v = value("ELF file SHA256:") { info.elfSHA256 = v }
        if section.hasPrefix("Bootloader Information"), let v = value("ESP-IDF:") { info.bootloaderIDF = v }
        if section == "Segments Information", let f = line.first, f.isNumber {
            let cols = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: true)
            if cols.count >= 4, let len = Int(cols[1].dropFirst(2), radix: 16),
               let load = UInt32(cols[2].dropFirst(2), radix: 16), let off = Int(cols[3].dropFirst(2), radix: 16) {
                info.segments.append(.init(length: len, load: load, fileOffset: off,
                                           types: cols.count > 4 ? cols[4].trimmingCharacters(in: .whitespaces) : ""))
            }
        }
    }
    return info
}

func temporaryFile(_ dir: URL, _ name: String, _ bytes: [UInt8]) throws -> String {
    let url = dir.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url.path
}

func readFile(_ path: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else { throw TestSupportError.missing(path) }
    return [UInt8](d)
}

/// Image fixtures (files that are ESP images) and fixtures that are not images.
let imageFixtures = [
    "images/bootloader_esp32.bin", "images/bootloader_esp32_v5_2.bin",
    "secure/bootloader.bin", "secure/bootloader_unsigned_v2.bin", "secure/bootloader_signed_v2_rsa.bin",
    "secure/bootloader_signed_v2_ecdsa256.bin", "secure/bootloader_signed_v2_ecdsa384.bin",
    "secure/bootloader_multi_signed_v2_rsa.bin", "secure/hello-world-signed.bin",
]
let nonImageFixtures = [
    "images/partitions_singleapp.bin", "secure/bootloader-encrypted.bin", "secure/bootloader-encrypted-aes-xts.bin",
    "secure/hello-world-signed-encrypted.bin", "secure/256bit_key.bin", "secure/rsa_public_key_digest.bin",
]
let elfFixtures = ["esp32-app-template", "esp32-bootloader", "esp32-zephyr"]
