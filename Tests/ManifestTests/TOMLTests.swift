import ESPCore
import Testing
import TestSupport
@testable import Manifest

@Suite("TOML subset parser")
struct TOMLTests {
    @Test func parsesTheSupportedSubset() throws {
        let text = """
            # comment line
            title = "espforge"   # trailing comment
            count = 1_000
            hex = 0xDEAD_beef
            oct = 0o755
            bin = 0b1010
            neg = -42
            plus = +7
            yes = true
            no = false
            lit = 'C:\\path\\no escapes'
            esc = "tab\\tquote\\"nl\\nuni\\u00e9"
            list = [1, 2,
              3, # comment inside
            ]
            nested = [["a"], []]
            inline = { a = 1, b.c = "x" }
            dotted.key = "v"
            "quoted key" = 1

            [chip]
            type = "esp32"

            [images.app]
            offset = 0x10000

            [[station]]
            name = "a"
            [[station]]
            name = "b"
            [station.extra]
            k = 1
            """
        let t = try TOML.parse(text)
        #expect(t["title"]?.value == .string("espforge"))
        #expect(t["count"]?.value == .integer(1000))
        #expect(t["hex"]?.value == .integer(0xDEADBEEF))
        #expect(t["oct"]?.value == .integer(0o755))
        #expect(t["bin"]?.value == .integer(10))
        #expect(t["neg"]?.value == .integer(-42))
        #expect(t["plus"]?.value == .integer(7))
        #expect(t["yes"]?.value == .boolean(true))
        #expect(t["no"]?.value == .boolean(false))
        #expect(t["lit"]?.value == .string("C:\\path\\no escapes"))
        #expect(t["esc"]?.value == .string("tab\tquote\"nl\nuni\u{e9}"))
        guard case .array(let list)? = t["list"]?.value else { Issue.record("list"); return }
        #expect(list.map(\.value) == [.integer(1), .integer(2), .integer(3)])
        #expect(list[2].position == TOMLPosition(line: 14, column: 3))
        guard case .table(let inline)? = t["inline"]?.value, case .table(let b)? = inline["b"]?.value else { Issue.record("inline"); return }
        #expect(inline["a"]?.value == .integer(1))
        #expect(b["c"]?.value == .string("x"))
        guard case .table(let dotted)? = t["dotted"]?.value else { Issue.record("dotted"); return }
        #expect(dotted["key"]?.value == .string("v"))
        #expect(t["quoted key"]?.value == .integer(1))
        #expect(t.keys.first == "title")
        guard case .table(let images)? = t["images"]?.value, case .table(let app)? = images["app"]?.value else { Issue.record("images"); return }
        #expect(app["offset"]?.value == .integer(0x10000))
        #expect(app["offset"]?.position == TOMLPosition(line: 25, column: 10))
        guard case .array(let stations)? = t["station"]?.value, stations.count == 2,
              case .table(let s1) = stations[1].value else { Issue.record("array of tables"); return }
        #expect(s1["name"]?.value == .string("b"))
        guard case .table(let extra)? = s1["extra"]?.value else { Issue.record("sub-table of array element"); return }
        #expect(extra["k"]?.value == .integer(1))
    }

    @Test func crlfLineEndingsAndEmptyInput() throws {
        let t = try TOML.parse("a = 1\r\nb = \"x\"\r\n")
        #expect(t["b"]?.value == .string("x"))
        #expect(try TOML.parse("").keys.isEmpty)
        #expect(try TOML.parse("\n# only a comment\n").keys.isEmpty)
    }

    /// (document, line, column, part of the message)
    static let invalid: [(String, Int, Int, String)] = [
        ("a = 1\na = 2", 2, 1, "defined twice"),
        ("a = 1.5", 1, 5, "floating-point"),
        ("a = 1e3", 1, 5, "floating-point"),
        ("d = 2024-01-01", 1, 5, "dates"),
        ("s = \"open", 1, 5, "unterminated string"),
        ("s = 'open\nx = 1", 1, 5, "unterminated string"),
        ("s = \"\"\"multi\"\"\"", 1, 5, "multi-line"),
        ("s = \"bad \\q\"", 1, 10, "invalid escape"),
        ("s = \"\\u+0e9\"", 1, 6, "escape"),   // a sign is no hex digit (found by the tomllib differential test, seed 3543400642998392844)
        ("x = 007", 1, 5, "leading zeros"),
        ("x = 0x", 1, 5, "malformed"),
        ("x = 1__0", 1, 5, "malformed"),
        ("x = -+0", 1, 5, "malformed"),   // found by the tomllib differential test (seed 369266940149509761)
        ("x = +-1", 1, 5, "malformed"),
        ("x = 99999999999999999999", 1, 5, "too large"),
        ("x = -0x10", 1, 5, "sign"),
        ("x = yes", 1, 5, "expected a value"),
        ("x = 1 2", 1, 7, "after the value"),
        ("x", 1, 2, "expected `=`"),
        ("= 1", 1, 1, "expected a key"),
        ("[a]\nx = 1\n[a]", 3, 1, "defined twice"),
        ("[a\nx = 1", 1, 3, "expected `]`"),
        ("a = 1\n[a]", 2, 2, "already defined"),
        ("arr = [1, 2", 1, 7, "unterminated array"),
        ("arr = [1 2]", 1, 10, "expected `,` or `]`"),
        ("t = { a = 1,\n b = 2 }", 1, 13, "expected a key"),
        ("t = { a = 1 }\n[t]", 2, 1, "defined twice"),
        ("[[a]]\n[a]", 2, 2, "already defined as an array"),
        ("a.b = 1\na.b.c = 2", 2, 3, "already defined"),
        ("x = \"a\u{01}b\"", 1, 7, "control character"),
    ]

    @Test(arguments: 0..<invalid.count)
    func rejectsWithLineAndColumn(_ index: Int) {
        let (doc, line, column, fragment) = Self.invalid[index]
        do {
            let t = try TOML.parse(doc)
            Issue.record("accepted invalid TOML \(doc.debugDescription): \(t.keys)")
        } catch {
            #expect(error.position == TOMLPosition(line: line, column: column), "\(doc.debugDescription): \(error.message) at \(error.position)")
            #expect(error.message.contains(fragment), "\(doc.debugDescription): \(error.message)")
            #expect(error.diagnostic.line == line)
        }
    }

    @Test func invalidUTF8IsAnErrorWithItsPosition() {
        let bytes: [UInt8] = Array("a = 1\nb = \"".utf8) + [0xFF, 0x22]
        #expect(throws: TOMLError.self) { try TOML.parse(bytes) }
        do { _ = try TOML.parse(bytes) } catch {
            #expect(error.position.line == 2)
            #expect(error.message.contains("UTF-8"))
        }
    }

    @Test func randomAndTruncatedInputNeverCrash() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let sample = Array("""
            version = 1
            [chip]
            type = "esp32"
            flash_size = "4MB"
            [images.app]
            file = "build/app.bin"
            offset = 0x10000
            list = [1, 'two', { a = true }]
            """.utf8)
        for cut in 0...sample.count {
            _ = try? TOML.parse(Array(sample[0..<cut]))
        }
        let alphabet = Array("[]{}=\"'#.,\n \t0x1_-+abc\\ue".utf8)
        for _ in 0..<300 {
            let n = Int.random(in: 0..<80, using: &rng)
            let bytes: [UInt8] = (0..<n).map { _ in
                Bool.random(using: &rng) ? alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] : UInt8.random(in: 0...255, using: &rng)
            }
            do { _ = try TOML.parse(bytes) } catch {
                #expect(error.position.line >= 1 && error.position.column >= 1, "seed \(seed)")
            }
        }
    }
}

@Suite("TOML nesting limit (issue 15: stack overflow on 20,000 `[`)")
struct TOMLNestingTests {
    func nestingError(_ text: String) -> TOMLError? {
        do { _ = try TOML.parse(text); return nil } catch { return error }
    }

    @Test func twentyThousandBracketsGiveAPositionedError() {
        let e = nestingError("title = 1\nx = " + String(repeating: "[", count: 20_000))
        #expect(e?.message.contains("nesting is deeper than 32 levels") == true, "\(String(describing: e))")
        // `x` is level 1; the bracket that would be level 33 is the 32nd, at column 4 + 32.
        #expect(e?.position == TOMLPosition(line: 2, column: 4 + TOML.maxDepth))
    }

    @Test func twentyThousandInlineTablesGiveAPositionedError() {
        let e = nestingError("x = " + String(repeating: "{a=", count: 20_000))
        #expect(e?.message.contains("nesting is deeper than 32 levels") == true, "\(String(describing: e))")
        #expect(e?.position.line == 1)
    }

    @Test func longDottedKeysAndHeadersAreLimitedToo() {
        let key = Array(repeating: "a", count: 20_000).joined(separator: ".")
        #expect(nestingError(key + " = 1")?.message.contains("deeper than 32") == true)
        #expect(nestingError("[" + key + "]")?.message.contains("deeper than 32") == true)
        #expect(nestingError("[t]\nv = { " + key + " = 1 }")?.message.contains("deeper than 32") == true)
    }

    @Test func nestingUpToTheLimitParses() throws {
        let depth = TOML.maxDepth
        let ok = try TOML.parse("x = " + String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1))
        #expect(ok["x"] != nil)
        // Table path (2) + dotted key (2) + arrays count together.
        func nested(_ n: Int) -> String { "[a.b]\nc.d = " + String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        #expect(nestingError(nested(depth - 4)) == nil)
        #expect(nestingError(nested(depth - 3))?.message.contains("deeper than 32") == true)
    }
}
