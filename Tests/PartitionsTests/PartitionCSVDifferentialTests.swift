import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Partitions

/// The partition CSV's line and field splitting against Python, with the rules ESP-IDF's
/// gen_esp32part applies (it does not use the `csv` module): a line is stripped of white space and
/// skipped when empty or starting with `#`; fields are split at every `,` (quotes mean nothing)
/// and stripped (`str.strip`). Lines end at `\n`, `\r\n` or `\r`. Seeded random tables full of
/// spaces, tabs, Unicode white space, quotes and comment marks. Replay with `ESPFORGE_TEST_SEED=<seed>`.
@Suite("partition CSV splitting vs Python", .enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
struct PartitionCSVDifferentialTests {
    static let script = """
        import sys, json, re
        out = []
        for text in json.load(sys.stdin):
            rows = []
            for line in re.split(r'\\r\\n|\\r|\\n', text):
                line = line.strip()
                if not line or line.startswith('#'):
                    continue
                rows.append([f.strip() for f in line.split(',')])
            out.append(rows)
        print(json.dumps(out))
        """

    static func randomTable(_ rng: inout SeededRandom) -> String {
        let pieces = ["nvs", "data", "app", "factory", "0x9000", "1M", ",", ",,", " ", "  ", "\t", "\n", "\r\n", "\r",
                      "#", "# Name, Type\n", "\"", "'", "é", "\u{A0}", "\u{2003}", "\u{1F}", "ota_0", "encrypted", "  ,  "]
        var s = ""
        for _ in 0..<Int.random(in: 0...30, using: &rng) { s += pieces[Int.random(in: 0..<pieces.count, using: &rng)] }
        return s
    }

    @Test func randomTablesSplitLikeGenEsp32part() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let tables = (0..<400).map { _ in Self.randomTable(&rng) }
        let python = try PythonOracle.run(script: Self.script, cases: tables)
        var rowsSeen = 0
        for (i, text) in tables.enumerated() {
            var swift: [[String]] = []
            for (n, raw) in TextLines.split(Substring(text)).enumerated() {
                let trimmed = raw.trimmingCharacters()
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                let fields = try PartitionTable.splitFields(raw, line: n + 1, environment: [:])
                // splitFields pads to the six CSV columns; Python's split does not.
                let count = raw.split(separator: ",", omittingEmptySubsequences: false).count
                swift.append(fields.prefix(count).map(\.text))
            }
            let py = python[i] as? [[String]] ?? []
            #expect(swift == py, "seed \(seed): \(String(reflecting: text))\nespforge: \(swift)\npython:   \(py)")
            rowsSeen += py.count
        }
        #expect(rowsSeen > 400, "seed \(seed): the generator must produce rows")
    }
}
