import Diagnostics
import ESPCore
import Foundation
import Testing
import TestSupport

/// `DoctorReport.text` / `json()` and `DoctorArtifacts.load`: what `espforge doctor` prints, through the library.
@Suite("Doctor report rendering (library)")
struct DoctorTextTests {
    @Test("a log with no known failure: one line")
    func nothingFound() throws {
        let report = Doctor.diagnose(logBytes: Array("hello\nworld\n".utf8))
        #expect(report.text == "doctor: read 2 line(s); no known failure pattern found\n")
        let json = try JSONSerialization.jsonObject(with: Data(try report.json().utf8)) as? [String: Any]
        #expect(json?["linesRead"] as? Int == 2 && (json?["findings"] as? [Any])?.isEmpty == true)
        #expect(json?.keys.contains("primary") == false) // nil primary is left out, as the encoder does
    }

    @Test(.enabled(if: seedAvailable, "seed log (../shared/seed) missing"))
    func seedRendering() throws {
        let report = Doctor.diagnose(logBytes: try seedLog())
        let p = try #require(report.primary)
        let text = report.text
        #expect(text.hasPrefix("doctor: read \(report.linesRead) line(s)\n\nmost likely cause (\(p.rule) \(p.name), confidence \(p.confidence.rawValue)):\n  \(p.cause)\n\nevidence:\n"))
        #expect(text.contains("\nwhy:\n  \(p.explanation)\n\nfix:\n  1. \(p.fix[0])\n"))
        if report.findings.count > 1 { #expect(text.contains("\nalso found:\n- \(report.findings[1].rule) ")) }
        let json = try JSONSerialization.jsonObject(with: Data(try report.json().utf8)) as? [String: Any]
        #expect((json?["primary"] as? [String: Any])?["rule"] as? String == p.rule)
        #expect((json?["findings"] as? [Any])?.count == report.findings.count)
    }

    @Test("artifacts from ADDR FILE pairs: later pairs replace earlier files at the same address; bad pairs are usage errors")
    func artifactsFromPairs() throws {
        let dir = try TestEnvironment.temporaryDirectory("doctor-artifacts")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.bin").path, b = dir.appendingPathComponent("b.bin").path
        try AtomicFile.write([1, 2, 3], to: a)
        try AtomicFile.write([4, 5], to: b)
        #expect(try DoctorArtifacts.load(buildDir: nil, pairs: [], chip: nil) == nil)
        let artifacts = try #require(try DoctorArtifacts.load(buildDir: nil, pairs: ["0x1000", a, "4096", b, "0x8000", a], chip: "esp32s3"))
        #expect(artifacts.chip.name == "esp32s3")
        #expect(artifacts.files.map(\.address) == [0x1000, 0x8000] && artifacts.files[0].bytes == [4, 5])
        #expect(throws: UsageError.self) { try DoctorArtifacts.load(buildDir: nil, pairs: ["0x1000"], chip: nil) }
        #expect(throws: UsageError.self) { try DoctorArtifacts.load(buildDir: nil, pairs: ["here", a], chip: nil) }
        #expect(throws: UsageError.self) { try DoctorArtifacts.load(buildDir: nil, pairs: [], chip: "esp9000") }
    }
}
