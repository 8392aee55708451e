import Foundation
import Testing
import TestSupport
@testable import Manifest

/// The manifest's TOML subset against Python's `tomllib` (the oracle venv's Python 3.11): seeded
/// random documents inside the subset, and the same documents mutated at random.
/// - a document the generator writes (inside the subset) is accepted by both, with equal values;
/// - whatever espforge accepts, tomllib accepts with the same values (espforge may reject valid
///   TOML outside its subset: floats, dates, multi-line strings, integers beyond 64 bits).
/// Replay a failure with `ESPFORGE_TEST_SEED=<seed>`.
@Suite("TOML subset vs Python tomllib", .enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
struct TOMLDifferentialTests {
    static let script = """
        import sys, json, tomllib
        def tag(v):
            if isinstance(v, bool): return "b:" + ("1" if v else "0")
            if isinstance(v, int): return "i:%d" % v
            if isinstance(v, str): return "s:" + v
            if isinstance(v, list): return [tag(x) for x in v]
            if isinstance(v, dict): return {k: tag(x) for k, x in v.items()}
            return "?:" + type(v).__name__
        out = []
        for doc in json.load(sys.stdin):
            try: out.append({"ok": True, "v": tag(tomllib.loads(doc))})
            except Exception as e: out.append({"ok": False, "e": str(e)})
        print(json.dumps(out))
        """

    @Test func randomDocumentsAgreeWithTomllib() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        var docs: [String] = []
        for _ in 0..<250 {
            var g = TOMLGenerator(rng: &rng)
            docs.append(g.document())
        }
        var mutated: [String] = []
        for doc in docs.prefix(250) { mutated.append(TOMLGenerator.mutate(doc, rng: &rng)) }
        let all = docs + mutated
        let python = try PythonOracle.run(script: Self.script, cases: all)
        var swiftAccepted = 0, mutatedAgreedRejects = 0
        for (i, doc) in all.enumerated() {
            let py = python[i] as? [String: Any] ?? [:]
            let pyOK = py["ok"] as? Bool ?? false
            let swift = try? TOML.parse(doc)
            if i < docs.count {
                #expect(pyOK, "seed \(seed): tomllib rejects a generated document (\(py["e"] ?? "")):\n\(doc)")
                #expect(swift != nil, "seed \(seed): espforge rejects a generated document:\n\(doc)")
            }
            if let swift {
                swiftAccepted += 1
                #expect(pyOK, "seed \(seed): espforge accepts what tomllib rejects (\(py["e"] ?? "")):\n\(doc)")
                if pyOK {
                    #expect(Self.same(.table(swift), py["v"] as Any),
                            "seed \(seed): values differ:\n\(doc)\ntomllib: \(py["v"] ?? "")")
                }
            } else if !pyOK {
                mutatedAgreedRejects += 1
            }
        }
        // Not vacuous: the mutations produce both accepted and rejected documents.
        #expect(swiftAccepted > docs.count && mutatedAgreedRejects > 20, "seed \(seed)")
    }

    static func same(_ v: TOMLValue, _ py: Any) -> Bool {
        switch v {
        case .string(let s): return py as? String == "s:" + s
        case .integer(let n): return py as? String == "i:\(n)"
        case .boolean(let b): return py as? String == (b ? "b:1" : "b:0")
        case .array(let items):
            guard let list = py as? [Any], list.count == items.count else { return false }
            return zip(items, list).allSatisfy { same($0.value, $1) }
        case .table(let t):
            guard let dict = py as? [String: Any], dict.count == t.keys.count else { return false }
            return t.keys.allSatisfy { k in dict[k].map { same(t[k]!.value, $0) } ?? false }
        }
    }
}

/// Documents inside espforge's TOML subset (keys unique by construction).
struct TOMLGenerator {
    var rng: SeededRandom
    var counter = 0

    init(rng: inout SeededRandom) {
        self.rng = SeededRandom(seed: rng.next())
    }

    mutating func pick<T>(_ xs: [T]) -> T { xs[Int.random(in: 0..<xs.count, using: &rng)] }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    mutating func bareName() -> String {
        counter += 1
        let stem = pick(["a", "chip", "flash_size", "key-1", "X", "_u", "9lives", "images", "nvs"])
        return stem + String(counter)
    }

    mutating func key() -> String {
        let name = bareName()
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: return "\"" + name + " q\\t" + pick(["é", "\\u00e9", "\\\"", "", "ø"]) + "\""
        case 1: return "'" + name + " lit'"
        default: return name
        }
    }

    mutating func stringValue() -> String {
        if chance(0.25) { return "'" + pick(["C:\\path\\x", "no \"escapes\" here", "", "tab\there"]) + "'" }
        var s = "\""
        for _ in 0..<Int.random(in: 0...8, using: &rng) {
            s += pick(["a", "Z", " ", "é", "€", "😀", "\\n", "\\t", "\\\"", "\\\\", "\\u00e9", "\\U0001F600", "\\b", "\\f", "\\r", "#", "'", "=", ","])
        }
        return s + "\""
    }

    mutating func integerValue() -> String {
        switch Int.random(in: 0..<7, using: &rng) {
        case 0: return String(Int.random(in: -1_000_000...1_000_000, using: &rng))
        case 1: return "+" + String(Int.random(in: 0...99_999, using: &rng))
        case 2: return "0x" + String(Int.random(in: 0...0xFFFF_FFFF, using: &rng), radix: 16, uppercase: chance(0.5))
        case 3: return "0o" + String(Int.random(in: 0...0o7777, using: &rng), radix: 8)
        case 4: return "0b" + String(Int.random(in: 0...255, using: &rng), radix: 2)
        case 5: return "1_000_" + String(format: "%03d", Int.random(in: 0...999, using: &rng))
        default: return pick(["0", "-0", "+0", "9223372036854775807", "-9223372036854775808", "0xdead_beef"])
        }
    }

    mutating func value(depth: Int = 0) -> String {
        let r = Int.random(in: 0..<(depth < 2 ? 6 : 4), using: &rng)
        switch r {
        case 0: return stringValue()
        case 1: return integerValue()
        case 2: return pick(["true", "false"])
        case 3: return stringValue()
        case 4:
            var items: [String] = []
            for _ in 0..<Int.random(in: 0...3, using: &rng) { items.append(value(depth: depth + 1)) }
            let sep = pick([", ", ",", " ,\n  ", ",\n# comment\n"])
            return "[" + items.joined(separator: sep) + (chance(0.3) && !items.isEmpty ? "," : "") + "]"
        default:
            var pairs: [String] = []
            for _ in 0..<Int.random(in: 0...3, using: &rng) { pairs.append(key() + " = " + value(depth: depth + 1)) }
            return "{" + pairs.joined(separator: ", ") + "}"
        }
    }

    mutating func pairs() -> String {
        var out = ""
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            let k = chance(0.2) ? bareName() + "." + key() : key()
            out += k + pick([" = ", "=", " =\t"]) + value() + (chance(0.2) ? "  # note" : "") + "\n"
            if chance(0.15) { out += pick(["\n", "# comment line\n", "   \n"]) }
        }
        return out
    }

    mutating func document() -> String {
        var doc = chance(0.3) ? "# espforge.toml\nversion = 1\n" : ""
        doc += pairs()
        for _ in 0..<Int.random(in: 0...3, using: &rng) {
            if chance(0.3) {
                let name = bareName()
                for _ in 0..<Int.random(in: 1...2, using: &rng) { doc += "\n[[\(name)]]\n" + pairs() }
            } else {
                doc += "\n[" + (chance(0.3) ? bareName() + "." : "") + key() + "]\n" + pairs()
            }
        }
        return doc
    }

    /// One to three random edits: insert a TOML-significant character, delete, or duplicate a line.
    static func mutate(_ doc: String, rng: inout SeededRandom) -> String {
        var chars = Array(doc.unicodeScalars)
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            let at = chars.isEmpty ? 0 : Int.random(in: 0..<chars.count, using: &rng)
            switch Int.random(in: 0..<4, using: &rng) {
            case 0, 1:
                let pool: [Unicode.Scalar] = ["\"", "'", "=", "[", "]", "{", "}", ",", ".", "#", "\n", " ", "\\", "0", "x", "_", "+", "-", "e", "1", ":", "\t", "\u{7}"]
                chars.insert(pool[Int.random(in: 0..<pool.count, using: &rng)], at: at)
            case 2:
                if !chars.isEmpty { chars.remove(at: at) }
            default:
                let lines = String(String.UnicodeScalarView(chars)).split(separator: "\n", omittingEmptySubsequences: false)
                if let line = lines.randomElement(using: &rng) {
                    chars = Array((String(String.UnicodeScalarView(chars)) + "\n" + line).unicodeScalars)
                }
            }
        }
        return String(String.UnicodeScalarView(chars))
    }
}
