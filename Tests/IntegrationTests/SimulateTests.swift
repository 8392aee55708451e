import BootSimulator
import Diagnostics
import ESPCore
import Foundation
import Testing
import VirtualDevice
import TestSupport

struct PreflightOutput: Decodable {
    var passed: Bool
    var findings: [Finding]
    var simulation: FirstBootPrediction?
}

/// `preflight --simulate` against the real thing: the same plan written with esptool into a
/// virtual device, then `device boot`.
@Suite("preflight --simulate = esptool write-flash + device boot")
struct SimulateTests {
    enum Case: String, CaseIterable, Sendable {
        /// Correctly signed bootloader and app, SBv2 + flash encryption (development mode).
        case good
        /// The seed: bootloader signed as 8MB, header then rewritten to 4MB.
        case seed
    }

    @Test("same outcome", .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: Case.allCases)
    func sameOutcome(_ c: Case) throws {
        let ws = try Workspace("espforge-simulate-\(c.rawValue)")
        let key = try Scenarios.keyA()
        let bootloader = c == .good ? try Scenarios.signedBootloader(size: "4MB", key: key)
            : try Scenarios.seedBootloader(key: key, rehash: false)
        let pairs = try ws.seedPlan(bootloader: bootloader, app: try Scenarios.app(key: key))
        let sdk = try ws.file("sdkconfig", text: Scenarios.seedSDKConfigText)
        let state = try ws.device("dev")
        let before = try snapshot(state)

        // (a) the prediction.
        let pf = try Espforge.run(["preflight", "--simulate", "--state", state, "--sdkconfig", sdk, "--json"] + pairs)
        let predicted = try JSONDecoder().decode(PreflightOutput.self, from: Data(pf.stdout))
        let sim = try #require(predicted.simulation, "\(pf.err)")
        #expect(try snapshot(state) == before, "preflight --simulate changed the state folder")
        switch c {
        case .good:
            #expect(pf.status == 0, "\(pf.out) \(pf.err)")
            #expect(sim.bootedPartition == "ota_0")
            #expect(sim.bootLogs.count == 2, "first power-on + the reset after in-place encryption")
            #expect(sim.burnedEFuses.contains { $0.hasPrefix("ABS_DONE_1 ") } && sim.burnedEFuses.contains { $0.hasPrefix("FLASH_CRYPT_CNT ") })
            #expect(sim.encryptedRegions.contains { $0.hasPrefix("bootloader") })
        case .seed:
            #expect(pf.status == 1, "static checks flag the rewritten header")
            #expect(predicted.findings.contains { $0.code == "PF003" }, "\(predicted.findings.map(\.code))")
            #expect(sim.bootedPartition == nil && sim.burnedEFuses.isEmpty && sim.encryptedRegions.isEmpty)
            #expect(sim.bootLogs.joined().contains("Image hash failed - image is corrupt"))
        }

        // (b) the real write and boot, on a copy.
        let copy = try ws.copy(state, to: "copy")
        let w = try esptoolWrite(state: copy, pairs: pairs)
        #expect(w.status == 0, "\(w.out.suffix(600)) \(w.err.suffix(600))")
        let real = try deviceBoot(copy, sdkconfig: sdk)
        // `device inspect` shows the simulator's power-on view of the flashed copy (read-only).
        let inspect = try Espforge.run(["device", "inspect", "--state", copy])
        #expect(inspect.out.contains(c == .good ? "power-on:  app started from ota_0" : "power-on:  no app partition could be booted"),
                "\(inspect.out)")

        // (c) equal outcomes.
        #expect(sim.result == real.result.rawValue)
        #expect(sim.bootedPartition == real.bootedPartition)
        #expect(sim.errorCode == real.errorCode)
        #expect(sim.burnedEFuses == real.efusesBurned.map { "\($0.name) \($0.before)→\($0.after)" })
        #expect(sim.encryptedRegions == real.encryptedRegions.map {
            "\($0.name) (\(NumberParsing.hex($0.offset)), \(NumberParsing.hex($0.length, width: 1)) bytes)"
        })
        let simLines = withoutTimestamps(sim.bootLogs.joined().split(separator: "\n", omittingEmptySubsequences: false).map(String.init).dropLast())
        let realLines = withoutTimestamps(real.log.map(\.text))
        #expect(simLines == realLines, "first difference at line \(simLines.indices.first { $0 >= realLines.count || simLines[$0] != realLines[$0] } ?? simLines.count)")
        #expect(realLines.count > 20)
    }

    @Test("flags-only target: a blank device of that revision and flash size",
          .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
    func flagsOnly() throws {
        let ws = try Workspace("espforge-simulate-flags")
        let key = try Scenarios.keyA()
        let pairs = try ws.seedPlan(bootloader: try Scenarios.signedBootloader(size: "4MB", key: key), app: try Scenarios.app(key: key))
        let sdk = try ws.file("sdkconfig", text: Scenarios.seedSDKConfigText)
        let text = try Espforge.run(["preflight", "--simulate", "--chip", "esp32", "--chip-rev", "3", "--flash-size", "4MB",
                                     "--sdkconfig", sdk] + pairs)
        #expect(text.status == 0, "\(text.out) \(text.err)")
        #expect(text.out.contains("--- power cycle 2 (reset by the bootloader)"))
        #expect(text.out.contains("predicted: app started from ota_0"))
        #expect(text.out.contains("eFuses burned: ") && text.out.contains("ABS_DONE_1 0x0→0x1"))
        #expect(text.out.contains("encrypted in place: bootloader"))
        // Without a sdkconfig the options come from the plan: the signed bootloader means Secure
        // Boot V2 (the bootloader burns ABS_DONE_1), nothing is marked encrypted; the app boots.
        let plain = try Espforge.run(["preflight", "--simulate", "--chip-rev", "3", "--flash-size", "4MB",
                                      "--partition-table-offset", "0x10000"] + pairs)
        #expect(plain.status == 0 && plain.out.contains("predicted: app started from ota_0"), "\(plain.out) \(plain.err)")
        #expect(plain.out.contains("no sdkconfig: the bootloader's options are inferred from the plan"))
        #expect(plain.out.contains("CONFIG_SECURE_BOOT_V2_ENABLED=y") && plain.out.contains("ABS_DONE_1 0x0→0x1"))
        #expect(plain.out.contains("encrypted in place: nothing"))
    }

    @Test("encrypted entries go through the chip's key; the device's own key is used",
          .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
    func encryptedPlanEntries() throws {
        let ws = try Workspace("espforge-simulate-encrypt")
        let key = try Scenarios.keyA()
        let app = try Scenarios.app(key: key)
        let pairs = try ws.seedPlan(bootloader: try Scenarios.signedBootloader(size: "4MB", key: key), app: app)
        let sdk = try ws.file("sdkconfig", text: Scenarios.seedSDKConfigText)
        // A device that already went through its first boot: flash encryption on, key in BLOCK1.
        let state = try ws.device("dev")
        try store(state, [(0x1000, try Scenarios.signedBootloader(size: "4MB", key: key)), (0x10000, try Scenarios.table()),
                          (0x60000, app), (0x210000, app)])
        let first = try deviceBoot(state, sdkconfig: sdk)
        #expect(first.booted && first.flashEncryptionEnabled)
        let before = try snapshot(state)
        // Re-flashing the app as plaintext onto the encrypted chip: the bootloader cannot read it.
        let plaintext = try Espforge.run(["preflight", "--simulate", "--state", state, "--json", "0x60000", ws.path("app.bin"),
                                          "0x210000", ws.path("app.bin")])
        let p = try #require(try JSONDecoder().decode(PreflightOutput.self, from: Data(plaintext.stdout)).simulation)
        #expect(p.bootedPartition == nil && p.writes.allSatisfy { $0.hasSuffix("plaintext") }, "\(p)")
        // The same with --encrypt: encrypted with the device's key, the app boots.
        let encrypted = try Espforge.run(["preflight", "--simulate", "--state", state, "--encrypt", "--json", "0x60000", ws.path("app.bin"),
                                          "0x210000", ws.path("app.bin")])
        let e = try #require(try JSONDecoder().decode(PreflightOutput.self, from: Data(encrypted.stdout)).simulation)
        #expect(e.bootedPartition == "ota_0" && e.writes.allSatisfy { $0.hasSuffix("encrypted with the chip's key") }, "\(e)")
        #expect(e.burnedEFuses.isEmpty && e.encryptedRegions.isEmpty)
        #expect(try snapshot(state) == before)
    }

    @Test("--port reads the chip through its loader: the same target and findings as --state, nothing written",
          .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
    func targetFromAPort() throws {
        let ws = try Workspace("espforge-preflight-port")
        let key = try Scenarios.keyA()
        let app = try Scenarios.app(key: key)
        let pairs = try ws.seedPlan(bootloader: try Scenarios.signedBootloader(size: "4MB", key: key), app: app)
        let sdk = try ws.file("sdkconfig", text: Scenarios.seedSDKConfigText)
        // A device after its first boot: Secure Boot digest and flash encryption key burned.
        let state = try ws.device("dev")
        try store(state, [(0x1000, try Scenarios.signedBootloader(size: "4MB", key: key)), (0x10000, try Scenarios.table()),
                          (0x60000, app), (0x210000, app)])
        #expect(try deviceBoot(state, sdkconfig: sdk).booted)
        let flash = try DeviceStore(directory: state).load().flash.bytes
        func target(_ args: [String]) throws -> [String: Any] {
            let r = try Espforge.run(["preflight", "--json"] + args + pairs)
            var obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any], "\(r.err)")
            var t = try #require(obj["target"] as? [String: Any])
            t["source"] = nil
            obj["target"] = t
            return obj
        }
        let viaPort = try target(["--port", "virtual:" + state, "--before", "no-reset"])
        let viaState = try target(["--state", state])
        let a = try JSONSerialization.data(withJSONObject: viaPort, options: .sortedKeys)
        let b = try JSONSerialization.data(withJSONObject: viaState, options: .sortedKeys)
        #expect(a == b, "\(String(decoding: a, as: UTF8.self))\n\(String(decoding: b, as: UTF8.self))")
        #expect((viaPort["passed"] as? Bool) == false, "plaintext onto an encrypted chip is found")
        #expect(try DeviceStore(directory: state).load().flash.bytes == flash)
    }
}

