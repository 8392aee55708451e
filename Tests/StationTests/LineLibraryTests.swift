import ESPCore
import Foundation
import Manifest
import Registry
import Testing
import TestSupport
@testable import ProductionLine
@testable import Provisioning

/// The line's command-level entry points called as a library (what `espforge demo`, `provision`
/// and `station` do and print), without the executable.
@Suite("The line as a library: demo, provision report, station text")
struct LineLibraryTests {
    @Test("DemoLine creates a line that ProvisionSetup provisions; the report and the registry say so")
    func demoLineProvisionedThroughTheLibrary() async throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-demoline")
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(throws: UsageError.self) { try DemoLine.Options(devices: 0, dir: root.path) }
        #expect(throws: UsageError.self) { try DemoLine.Options(devices: 1, dir: root.path, mode: "maybe") }
        #expect(throws: UsageError.self) { try DemoLine.Options(devices: 1, dir: root.path, appSize: "2MB") }

        let options = try DemoLine.Options(devices: 1, dir: root.path + "/line", appSize: "16K")
        try DemoLine.prepare(options)
        let line = try DemoLine.create(options)
        #expect(line.ports == ["virtual:\(root.path)/line/devices/dev1"])
        let manifest = try Manifest.parse(try String(contentsOfFile: line.manifestPath, encoding: .utf8))
        #expect(manifest.flashEncryption.mode == .host && manifest.nvs?.values == "nvs-values.csv" && manifest.images.app?.offset == 0x60000)
        #expect(try String(contentsOfFile: root.path + "/line/nvs-values.csv", encoding: .utf8) == "serial,serial_no,hw_rev\nSN001001,SN001001,3\n")
        let key = try FileManager.default.attributesOfItem(atPath: root.path + "/line/signing_key.pem")
        #expect((key[.posixPermissions] as? NSNumber)?.intValue == 0o600)

        let loaded = try ProvisionSetup.load(manifestPath: line.manifestPath)
        let events = EventLog()
        var run = ProvisionSetup.RunOptions()
        run.onEvent = { events.add($0) }
        let results = try await ProvisionSetup.provision(loaded, ports: line.ports, options: run)
        #expect(results.count == 1 && results[0].ok && results[0].identity == "SN001001", "\(results)")
        let summary = ProvisionReport.summaryTable(results).split(separator: "\n").map(String.init)
        #expect(summary[0].hasPrefix("PORT") && summary[1].contains("  ok  ") && summary[1].contains("SN001001"))
        #expect(summary.last == "1 passed: 1 provisioned, 0 already provisioned (left alone); 0 failed")
        #expect(events.all.contains { $0.state == .done })
        #expect(events.all.compactMap(ProvisionReport.eventLine).allSatisfy { $0.hasPrefix("[virtual:") })

        let reg = try await RegistryReports.open(loaded.registryURL)
        let devices = try await RegistryReports.list(reg, status: .provisioned)
        try await reg.close()
        #expect(devices.map(\.identity) == ["SN001001"])
        let inspection = try DeviceInspection.of(state: root.path + "/line/devices/dev1")
        #expect(inspection.security["BLOCK2"] == "programmed" && inspection.security["ABS_DONE_1"] != "0")
        #expect(inspection.text.contains("power-on:  "))

        // A rerun removes exactly the demo's files; a folder with foreign files is refused.
        try "mine".write(toFile: root.path + "/line/notes.txt", atomically: true, encoding: .utf8)
        try DemoLine.prepare(options)
        #expect(FileManager.default.fileExists(atPath: root.path + "/line/notes.txt"))
        #expect(!FileManager.default.fileExists(atPath: root.path + "/line/app.bin"))
        try FileManager.default.createDirectory(atPath: root.path + "/other", withIntermediateDirectories: true)
        try "x".write(toFile: root.path + "/other/x", atomically: true, encoding: .utf8)
        #expect(throws: UsageError.self) { try DemoLine.prepare(try DemoLine.Options(devices: 1, dir: root.path + "/other")) }
    }

    @Test func demoFirmwareIsAnELFTheImageBuilderTakes() throws {
        let elf = DemoFirmware.elf32(entry: 0x4008_0000, sections: [.init(name: ".text", address: 0x4008_0000, data: [1, 2, 3, 4], flags: 6)])
        #expect(Array(elf.prefix(7)) == [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1])
        #expect(elf[18] == 94 && elf[19] == 0)   // e_machine: Xtensa
        let app = try DemoFirmware.app(codeSize: 8192)
        #expect(app[0] == 0xE9)   // an ESP image
        #expect(try DemoFirmware.bootloader()[0] == 0xE9)
        #expect(DemoFirmware.code(300, seed: 5) == DemoFirmware.code(300, seed: 5))
    }

    @Test func stationSlotsFromTheCommandLineOrTheManifest() throws {
        let slots = try StationSlot.parse(ports: ["A1=/dev/ttyUSB0", "socket://127.0.0.1:5000"], manifestSlots: [])
        #expect(slots == [StationSlot(name: "A1", port: "/dev/ttyUSB0"), StationSlot(name: "S2", port: "socket://127.0.0.1:5000")])
        #expect(try StationSlot.parse(ports: [], manifestSlots: [(name: "B", port: "/dev/x")]) == [StationSlot(name: "B", port: "/dev/x")])
        #expect(throws: UsageError.self) { try StationSlot.parse(ports: [], manifestSlots: []) }
        #expect(throws: UsageError.self) { try StationSlot.parse(ports: ["A=/dev/x", "A=/dev/y"], manifestSlots: []) }
        #expect(throws: UsageError.self) { try StationSlot.parse(ports: ["/dev/x", "/dev/x"], manifestSlots: []) }
        #expect(throws: UsageError.self) { try StationSlot.parse(ports: ["virtual:dev1"], manifestSlots: []) }
        #expect(try StationSlot.parse(ports: ["virtual:dev1?lines=auto"], manifestSlots: []).first?.name == "S1")
    }

    @Test func stationTextForResultsEventsAndCounters() {
        #expect(StationConsole.resultText(SlotResult(outcome: .passed, mac: "m", identity: "SN1")) == "PASSED as SN1")
        #expect(StationConsole.resultText(SlotResult(outcome: .skipped, mac: "m")) == "already provisioned: left alone")
        #expect(StationConsole.resultText(SlotResult(outcome: .stopped, mac: "m", failedStep: "write")) == "stopped before write (resumable)")
        #expect(StationConsole.resultText(SlotResult(outcome: .failed, mac: "m", failedStep: "first-boot", reason: "loop", diagnosis: "D1"))
                == "FAILED at first-boot: loop [doctor: D1]")
        let start = Date(timeIntervalSince1970: 1_000_000)
        var c = ShiftCounters(started: start)
        c.passed = 3
        c.failed = 1
        #expect(StationConsole.countersText(c, now: start.addingTimeInterval(3600)).hasPrefix("3 passed, 1 failed, 0 skipped; first-pass yield "))
        let result = StationEvent(event: .result, time: start, slot: "A1", result: SlotResult(outcome: .passed, mac: "m", identity: "SN1", seconds: 12.34))
        #expect(StationConsole.eventLines(.lines, result) == ["[A1] m: PASSED as SN1 (12.3 s)"])
        #expect(StationConsole.eventLines(.live, result).isEmpty)
        let json = StationConsole.eventLines(.json, result)
        #expect(json.count == 1 && json[0].hasPrefix("{\"event\":\"result\""))
        let stop = StationEvent(event: .stopping, time: start, stop: .immediate)
        #expect(StationConsole.eventLines(.lines, stop) == ["station: stopping now (records stay resumable)"])
        #expect(StationConsole.noteLine(.json, "hi") == "{\"detail\":\"hi\",\"event\":\"note\"}")
        var screen = StationConsole.LiveScreen()
        #expect(screen.frame(["a", "b"]) == "\r\u{1B}[2Ka\n\r\u{1B}[2Kb\n")
        #expect(screen.frame(["c"]) == "\u{1B}[2A\r\u{1B}[2Kc\n")
    }

    @Test func provisionProgressTextAndTheLiveBoard() {
        let e = ProvisionEvent(port: "virtual:d1", mac: "24:0a:c4:00:00:01", step: "write", state: .failed, detail: "no reply")
        #expect(ProvisionReport.eventLine(e) == "[virtual:d1 24:0a:c4:00:00:01] write: failed — no reply")
        #expect(ProvisionReport.eventLine(ProvisionEvent(port: "p", mac: nil, step: "write", state: .started)) == nil)
        #expect(ProvisionReport.liveStatus(e) == "24:0a:c4:00:00:01  FAILED at write: no reply")
        var board = ProvisionReport.LiveBoard(ports: ["virtual:d1", "virtual:d2"])
        #expect(board.update(e) == "\r\u{1B}[2Kvirtual:d1  24:0a:c4:00:00:01  FAILED at write: no reply\n\r\u{1B}[2Kvirtual:d2  waiting\n")
        #expect(board.update(ProvisionEvent(port: "virtual:d2", mac: nil, step: "connect", state: .started)).hasPrefix("\u{1B}[2A"))
        #expect(ProvisionReport.poolLine(.init(pool: "p", added: 2, total: 5, claimed: 1))
                == "pool p: 2 identities added from the values CSV (5 in the pool, 1 claimed)")
    }

    @Test func escrowRecoveryNamesTheNewestBlobOfEachKind() {
        func record(_ id: Int64, _ kind: String) -> SealedKeyRecord {
            var r = SealedKeyRecord(mac: "24:0a:c4:00:00:01", kind: kind, identity: "SN1", scheme: "s", recipient: "r", sealed: [])
            r.id = id
            return r
        }
        let records = [record(1, "flash_encryption_key"), record(2, "nvs_keys"), record(3, "flash_encryption_key")]
        #expect(EscrowRecovery.wanted(records, all: false).map(\.fileName) == ["240ac4000001-nvs_keys.bin", "240ac4000001-flash_encryption_key.bin"])
        #expect(EscrowRecovery.wanted(records, all: true).map(\.fileName)
                == ["240ac4000001-flash_encryption_key-1.bin", "240ac4000001-nvs_keys.bin", "240ac4000001-flash_encryption_key.bin"])
    }
}

/// Events collected from the line's threads.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ProvisionEvent] = []
    func add(_ e: ProvisionEvent) { lock.withLock { events.append(e) } }
    var all: [ProvisionEvent] { lock.withLock { events } }
}
