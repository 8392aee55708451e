import BootSimulator
import ESPCore
import Foundation
import Testing
import TestSupport
import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

/// A temporary folder with the plan's files, virtual devices and the sdkconfig.
final class Workspace {
    let root: URL
    init(_ label: String) throws { root = try TestEnvironment.temporaryDirectory(label) }
    deinit { try? FileManager.default.removeItem(at: root) }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// Writes `bytes` to `name` and returns its path.
    @discardableResult
    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        try Data(bytes).write(to: root.appendingPathComponent(name))
        return path(name)
    }

    func file(_ name: String, text: String) throws -> String { try file(name, Array(text.utf8)) }

    /// ADDR FILE arguments of the seed's layout: bootloader, table at 0x10000, the app in both slots.
    func seedPlan(bootloader: [UInt8], app: [UInt8]) throws -> [String] {
        ["0x1000", try file("bootloader.bin", bootloader), "0x10000", try file("partition-table.bin", try Scenarios.table()),
         "0x60000", try file("app.bin", app), "0x210000", path("app.bin")]
    }

    /// A blank virtual ESP32 rev 3 with 4MB flash at `name`.
    func device(_ name: String) throws -> String {
        let dir = path(name)
        try DeviceStore(directory: dir).create(try Device.create(DeviceDescription(mac: "24:0a:c4:00:00:07")), force: false)
        return dir
    }

    func copy(_ from: String, to name: String) throws -> String {
        try FileManager.default.copyItem(atPath: from, toPath: path(name))
        return path(name)
    }
}

/// Writes `data` into a stored device as a flasher would (sector erase, program) and saves it.
func store(_ state: String, _ writes: [(Int, [UInt8])]) throws {
    let s = DeviceStore(directory: state)
    var d = try s.load()
    for (address, data) in writes {
        d.flash.eraseSectors(address, data.count, timing: .w25q32jv)
        d.flash.program(address, data, timing: .w25q32jv)
    }
    try s.saveWholeFlash(d.flash)
}

/// Every file of a state folder, for "left untouched" checks.
func snapshot(_ state: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: state) {
        out[name] = FileManager.default.contents(atPath: state + "/" + name)
    }
    return out
}

/// `espforge device boot --json` on a state folder.
func deviceBoot(_ state: String, sdkconfig: String?) throws -> BootOutcome {
    let r = try Espforge.run(["device", "boot", "--state", state, "--json"] + (sdkconfig.map { ["--sdkconfig", $0] } ?? []))
    guard r.status == 0 || r.status == 2 else { throw TestSupportError.missing("device boot failed (\(r.status)): \(r.err)") }
    return try JSONDecoder().decode(BootOutcome.self, from: Data(r.stdout))
}

/// Log lines with the ESP-IDF timestamps dropped (`I (123) boot: x` → `I boot: x`).
func withoutTimestamps(_ lines: [String]) -> [String] {
    lines.map { l in
        guard let r = l.range(of: #"^([IWE]) \(\d+\) "#, options: .regularExpression) else { return l }
        return String(l[l.startIndex]) + " " + l[r.upperBound...]
    }
}

/// Writes the plan into `state` with the real esptool through `espforge device serve`.
func esptoolWrite(state: String, pairs: [String]) throws -> ProcessResult {
    let server = try DeviceServerProcess(state: state, maxSeconds: 300)
    defer { server.stop() }
    return try Oracle.run("esptool", ["--chip", "esp32", "--port", server.url, "--before", "no-reset",
                                      "--after", "no-reset", "write-flash", "--flash-size", "keep"] + pairs)
}
