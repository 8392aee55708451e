import Foundation
import Testing
import TestSupport

/// A real browser (headless Chromium) on the dashboard of a station working through a fleet.
/// Under CI=true a missing Chromium is a failure; elsewhere the test is skipped.
@Suite("Station dashboard in headless Chromium", .serialized)
struct BrowserTests {
    static let chromium: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The page as the browser has it after `budget` ms of its (virtual) time.
    static func dom(_ url: String, budget: Int = 4000) throws -> String {
        guard let chromium else { throw TestSupportError.missing("chromium") }
        // A fresh profile per call: a Chromium still shutting down holds its profile's lock, and a
        // second browser on the same profile prints nothing. A loaded machine gets a few tries.
        for _ in 0..<4 {
            let profile = NSTemporaryDirectory() + "/chromium-espforge-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: profile) }
            let r = try ProcessRunner.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
                                                     "--virtual-time-budget=\(budget)", "--dump-dom", url])
            if r.out.contains("</html>") { return r.out }
            usleep(500_000)
        }
        return ""
    }

    static func counter(_ dom: String, _ id: String) -> Int? {
        guard let r = dom.range(of: "id=\"\(id)\">") else { return nil }
        return Int(dom[r.upperBound...].prefix { $0.isNumber })
    }

    static func startProcess(_ args: [String], output: String) throws -> Process {
        FileManager.default.createFile(atPath: output, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Espforge.path)
        p.arguments = args
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    static func waitForLines(_ file: String, _ match: (String) -> Bool, count: Int) -> [String] {
        for _ in 0..<600 {
            let lines = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init).filter(match)
            if lines.count >= count { return lines }
            usleep(50_000)
        }
        return []
    }

    @Test("tiles change state and counters rise while a fleet runs; a screenshot is saved",
          .enabled(if: chromium != nil || TestEnvironment.isCI, "needs Debian's chromium (installed by the test command; required in CI)"))
    func liveDashboard() async throws {
        try #require(Self.chromium != nil, "chromium is required under CI=true")
        let dir = try TestEnvironment.temporaryDirectory("espforge-browser").path
        let demo = try Espforge.run(["demo", "--devices", "12", "--dir", dir + "/line", "--app-size", "64K"])
        try #require(demo.status == 0, "\(demo.err)")
        // Real time: boards take seconds, so the page sees them move.
        let fleet = try Self.startProcess(["device", "fleet", "--dir", dir + "/fleet", "--slots", "4", "--boards", "12", "--realtime",
                                           "--defects", "flash-2mb=1", "--sdkconfig", dir + "/line/sdkconfig"], output: dir + "/fleet.out")
        defer { if fleet.isRunning { fleet.terminate() } }
        let slots = Self.waitForLines(dir + "/fleet.out", { $0.hasPrefix("slot ") }, count: 4).compactMap { $0.split(separator: " ").last }
        try #require(slots.count == 4)
        let ports = slots.enumerated().flatMap { ["--port", "A\($0.offset + 1)=\($0.element)"] }
        let station = try Self.startProcess(["station", "--manifest", dir + "/line/espforge.toml", "--registry", dir + "/reg.sqlite",
                                             "--json", "--dashboard", "127.0.0.1:0", "--max-boards", "12", "--max-seconds", "600"] + ports,
                                            output: dir + "/station.jsonl")
        defer { if station.isRunning { station.terminate() } }
        let note = Self.waitForLines(dir + "/station.jsonl", { $0.contains("dashboard: http://") }, count: 1).first ?? ""
        let url = try #require(note.range(of: "http://[0-9.:]+/", options: .regularExpression).map { String(note[$0]) }, "\(note)")

        let first = try await offPool { try Self.dom(url, budget: 2000) }
        #expect(first.contains("class=\"tile"), "the page renders tiles: \(first.prefix(400))")
        let passedFirst = Self.counter(first, "passed") ?? 0
        // Wait for boards to finish, then look again.
        _ = Self.waitForLines(dir + "/station.jsonl", { $0.contains("\"event\":\"result\"") }, count: 6)
        let later = try await offPool { try Self.dom(url, budget: 2000) }
        let passedLater = try #require(Self.counter(later, "passed"), "\(later.prefix(400))")
        #expect(passedLater > passedFirst, "the passed counter rises (\(passedFirst) → \(passedLater))")
        let phases = ["waiting", "provisioning", "result", "removal"].filter { first.contains("tile \($0)") || later.contains("tile \($0)") }
        #expect(phases.count >= 2, "tiles change state: \(phases)")
        #expect(!later.contains("BEGIN") && !later.lowercased().contains("private key"), "no key material on the page")

        // The device page of a board that passed, opened directly (#device=MAC): its facts, steps
        // with timings, image hashes and key digests as tables.
        let results = Self.waitForLines(dir + "/station.jsonl", { $0.contains("\"event\":\"result\"") }, count: 1)
            .compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["result"] as? [String: Any] }
        let mac = try #require(results.first { $0["outcome"] as? String == "passed" }?["mac"] as? String, "a board passed: \(results)")
        let dom = try await offPool { try Self.dom(url + "#device=" + mac, budget: 2000) }
        // Only the rendered device section (the page's script also holds these ids as text).
        let page = dom.range(of: "<div id=\"device\">").map { start in
            String(dom[start.lowerBound...]).components(separatedBy: "<script>")[0]
        } ?? ""
        #expect(page.contains("id=\"device-mac\">\(mac)"), "the device page opens from the URL: \(page.prefix(800))")
        for table in ["facts", "steps", "images", "digests", "events"] {
            #expect(page.contains("id=\"\(table)\""), "the device page has its \(table) table")
        }
        #expect(page.contains("<td>write</td><td>ok</td>"), "the write step is listed with its outcome")
        #expect(page.range(of: "<td>[0-9]+\\.[0-9] s</td>", options: .regularExpression) != nil, "steps show how long they took")
        #expect(!page.contains("BEGIN") && !page.lowercased().contains("private key"), "no key material on the device page")

        // A screenshot for a human to look at, kept under the test's output folder.
        let shots = TestEnvironment.packageRoot.appendingPathComponent(".build/test-output/station").path
        try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
        let png = shots + "/dashboard.png"
        guard let chromium = Self.chromium else { return }
        let shot = try await offPool {
            try ProcessRunner.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                             "--user-data-dir=" + NSTemporaryDirectory() + "/chromium-espforge",
                                             "--window-size=1400,1000", "--virtual-time-budget=2500", "--screenshot=" + png, url])
        }
        #expect(shot.status == 0 && FileManager.default.fileExists(atPath: png), "\(shot.err)")
        station.terminate()
        fleet.terminate()
        try? FileManager.default.removeItem(atPath: dir)
    }
}
