import BootSimulator
import ESPCore
import Flasher
import Foundation
import Testing
import TestSupport

/// Small differences the A-flasher and B* sessions showed (issue 13, item 5).
@Suite("Small findings of the golden sessions")
struct RecordedFindingsTests {
    @Test("the default strapping is an explicit choice: 0x13 by default, QEMU's 0x12 on request")
    func strapping() {
        #expect(BootConfig().strapping == BootConfig.devKitStrapping)
        #expect(BootConfig.devKitStrapping == 0x13 && BootConfig.qemuStrapping == 0x12)
    }

    @Test("a stub that was started but does not work is named, with the way out")
    func stubFailureNamesTheStub() {
        // efn_stub.txt: the stub greeted, then SPI_ATTACH failed; espforge said only "gave up … SPI_ATTACH failed".
        let e = FlasherError.stubFailed(stub: "esp32.json", why: "SPI_ATTACH failed (status 1, error 0x0 undefined)")
        #expect(e.diagnostic.message == "the flasher stub did not start: SPI_ATTACH failed (status 1, error 0x0 undefined); try --no-stub")
        #expect(e.diagnostic.hint?.contains("esp32.json") == true)
    }

    @Test("efuse: --help no longer says socket:// is unsupported; --before is accepted like chip and flash")
    func efuseCLI() throws {
        let help = try Espforge.run(["efuse", "summary", "--help"])
        #expect(help.status == 0)
        #expect(help.out.contains("socket://"))
        #expect(help.out.contains("--before"))
        let top = try Espforge.run(["efuse", "--help"])
        #expect(!top.out.contains("come with the flasher"), "\(top.out)")
        let dir = try TestEnvironment.temporaryDirectory("golden-efuse-before")
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("dev").path
        #expect(try Espforge.run(["device", "create", "--state", state, "--mac", "24:0a:c4:00:00:01"]).status == 0)
        let summary = try Espforge.run(["efuse", "summary", "--port", "virtual:" + state, "--before", "no-reset"])
        #expect(summary.status == 0, "\(summary.err)")
        let bad = try Espforge.run(["efuse", "summary", "--port", "virtual:" + state, "--before", "sideways"])
        #expect(bad.status != 0 && bad.err.contains("--before"))
    }

    @Test("flash write --help says the ESP32 ROM loader never gets compressed data")
    func flashWriteHelp() throws {
        let help = try Espforge.run(["flash", "write", "--help"])
        #expect(help.status == 0)
        #expect(help.out.contains("compressed only through the flasher stub"), "\(help.out)")
    }
}
