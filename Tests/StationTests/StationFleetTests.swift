import Foundation
import Registry
import Testing
import TestSupport

/// The station against a fleet of virtual boards, both through the CLI as an operator runs them.
@Suite("espforge station on a fleet of virtual boards (CLI)", .serialized)
struct StationFleetTests {
    struct Truth: Decodable {
        struct Board: Decodable { var index: Int; var slot: Int; var mac: String; var defect: String?; var expected: String; var removal: String? }
        var slots: [String]
        var boards: [Board]
    }

    /// Starts `espforge device fleet`; returns the process, its output file and the slot URLs.
    func startFleet(_ dir: String, _ args: [String]) throws -> (Process, String, [String]) {
        let out = dir + "/fleet.out"
        FileManager.default.createFile(atPath: out, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Espforge.path)
        p.arguments = ["device", "fleet", "--dir", dir + "/fleet"] + args
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardError = FileHandle.nullDevice
        try p.run()
        var urls: [String] = []
        for _ in 0..<300 {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            urls = text.split(separator: "\n").compactMap { l in l.hasPrefix("slot ") ? l.split(separator: " ").last.map(String.init) : nil }
            if let n = args.firstIndex(of: "--slots").map({ Int(args[$0 + 1]) ?? 0 }), urls.count == n { break }
            usleep(50_000)
        }
        return (p, out, urls)
    }

    @Test("8 slots × 5 boards, 3 defective: 37 provisioned, 3 failed with their diagnoses; no board twice, no identity twice; JSON events agree with the registry")
    func fleetOfForty() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-station").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let demo = try Espforge.run(["demo", "--devices", "40", "--dir", dir + "/line", "--app-size", "160K"])
        #expect(demo.status == 0, "\(demo.err)")
        let registryPath = dir + "/station.sqlite"
        let (fleet, _, urls) = try startFleet(dir, ["--slots", "8", "--boards", "40", "--seed", "7",
                                                    "--defects", "reheadered=1,flash-2mb=1,pulled=1", "--sdkconfig", dir + "/line/sdkconfig"])
        defer { if fleet.isRunning { fleet.terminate() } }
        try #require(urls.count == 8, "the fleet printed its slots")
        let ports = urls.enumerated().flatMap { ["--port", "A\($0.offset + 1)=\($0.element)"] }
        let stationArgs = ["station", "--manifest", dir + "/line/espforge.toml", "--registry", registryPath,
                           "--json", "--max-boards", "40", "--max-seconds", "900", "--stop-timeout", "60"] + ports
        // Blocking waits for the child processes run off Swift's cooperative pool.
        let station = try await offPool { try Espforge.run(stationArgs) }
        #expect(station.status == 0, "\(station.err)")
        let box = ProcessBox(fleet)
        let fleetStatus = try await offPool { box.process.waitUntilExit(); return box.process.terminationStatus }
        #expect(fleetStatus == 0)
        let truth = try JSONDecoder().decode(Truth.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/fleet/truth.json")))
        #expect(truth.boards.count == 40 && Set(truth.boards.map(\.mac)).count == 40)

        // The station's own events: one result per board.
        var results: [String: [String: Any]] = [:]
        var resultCount = 0
        for line in station.out.split(separator: "\n") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            guard obj["event"] as? String == "result", let r = obj["result"] as? [String: Any], let mac = r["mac"] as? String else { continue }
            resultCount += 1
            #expect(results[mac] == nil, "\(mac) has one result")
            results[mac] = r
        }
        #expect(resultCount == 40)

        let registry = try await openRegistry(url: registryPath)
        var identities: [String] = []
        var provisioned = 0, failed = 0
        for board in truth.boards {
            let record = try #require(try await registry.device(mac: board.mac), "\(board.mac) (\(board.defect ?? "good")) is recorded")
            let writes = try await registry.steps(mac: board.mac).filter { $0.step == "write" && $0.outcome == .ok }
            #expect(writes.count <= 1, "\(board.mac) written once")
            let outcome = results[board.mac]?["outcome"] as? String
            switch board.defect {
            case nil:
                #expect(record.status == .provisioned, "\(board.mac): \(record.failure ?? "")")
                #expect(outcome == "passed")
                provisioned += record.status == .provisioned ? 1 : 0
                if let id = record.identity { identities.append(id) }
                #expect(results[board.mac]?["identity"] as? String == record.identity)
            case "reheadered"?:
                #expect(record.status == .failed && record.failure?.contains("first-boot") == true && record.failure?.contains("DR001") == true,
                        "\(record.failure ?? "")")
                failed += 1
            case "flash-2mb"?:
                #expect(record.status == .failed && record.failure?.contains("preflight") == true && record.failure?.contains("2MB") == true,
                        "\(record.failure ?? "")")
                failed += 1
            case "pulled"?:
                #expect(record.status == .failed && record.failure?.contains("write") == true, "\(record.failure ?? "")")
                #expect(board.removal == "pulled")
                failed += 1
            default:
                Issue.record("unexpected defect \(board.defect ?? "")")
            }
            if board.defect != nil { #expect(outcome == "failed", "\(board.mac)") }
        }
        #expect(provisioned == 37 && failed == 3)
        #expect(Set(identities).count == identities.count, "no identity claimed twice")
        try await registry.close()
    }

    @Test("SIGTERM, then a second one mid-write: the station process exits at once (130); the boards stay resumable and a new station completes them, each written once, no identity twice")
    func secondSignalStopsAtOnce() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-station-signal").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let demo = try Espforge.run(["demo", "--devices", "2", "--dir", dir + "/line", "--app-size", "64K"])
        try #require(demo.status == 0, "\(demo.err)")
        // Real time, so the write lasts seconds; a long dwell keeps each board in its slot after the
        // first station's probes, as a board an operator has not pulled yet.
        let (fleet, _, urls) = try startFleet(dir, ["--slots", "2", "--boards", "2", "--seed", "5", "--realtime", "--dwell", "60",
                                                    "--sdkconfig", dir + "/line/sdkconfig"])
        defer { if fleet.isRunning { fleet.terminate() } }
        try #require(urls.count == 2, "the fleet printed its slots")
        let ports = urls.enumerated().flatMap { ["--port", "A\($0.offset + 1)=\($0.element)"] }
        let registryPath = dir + "/station.sqlite"
        let args = ["station", "--manifest", dir + "/line/espforge.toml", "--registry", registryPath, "--json",
                    "--max-boards", "2", "--max-seconds", "600", "--stop-timeout", "60"] + ports

        let out = dir + "/first.jsonl"
        FileManager.default.createFile(atPath: out, contents: nil)
        let first = Process()
        first.executableURL = URL(fileURLWithPath: Espforge.path)
        first.arguments = args
        first.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { first.terminate() } }
        func lines() -> [String] { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
        func waitFor(_ match: (String) -> Bool) async throws -> String? {
            for _ in 0..<1200 {   // up to 60 s on a loaded machine
                if let l = lines().first(where: match) { return l }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            return nil
        }
        let writing = try #require(try await waitFor { $0.contains("\"event\":\"step\"") && $0.contains("\"step\":\"write\"") },
                                   "a board reached the write: \(lines().suffix(5))")
        kill(first.processIdentifier, SIGTERM)
        _ = try #require(try await waitFor { $0.contains("\"event\":\"stopping\"") }, "the first signal is acknowledged")
        #expect(first.isRunning, "the first signal lets the board being written reach a safe step")
        kill(first.processIdentifier, SIGTERM)
        let box = ProcessBox(first)
        let status = try await offPool { box.process.waitUntilExit(); return box.process.terminationStatus }
        #expect(status == 130, "a second signal stops at once: exit 130, got \(status)")
        // A board that had not reached the write when the first signal came may stop with a result
        // (it stopped before its next step); none can have passed.
        let firstResults = lines().filter { $0.contains("\"event\":\"result\"") }
        #expect(!firstResults.contains { $0.contains("\"outcome\":\"passed\"") }, "no board finished: \(firstResults)")

        // The records of the cut run: nothing provisioned, the write that was cut not recorded ok.
        let writingMAC = try #require(writing.range(of: "\"mac\":\"([0-9a-f:]{17})\"", options: .regularExpression)
            .map { String(writing[$0].dropFirst(7).dropLast()) })
        do {
            let registry = try await openRegistry(url: registryPath)
            let record = try #require(try await registry.device(mac: writingMAC))
            #expect(record.status != .provisioned)
            #expect(try await registry.steps(mac: writingMAC).filter { $0.step == "write" && $0.outcome == .ok }.isEmpty)
            try await registry.close()
        }

        // A new station on the same slots resumes both boards.
        let second = try await offPool { try Espforge.run(args) }
        #expect(second.status == 0, "\(second.err)")
        let passed = second.out.split(separator: "\n").filter { $0.contains("\"event\":\"result\"") && $0.contains("\"outcome\":\"passed\"") }
        #expect(passed.count == 2, "\(second.out.suffix(2000))")
        let registry = try await openRegistry(url: registryPath)
        let devices = try await registry.devices()
        #expect(devices.count == 2 && devices.allSatisfy { $0.status == .provisioned }, "\(devices.map { "\($0.mac) \($0.status)" })")
        #expect(Set(devices.compactMap(\.identity)).count == 2, "each board its own identity")
        for d in devices {
            let writes = try await registry.steps(mac: d.mac).filter { $0.step == "write" && $0.outcome == .ok }
            #expect(writes.count == 1, "\(d.mac) written once")
        }
        let cut = try await registry.steps(mac: writingMAC)
        #expect(cut.contains { $0.step == "write" && $0.outcome == .interrupted }, "the cut write is recorded as interrupted: \(cut.map { "\($0.step) \($0.outcome)" })")
        try await registry.close()
        fleet.terminate()
    }

    @Test("old-revision, secured and flaky boards: the first two are refused untouched (flash erased, eFuses as they came), the flaky one is provisioned through its faults")
    func refusedAndFlakyBoards() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-station-defects").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let demo = try Espforge.run(["demo", "--devices", "4", "--dir", dir + "/line", "--app-size", "64K"])
        try #require(demo.status == 0, "\(demo.err)")
        let (fleet, _, urls) = try startFleet(dir, ["--slots", "4", "--boards", "4", "--seed", "3",
                                                    "--defects", "old-revision=1,secured=1,flaky=1", "--sdkconfig", dir + "/line/sdkconfig"])
        defer { if fleet.isRunning { fleet.terminate() } }
        try #require(urls.count == 4, "the fleet printed its slots")
        let registryPath = dir + "/station.sqlite"
        let out = dir + "/station.jsonl"
        FileManager.default.createFile(atPath: out, contents: nil)
        let station = Process()
        station.executableURL = URL(fileURLWithPath: Espforge.path)
        station.arguments = ["station", "--manifest", dir + "/line/espforge.toml", "--registry", registryPath, "--json",
                             "--max-seconds", "600"] + urls.enumerated().flatMap { ["--port", "A\($0.offset + 1)=\($0.element)"] }
        station.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        station.standardError = FileHandle.nullDevice
        try station.run()
        defer { if station.isRunning { station.terminate() } }
        // The fleet ends once the operator took every board out (each after the station showed its
        // result); then the station is stopped as at the end of a shift.
        let fleetBox = ProcessBox(fleet), stationBox = ProcessBox(station)
        let fleetStatus = try await offPool { fleetBox.process.waitUntilExit(); return fleetBox.process.terminationStatus }
        #expect(fleetStatus == 0)
        kill(station.processIdentifier, SIGTERM)
        let stationStatus = try await offPool { stationBox.process.waitUntilExit(); return stationBox.process.terminationStatus }
        #expect(stationStatus == 0, "an idle station stops cleanly on one signal")

        let truth = try JSONDecoder().decode(Truth.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/fleet/truth.json")))
        try #require(truth.boards.count == 4)
        var results: [String: [String: Any]] = [:]
        for line in ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  obj["event"] as? String == "result", let r = obj["result"] as? [String: Any], let mac = r["mac"] as? String else { continue }
            results[mac] = r
        }
        let registry = try await openRegistry(url: registryPath)
        for (i, board) in truth.boards.enumerated() {
            let folder = dir + "/fleet/boards/b" + String(format: "%03d", i + 1)
            let inspect = try Espforge.run(["device", "inspect", "--state", folder, "--json"])
            let state = try #require(try JSONSerialization.jsonObject(with: Data(inspect.out.utf8)) as? [String: Any], "\(inspect.err)")
            try #require(state["mac"] as? String == board.mac, "board \(i + 1) is \(board.mac)")
            let security = state["security"] as? [String: String] ?? [:]
            let flashMap = state["flashMap"] as? [[String: Any]] ?? []
            let untouched = flashMap.count == 1 && flashMap.first?["kind"] as? String == "erased"
            let result = results[board.mac] ?? [:]
            if board.defect == "secured" {
                // Another line's board: set aside at identify, before any claim or write; the
                // registry does not take it on (it is not this line's device), the station's result says why.
                #expect(result["outcome"] as? String == "failed" && result["failedStep"] as? String == "identify"
                        && (result["reason"] as? String)?.contains("already secured") == true, "\(result)")
                #expect(try await registry.device(mac: board.mac) == nil, "no record for another line's board")
                #expect(untouched, "nothing written to another line's board: \(flashMap)")
                #expect(security["ABS_DONE_1"] == "0x1" && security["BLOCK2"] == "programmed" && security["FLASH_CRYPT_CNT"] == "0x0"
                        && security["BLOCK1"] == "empty", "its eFuses as they came: \(security)")
                continue
            }
            let record = try #require(try await registry.device(mac: board.mac), "\(board.mac) (\(board.defect ?? "good")) is recorded")
            switch board.defect {
            case "old-revision"?:
                #expect(record.status == .failed && record.failure?.contains("revision 1") == true, "\(record.failure ?? "")")
                #expect(untouched, "nothing written to an old-revision board: \(flashMap)")
                #expect(security["ABS_DONE_1"] == "0x0" && security["FLASH_CRYPT_CNT"] == "0x0" && security["BLOCK1"] == "empty"
                        && security["BLOCK2"] == "empty", "no eFuse burned: \(security)")
            case "flaky"?, nil:
                #expect(record.status == .provisioned && result["outcome"] as? String == "passed",
                        "\(board.mac) (\(board.defect ?? "good")): \(record.failure ?? "")")
                #expect(!untouched && security["ABS_DONE_1"] == "0x1", "\(security)")
                let writes = try await registry.steps(mac: board.mac).filter { $0.step == "write" && $0.outcome == .ok }
                #expect(writes.count == 1, "\(board.mac) written once")
                if board.defect == "flaky" {
                    let stats = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/stats.json"))) as? [String: Any]
                    let faults = stats?["faults"] as? [String: Any] ?? [:]
                    let met = ["droppedBytes", "flippedBits", "stalls"].reduce(0) { $0 + (faults[$1] as? Int ?? 0) }
                    #expect(met > 0, "the flaky board's link did lose, flip or stall: \(faults)")
                }
            default:
                Issue.record("unexpected defect \(board.defect ?? "")")
            }
        }
        try await registry.close()
    }

    @Test("bad slot lists are refused before anything starts")
    func badSlots() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-station-bad").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let demo = try Espforge.run(["demo", "--devices", "1", "--dir", dir + "/line"])
        #expect(demo.status == 0)
        let manifest = dir + "/line/espforge.toml"
        let none = try Espforge.run(["station", "--manifest", manifest])
        #expect(none.status != 0 && none.err.contains("no slots"), "\(none.err)")
        let twice = try Espforge.run(["station", "--manifest", manifest, "--port", "A=socket://127.0.0.1:9", "--port", "B=socket://127.0.0.1:9"])
        #expect(twice.status != 0 && twice.err.contains("two slots"), "\(twice.err)")
        let inProcess = try Espforge.run(["station", "--manifest", manifest, "--port", "virtual:" + dir + "/line/devices/dev1"])
        #expect(inProcess.status != 0 && inProcess.err.contains("taken out"), "\(inProcess.err)")
    }
}

/// A child process handed to a thread that waits for it.
final class ProcessBox: @unchecked Sendable {
    let process: Process
    init(_ process: Process) { self.process = process }
}
