import Crypto
import EFuse
import ESPCore
import Foundation
import TestSupport

/// The golden recordings of the real ESP32 ECO3 ROM and ESP-IDF v5.2.2 bootloaders
/// (`../shared/golden/qemu-esp32`, or `$ESPFORGE_SHARED/golden/qemu-esp32`).
enum GoldenCorpus {
    static var root: URL { TestEnvironment.sharedDir.appendingPathComponent("golden/qemu-esp32") }
    static var available: Bool { FileManager.default.fileExists(atPath: root.appendingPathComponent("README.md").path) }
    /// Run when the corpus is there, and always under CI (where a missing corpus must fail).
    static var availableOrCI: Bool { available || TestEnvironment.isCI }

    static func bytes(_ relative: String) throws -> [UInt8] {
        let url = root.appendingPathComponent(relative)
        guard let d = FileManager.default.contents(atPath: url.path) else {
            throw TestSupportError.missing("golden corpus file \(url.path) (is ../shared beside the package?)")
        }
        return [UInt8](d)
    }

    static func text(_ relative: String) throws -> String { String(decoding: try bytes(relative), as: UTF8.self) }

    /// The B* scenario folders in the corpus.
    static func scenarioFolders() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.path).filter { $0.hasPrefix("B") }.sorted()
    }

    static func sha256(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    /// A 4 MiB flash image: 0xFF except the given regions.
    static func flashImage(_ regions: [(Int, [UInt8])], size: Int = 4 << 20) -> [UInt8] {
        var f = [UInt8](repeating: 0xFF, count: size)
        for (a, d) in regions { f.replaceSubrange(a..<(a + d.count), with: d) }
        return f
    }
}

/// What a scenario README states: the flash image's sha256 and the eFuse words before boot.
struct ScenarioReadme {
    var flashSHA256: String
    /// 31 words: BLK0 (7), BLK1..BLK3 (8 each), in the 124-byte eFuse-file order.
    var efuseWords: [UInt32]

    init(_ text: String) throws {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let flashLine = lines.first(where: { $0.contains("flash image") && $0.contains("sha256") }),
              let sha = flashLine.split(separator: "`").dropFirst().first.map(String.init), sha.count == 64 else {
            throw TestSupportError.missing("flash image sha256 line in the scenario README")
        }
        flashSHA256 = sha
        guard let before = lines.firstIndex(where: { $0.hasPrefix("Before boot") }) else {
            throw TestSupportError.missing("'Before boot' eFuse words in the scenario README")
        }
        var words: [UInt32] = []
        for l in lines[before...] {
            if words.count == 31 { break }
            guard l.hasPrefix("BLK") else { continue }
            let parts = l.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            for w in parts[1].split(separator: " ") {
                guard let v = UInt32(w, radix: 16) else { throw TestSupportError.missing("eFuse word '\(w)' in '\(l)'") }
                words.append(v)
            }
        }
        guard words.count == 31 else { throw TestSupportError.missing("31 eFuse words in the README (found \(words.count))") }
        efuseWords = words
    }

    var efuseBytes: [UInt8] {
        var out: [UInt8] = []
        for w in efuseWords { out.appendLE(w) }
        return out
    }
}

/// The corpus normalisation (README: ANSI colour codes and CR stripped, `X (nnn)` → `X (T)`,
/// app output removed, cut before the second ROM banner), applied to both logs alike. App output
/// is `Hello world!` and, where the capture was cut mid-line, a leading part of it.
enum LogNormaliser {
    static let appOutput = "Hello world!"

    static func lines(_ text: String) -> [String] {
        var out: [String] = []
        var banners = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var l = String(raw).replacingOccurrences(of: "\r", with: "")
            l = l.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression)
            l = l.replacingOccurrences(of: #"^([IWEDV]) \(\d+\)"#, with: "$1 (T)", options: .regularExpression)
            if l.hasPrefix("ets ") && l.contains(":") && !l.hasPrefix("ets_main") {
                banners += 1
                if banners == 2 { break }
            }
            if !l.isEmpty, appOutput.hasPrefix(l) { continue }
            out.append(l)
        }
        while out.last == "" { out.removeLast() }
        return out
    }
}
