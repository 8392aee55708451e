import ESPCore
import Flasher
import Foundation
import Testing
import TestSupport

/// Finding esptool's flasher stub by looking in known folders, never by starting an interpreter.
@Suite("flasher stub lookup")
struct StubLocatorTests {
    /// `<root>/lib/<python>/site-packages/esptool/targets/stub_flasher/<sub>/esp32.json`.
    @discardableResult
    static func plantStub(venv: URL, python: String, sub: String, bytes: Data = Data("{}".utf8)) throws -> String {
        let dir = venv.appendingPathComponent("lib/\(python)/site-packages/esptool/targets/stub_flasher/\(sub)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("esp32.json")
        try bytes.write(to: file)
        return file.path
    }

    @Test func activeVirtualenvNewestPythonAndCurrentStubFirst() throws {
        let root = try TestEnvironment.temporaryDirectory("stub-venv")
        defer { try? FileManager.default.removeItem(at: root) }
        let venv = root.appendingPathComponent("venv")
        try Self.plantStub(venv: venv, python: "python3.9", sub: "2")
        try Self.plantStub(venv: venv, python: "python3.12", sub: "1")
        let newest = try Self.plantStub(venv: venv, python: "python3.12", sub: "2")
        let home = root.appendingPathComponent("home").path
        let r = StubLocator.search(environment: ["VIRTUAL_ENV": venv.path], home: home)
        #expect(r.found?.path == newest)
        #expect(r.found?.foundBy.contains("$VIRTUAL_ENV") == true)

        // $ESPFORGE_STUB names one file and wins over everything else.
        let explicit = root.appendingPathComponent("mine.json")
        try Data("{}".utf8).write(to: explicit)
        let e = StubLocator.search(environment: ["VIRTUAL_ENV": venv.path, "ESPFORGE_STUB": explicit.path], home: home)
        #expect(e.found == StubLocation(path: explicit.path, foundBy: "$ESPFORGE_STUB"))
        let missing = StubLocator.search(environment: ["ESPFORGE_STUB": root.path + "/absent.json"], home: home)
        #expect(missing.found == nil && missing.missingExplicit == root.path + "/absent.json")
    }

    @Test func pipUserSiteIsSearchedAfterTheVirtualenvs() throws {
        let root = try TestEnvironment.temporaryDirectory("stub-home")
        defer { try? FileManager.default.removeItem(at: root) }
        let home = root.appendingPathComponent("home")
        let user = try Self.plantStub(venv: home.appendingPathComponent(".local"), python: "python3.11", sub: "1")
        let r = StubLocator.search(environment: [:], home: home.path)
        #expect(r.found == StubLocation(path: user, foundBy: "pip user site-packages"))
        // An empty virtualenv is looked at (and named) first.
        let venv = root.appendingPathComponent("empty-venv/lib/python3.11/site-packages")
        try FileManager.default.createDirectory(at: venv, withIntermediateDirectories: true)
        let r2 = StubLocator.search(environment: ["VIRTUAL_ENV": root.path + "/empty-venv"], home: home.path)
        #expect(r2.found?.path == user)
        #expect(r2.searched.first?.hasPrefix("$VIRTUAL_ENV") == true)
    }

    /// Through the CLI, with a `python3` on PATH that would leave a mark if anything started it.
    @Test func cliUsesTheVirtualenvStubWithoutStartingPython() throws {
        guard let real = StubImage.locate() else {
            #expect(!Oracle.availableOrCI, "esptool stub JSON not found (oracle venv)")
            return
        }
        let root = try TestEnvironment.temporaryDirectory("stub-cli")
        defer { try? FileManager.default.removeItem(at: root) }
        let venv = root.appendingPathComponent("venv")
        let planted = try Self.plantStub(venv: venv, python: "python3.11", sub: "1",
                                         bytes: try Data(contentsOf: URL(fileURLWithPath: real)))
        let bin = root.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let mark = root.appendingPathComponent("python-was-started").path
        for name in ["python3", "python", "env"] {
            let script = bin.appendingPathComponent(name)
            try Data("#!/bin/sh\ntouch '\(mark)'\nexit 1\n".utf8).write(to: script)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        }
        let dev = try makeDevice("stub-cli")
        defer { try? FileManager.default.removeItem(at: dev) }
        let env = ["PATH": bin.path, "HOME": root.appendingPathComponent("home").path, "VIRTUAL_ENV": venv.path]

        let json = try ProcessRunner.run(Espforge.path, ["flash", "erase", "--json", "--port", "virtual:" + dev.path, "0x20000", "0x1000"],
                                         environment: env)
        #expect(json.status == 0, "\(json.err)")
        let first = try #require(json.out.split(separator: "\n").first)
        let event = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        #expect(event["event"] as? String == "stub" && event["loader"] as? String == "stub")
        #expect(event["path"] as? String == planted)
        #expect((event["found_by"] as? String)?.contains("$VIRTUAL_ENV") == true)

        let text = try ProcessRunner.run(Espforge.path, ["flash", "erase", "--port", "virtual:" + dev.path, "0x20000", "0x1000"],
                                         environment: env)
        #expect(text.status == 0, "\(text.err)")
        // One line, rendered terminal-safe as every stderr line (long paths are shortened in the
        // middle), naming the detected chip's stub file first (the stub is looked up per chip).
        #expect(text.err == "stub: esp32.json for the ESP32: " + Diagnostic.terminalSafe("\(planted) (from $VIRTUAL_ENV (\(venv.path)))") + "\n", "\(text.err)")

        let rom = try ProcessRunner.run(Espforge.path, ["flash", "erase", "--no-stub", "--port", "virtual:" + dev.path, "0x20000", "0x1000"],
                                        environment: env)
        #expect(rom.status == 0 && rom.err.contains("using the ROM loader: --no-stub"), "\(rom.err)")

        let bad = try ProcessRunner.run(Espforge.path, ["flash", "erase", "--port", "virtual:" + dev.path, "0x20000", "0x1000"],
                                        environment: env.merging(["ESPFORGE_STUB": root.path + "/absent.json"]) { $1 })
        #expect(bad.status == 1 && bad.err.contains("ESPFORGE_STUB"), "\(bad.err)")
        #expect(!FileManager.default.fileExists(atPath: mark), "a python interpreter was started")
    }
}
