import ArgumentParser
import Diagnostics
import ESPCore

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor", abstract: "Explain a boot log: the root cause, the lines that prove it, and the fix.",
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

    @Argument(help: "The boot log file (- for standard input).") var log: String
    @Argument(help: "ADDR FILE pairs of the files as flashed.") var pairs: [String] = []
    @Option(name: .customLong("build-dir"), help: "ESP-IDF build folder whose files were flashed.") var buildDir: String?
    @Option(help: "Chip (default esp32, or the build's).") var chip: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let bytes = try FileIO.read(log, limit: .bootLog)
        let artifacts = try DoctorArtifacts.load(buildDir: buildDir, pairs: pairs, chip: chip)
        let report = Doctor.diagnose(logBytes: bytes, artifacts: artifacts)
        if json { print(try report.json()) } else { print(report.text, terminator: "") }
    }
}
