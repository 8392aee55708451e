import Foundation
import Testing
import TestSupport

/// The command examples in README.md and docs/commands/*.md name commands and options that exist:
/// each example's subcommand path is resolved through the tool's own `--help` (its SUBCOMMANDS
/// lists), and every option it uses must appear in that command's help. Catches documentation
/// that drifted from the CLI (a renamed option, a moved subcommand) without needing the files
/// the examples operate on.
@Suite("Documented command examples")
struct DocExamplesTests {
    struct Example { var file: String; var line: Int; var tokens: [String] }

    /// `espforge …` lines inside fenced code blocks (a trailing `\` continues the line).
    static func examples() throws -> [Example] {
        let root = TestEnvironment.packageRoot
        let dir = root.appendingPathComponent("docs/commands")
        let pages = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".md") }.sorted()
            .map { "docs/commands/" + $0 } + ["README.md"]
        var out: [Example] = []
        for page in pages {
            let lines = try String(contentsOf: root.appendingPathComponent(page), encoding: .utf8).components(separatedBy: "\n")
            var fenced = false, i = 0
            while i < lines.count {
                let raw = lines[i]
                if raw.trimmingCharacters(in: .whitespaces).hasPrefix("```") { fenced.toggle(); i += 1; continue }
                var text = raw.trimmingCharacters(in: .whitespaces)
                if text.hasPrefix("$ ") { text.removeFirst(2) }
                guard fenced, text.hasPrefix("espforge ") else { i += 1; continue }
                let start = i + 1
                while text.hasSuffix("\\"), i + 1 < lines.count {
                    text.removeLast()
                    i += 1
                    text += " " + lines[i].trimmingCharacters(in: .whitespaces)
                }
                if let hash = text.range(of: " #") { text = String(text[..<hash.lowerBound]) }
                let tokens = text.split(separator: " ").map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }
                    .filter { !$0.isEmpty && $0 != "&" && $0 != "..." && $0 != "|" }
                out.append(Example(file: page, line: start, tokens: Array(tokens.dropFirst())))
                i += 1
            }
        }
        return out
    }

    /// Subcommand names listed in a help text.
    static func subcommands(_ help: String) -> Set<String> {
        guard let r = help.range(of: "SUBCOMMANDS:") else { return [] }
        return Set(help[r.upperBound...].split(separator: "\n").compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("  "), let name = t.split(separator: " ").first else { return nil }
            return String(name)
        })
    }

    @Test("every documented example names an existing command and only options it has")
    func examplesMatchTheCLI() throws {
        let examples = try Self.examples()
        #expect(examples.count > 50, "the examples were found (\(examples.count))")
        var helpCache: [String: String] = [:]
        func help(_ path: [String]) throws -> String {
            let key = path.joined(separator: " ")
            if let h = helpCache[key] { return h }
            let r = try Espforge.run(path + ["--help"])
            let h = r.status == 0 ? r.out : ""
            helpCache[key] = h
            return h
        }
        for ex in examples {
            var path: [String] = []
            var rest = ex.tokens[...]
            while let next = rest.first, !next.hasPrefix("-"), try Self.subcommands(help(path)).contains(next) {
                path.append(next)
                rest = rest.dropFirst()
            }
            let where_ = "\(ex.file):\(ex.line): espforge \(ex.tokens.joined(separator: " "))"
            #expect(!path.isEmpty, "no command found: \(where_)")
            let text = try help(path)
            #expect(!text.isEmpty, "`espforge \(path.joined(separator: " ")) --help` failed: \(where_)")
            if let next = rest.first, !next.hasPrefix("-"), !Self.subcommands(text).isEmpty {
                Issue.record("`\(next)` is not a subcommand of `espforge \(path.joined(separator: " "))`: \(where_)")
            }
            for token in rest where token.hasPrefix("-") && token.count > 1 && !token.hasPrefix("---") {
                let option = String(token.split(separator: "=", maxSplits: 1)[0])
                guard option.first == "-", option.dropFirst().first?.isLetter == true || option.hasPrefix("--") else { continue }
                #expect(text.contains(option), "`\(option)` is not an option of `espforge \(path.joined(separator: " "))`: \(where_)")
            }
        }
    }
}
