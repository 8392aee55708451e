import ArgumentParser
import Diagnostics
import ESPCore
import Foundation

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Explain a boot log: the root cause, the lines that prove it, and the fix.",
        discussion: """
            LOG is a boot log as a serial monitor captured it: colour codes, CRLF, monitor \
            annotations, repeated or interleaved ROM banners and surrounding prose are fine. Findings \
            come from a rule table (DR001…) in ESP-IDF's and the ROM's own wording, most likely root \
            cause first.

            With the build artifacts (--build-dir, or ADDR FILE pairs as flashed) the doctor \
            correlates: for a bootloader whose signature digest does not match, it searches the \
            header's flash-parameter bytes (every mode × size × frequency) for the combination the \
            bootloader was signed with and reports "header rewritten after signing: built as X, \
            found as Y".

            Example:
              espforge doctor boot.log
              espforge doctor boot.log --build-dir build --json
              espforge doctor boot.log 0x1000 build/bootloader/bootloader.bin
            """
    )

    @Argument(help: "The boot log file (- for standard input).")
    var log: String
    @Argument(help: "ADDR FILE pairs of the files as flashed.")
    var pairs: [String] = []
    @Option(name: .customLong("build-dir"), help: "ESP-IDF build folder whose files were flashed.")
    var buildDir: String?
    @Option(help: "Chip (default esp32, or the build's).")
    var chip: String?
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let bytes: [UInt8]
        if log == "-" {
            bytes = try FileIO.read("-", limit: .bootLog)
        } else {
            bytes = try FileIO.read(log, limit: .bootLog)
        }
        var files: [PlanEntry] = []
        var chipName = chip
        if let buildDir {
            let contents = try BuildDirectory.load(buildDir) { path in
                try FileIO.readIfPresent(path, limit: .flashContents)
            }
            files = contents.plan.entries
            if chipName == nil { chipName = contents.chip }
        }
        guard pairs.count % 2 == 0 else {
            throw UsageError("ADDR FILE arguments must come in pairs", hint: "e.g. 0x1000 bootloader.bin")
        }
        var i = 0
        while i < pairs.count {
            guard let addr = NumberParsing.integer(pairs[i]), addr >= 0 else {
                throw UsageError("'\(pairs[i])' is not a flash address", hint: "write it as 0x1000 or 4096")
            }
            files.removeAll { $0.address == addr }
            files.append(PlanEntry(address: addr, name: pairs[i + 1], bytes: try FileIO.read(pairs[i + 1], limit: .flashContents)))
            i += 2
        }
        guard let spec = ChipSpec.named(chipName ?? "esp32") else {
            throw UsageError("unknown chip '\(chipName ?? "")'", hint: "choose one of: " + ChipSpec.all.map(\.name).joined(separator: ", "))
        }
        let artifacts = files.isEmpty ? nil : DoctorArtifacts(files: files, chip: spec)
        let report = Doctor.diagnose(logBytes: bytes, artifacts: artifacts)
        if json { return try Output.printJSON(DoctorJSON(report)) }
        guard let primary = report.primary else {
            print("doctor: read \(report.linesRead) line(s); no known failure pattern found")
            return
        }
        print("doctor: read \(report.linesRead) line(s)")
        print("")
        print("most likely cause (\(primary.rule) \(primary.name), confidence \(primary.confidence.rawValue)):")
        printFinding(primary)
        let others = report.findings.dropFirst()
        if !others.isEmpty {
            print("")
            print("also found:")
            for f in others {
                print("- \(f.rule) \(f.name): \(f.cause)")
                for l in f.evidence.prefix(3) { print("    line \(l.number): \(l.text)") }
            }
        }
    }

    func printFinding(_ f: DoctorFinding) {
        print("  \(f.cause)")
        print("")
        print("evidence:")
        for l in f.evidence { print("  line \(l.number): \(l.text)") }
        if !f.correlation.isEmpty {
            print("")
            print("build artifacts:")
            for c in f.correlation { print("  \(c)") }
        }
        print("")
        print("why:")
        print("  " + f.explanation)
        print("")
        print("fix:")
        for (n, x) in f.fix.enumerated() { print("  \(n + 1). \(x)") }
    }
}

struct DoctorJSON: Codable {
    var linesRead: Int
    var primary: DoctorFinding?
    var findings: [DoctorFinding]
    init(_ r: DoctorReport) {
        linesRead = r.linesRead
        primary = r.primary
        findings = r.findings
    }
}
