import Foundation
import Registry
import Testing
import TestSupport

/// Two stations of one line sharing a PostgreSQL registry: each works its own fixture, one pool
/// of identities is shared without a double claim, and either station's dashboard shows its own
/// slots and the whole line's counters. Runs in the test command's serial pass (its PostgreSQL);
/// under CI=true a missing server fails it.
@Suite("Stations sharing one PostgreSQL registry", .serialized)
struct MultiStationTests {
    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["ESPFORGE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    @Test("two stations, one registry: a shared pool without double claims; the dashboard has its own slots and both stations' counters",
          .enabled(if: postgresURL != nil || TestEnvironment.isCI, "needs ESPFORGE_TEST_POSTGRES_URL (./scripts/test starts a server; required in CI)"))
    func twoStationsOneRegistry() async throws {
        let url = try #require(Self.postgresURL, "ESPFORGE_TEST_POSTGRES_URL is required under CI=true")
        let dir = try TestEnvironment.temporaryDirectory("espforge-two-stations").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let demo = try Espforge.run(["demo", "--devices", "4", "--dir", dir + "/line", "--app-size", "64K"])
        try #require(demo.status == 0, "\(demo.err)")
        // The server outlives a test run: this run's own station names, identities and pool.
        let run = String(UUID().uuidString.prefix(8)).lowercased()
        let names = ["s1-\(run)", "s2-\(run)"]
        let values = "serial,serial_no,hw_rev\n" + (1...4).map { "ID-\(run)-\($0),ID-\(run)-\($0),3\n" }.joined()
        try values.write(toFile: dir + "/line/ids-\(run).csv", atomically: true, encoding: .utf8)
        let base = try String(contentsOfFile: dir + "/line/espforge.toml", encoding: .utf8)
        for name in names {
            let text = base
                .replacingOccurrences(of: "values = \"nvs-values.csv\"", with: "values = \"ids-\(run).csv\"")
                .replacingOccurrences(of: "url = \"registry.sqlite\"", with: "url = \"\(url)\"")
                .replacingOccurrences(of: "station = \"demo\"", with: "station = \"\(name)\"")
            try #require(text.contains(name) && text.contains("ids-\(run)"), "the demo manifest has the expected lines")
            try text.write(toFile: dir + "/line/\(name).toml", atomically: true, encoding: .utf8)
        }

        // One fleet per station (its own fixture), two slots, two boards each; random seeds, so
        // the MACs are this run's own.
        var fleets: [Process] = [], slots: [[String]] = []
        for (i, _) in names.enumerated() {
            let out = dir + "/fleet\(i).out"
            FileManager.default.createFile(atPath: out, contents: nil)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Espforge.path)
            p.arguments = ["device", "fleet", "--dir", dir + "/fleet\(i)", "--slots", "2", "--boards", "2",
                           "--seed", String(UInt64.random(in: 1...UInt64(1) << 40)), "--sdkconfig", dir + "/line/sdkconfig"]
            p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            p.standardError = FileHandle.nullDevice
            try p.run()
            fleets.append(p)
            var urls: [String] = []
            for _ in 0..<600 where urls.count < 2 {
                urls = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n")
                    .compactMap { $0.hasPrefix("slot ") ? $0.split(separator: " ").last.map(String.init) : nil }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            try #require(urls.count == 2, "fleet \(i) printed its slots")
            slots.append(urls)
        }
        defer { for f in fleets where f.isRunning { f.terminate() } }

        // Station 1 serves the dashboard and runs until stopped; station 2 takes its two boards.
        let out1 = dir + "/station1.jsonl"
        FileManager.default.createFile(atPath: out1, contents: nil)
        let first = Process()
        first.executableURL = URL(fileURLWithPath: Espforge.path)
        first.arguments = ["station", "--manifest", dir + "/line/\(names[0]).toml", "--json", "--dashboard", "127.0.0.1:0",
                           "--max-seconds", "600"] + slots[0].enumerated().flatMap { ["--port", "A\($0.offset + 1)=\($0.element)"] }
        first.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out1))
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { first.terminate() } }
        let secondArgs = ["station", "--manifest", dir + "/line/\(names[1]).toml", "--json", "--max-boards", "2", "--max-seconds", "600"]
            + slots[1].enumerated().flatMap { ["--port", "A\($0.offset + 1)=\($0.element)"] }
        let second = try await offPool { try Espforge.run(secondArgs) }
        #expect(second.status == 0, "\(second.err)")

        func lines() -> [String] { ((try? String(contentsOfFile: out1, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        for _ in 0..<1200 where lines().filter({ $0.contains("\"event\":\"result\"") }).count < 2 {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(lines().filter { $0.contains("\"event\":\"result\"") && $0.contains("\"outcome\":\"passed\"") }.count == 2,
                "station 1 passed its two boards: \(lines().suffix(3))")
        let note = try #require(lines().first { $0.contains("dashboard: http://") }, "station 1 printed its dashboard")
        let address = try #require(note.range(of: "http://[0-9.:]+", options: .regularExpression).map { String(note[$0]) })

        // Station 1's dashboard: its own slots; the line's counters with both stations.
        let stationJSON = try await Self.get(address + "/api/station")
        let slotPorts = (stationJSON["slots"] as? [[String: Any]] ?? []).compactMap { $0["port"] as? String }
        #expect(slotPorts == slots[0], "station 1 shows its own slots: \(slotPorts)")
        let line = try await Self.get(address + "/api/line")
        let byStation = line["by_station"] as? [String: [String: Int]] ?? [:]
        #expect(byStation[names[0]] == ["provisioned": 2] && byStation[names[1]] == ["provisioned": 2], "\(byStation.filter { names.contains($0.key) })")

        // The shared pool: four boards, four different identities, all from this run's pool.
        let registry = try await openRegistry(url: url)
        let mine = try await registry.devices().filter { names.contains($0.facts.station ?? "") }
        #expect(mine.count == 4 && mine.allSatisfy { $0.status == .provisioned })
        let ids = mine.compactMap(\.identity)
        #expect(ids.count == 4 && Set(ids).count == 4 && ids.allSatisfy { $0.hasPrefix("ID-\(run)-") }, "\(ids)")
        // A board of station 2 through station 1's dashboard.
        if let other = mine.first(where: { $0.facts.station == names[1] }) {
            let page = try await Self.get(address + "/api/devices/" + other.mac)
            #expect((page["device"] as? [String: Any])?["station"] as? String == names[1])
        }
        try await registry.close()
        kill(first.processIdentifier, SIGTERM)
        let box = ProcessBox(first)
        let status = try await offPool { box.process.waitUntilExit(); return box.process.terminationStatus }
        #expect(status == 0)
    }

    /// GET http://127.0.0.1:PORT/PATH as JSON (through the dashboard tests' plain-socket client).
    static func get(_ url: String) async throws -> [String: Any] {
        let parts = url.split(separator: ":", maxSplits: 2)
        let rest = parts.count == 3 ? String(parts[2]) : ""   // "PORT/PATH"
        let port = try #require(Int(String(rest.prefix { $0.isNumber })), "\(url)")
        let path = String(rest.drop { $0.isNumber })
        let r = try await DashboardTests.fetch(port, path)
        try #require(r.status == 200, "\(url): \(r.head)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any], "\(url): \(r.body)")
    }
}
