import ESPCore
import Foundation
import FuzzTargets
import Testing
import TestSupport

/// Replays what fuzzing found (Fuzz/regressions/TARGET/*) and the committed seeds
/// (Fuzz/seeds/TARGET/*) through the same targets the libFuzzer driver runs, without sanitizers:
/// every input must be accepted or refused with a typed error (a crash fails the run).
@Suite("Fuzz regressions and seeds replayed")
struct FuzzRegressionTests {
    static let fuzzDir = TestEnvironment.packageRoot.appendingPathComponent("Fuzz")

    /// (target folder, file) for every file under Fuzz/<kind>/.
    static func inputs(_ kind: String) throws -> [(folder: String, file: URL)] {
        let base = fuzzDir.appendingPathComponent(kind)
        let fm = FileManager.default
        var out: [(String, URL)] = []
        for folder in try fm.contentsOfDirectory(atPath: base.path).sorted() where !folder.hasPrefix(".") {
            let dir = base.appendingPathComponent(folder)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
                if folder != "README.md" { out.append((folder, dir)) }   // a stray file: reported as unroutable below
                continue
            }
            for name in try fm.contentsOfDirectory(atPath: dir.path).sorted() where !name.hasPrefix(".") {
                out.append((folder, dir.appendingPathComponent(name)))
            }
        }
        return out
    }

    @Test(arguments: ["regressions", "seeds"])
    func everyFileIsRoutedToAKnownTargetAndSurvives(kind: String) throws {
        let files = try Self.inputs(kind)
        // Seeds exist for most targets; regressions exist once fuzzing has found something.
        if kind == "seeds" { #expect(files.count >= 10, "Fuzz/seeds holds only \(files.count) inputs") }
        for (folder, file) in files {
            guard let target = FuzzTargets.named(folder) else {
                Issue.record("Fuzz/\(kind)/\(folder): no fuzz target of that name (known: \(FuzzTargets.all.map(\.name).joined(separator: ", ")))")
                continue
            }
            let bytes = try [UInt8](Data(contentsOf: file))
            if case let .untypedError(what) = target.run(bytes) {
                Issue.record("\(kind)/\(folder)/\(file.lastPathComponent): untyped error \(what)")
            }
        }
    }

    /// Each regression folder holds the inputs of one fixed crash; the test above is what replays them.
    /// Here: the committed seeds cover every target, so a new target cannot miss its corpus.
    @Test func everyTargetHasACommittedOrGeneratedSeed() throws {
        let committed = Set(try Self.inputs("seeds").map(\.folder))
        for target in FuzzTargets.all {
            #expect(committed.contains(target.name) || !target.generatedSeeds().isEmpty, "\(target.name) has no seed")
        }
    }

    /// The generated seeds are valid inputs: each target accepts them (this also checks that each
    /// target reaches its parser rather than failing early on a fixed part of its set-up).
    @Test(arguments: FuzzTargets.all.map(\.name))
    func generatedSeedsAreAccepted(name: String) throws {
        let target = try #require(FuzzTargets.named(name))
        let seeds = target.generatedSeeds()
        #expect(!seeds.isEmpty)
        for (i, seed) in seeds.enumerated() {
            #expect(!seed.isEmpty, "\(name) seed \(i) is empty")
            switch target.run(seed) {
            case .accepted: break
            case let .rejected(d): Issue.record("\(name) seed \(i) rejected: \(d.message)")
            case let .untypedError(what): Issue.record("\(name) seed \(i): untyped error \(what)")
            }
        }
    }

    @Test func targetNamesAreUniqueAndMatchTheIssueList() {
        let names = FuzzTargets.all.map(\.name)
        #expect(Set(names).count == names.count)
        for required in ["image", "elf", "key", "sigsector", "partition-bin", "partition-csv", "nvs-bin", "nvs-csv",
                         "nvs-config", "nvs-values", "otadata", "efuse-json", "manifest", "sdkconfig", "flasher-args",
                         "slip", "loader-command", "loader-response", "doctor", "registry-url"] {
            #expect(names.contains(required), "missing fuzz target \(required)")
        }
    }
}
