import ESPCore
import Flasher
import Testing

/// The flash progress text and the stub choice, through the library (what `espforge flash` shows).
@Suite("FlashProgressBoard and StubChoice")
struct ProgressBoardTests {
    @Test func pipedOutputIsOneLinePerEventAndFindingsGoToStderr() {
        var board = FlashProgressBoard(devices: ["a", "b"], redraws: false)
        #expect(board.take(FlashEvent(device: "a", event: "progress", address: 0x1000, size: 200, done: 50)) == .none)
        #expect(board.take(FlashEvent(device: "a", event: "written", address: 0x1000, size: 200, detail: "compressed"))
                == .line("a: 0x00001000 written (200 bytes, compressed)"))
        #expect(board.take(FlashEvent(device: "b", event: "failed", detail: "no reply")) == .line("b: FAILED: no reply"))
        let finding = board.take(FlashEvent(device: "b", event: "finding", detail: "FP001 \u{1B}[2J"))
        #expect(finding == .stderr(Diagnostic.terminalSafe("b: FP001 \u{1B}[2J") + "\n"))
        if case .stderr(let text) = finding { #expect(!text.contains("\u{1B}")) }
    }

    @Test func onATerminalEveryDeviceLineIsRedrawnInPlace() {
        var board = FlashProgressBoard(devices: ["a", "b"], redraws: true)
        let first = board.take(FlashEvent(device: "b", event: "progress", address: 0x10000, size: 4, done: 1))
        #expect(first == .redraw("\u{1B}[2Ka: …\n\u{1B}[2Kb: 0x00010000 25%\n"))
        #expect(board.take(FlashEvent(device: "a", event: "done")) == .redraw("\u{1B}[2A\u{1B}[2Ka: done\n\u{1B}[2Kb: 0x00010000 25%\n"))
    }

    @Test func noStubMeansTheROMLoaderAndSaysWhy() throws {
        let choice = try StubChoice.resolve(path: nil, noStub: true)
        #expect(choice.loader == "rom" && choice.stub == nil && choice.reason == "--no-stub")
        #expect(choice.line == "stub: none, using the ROM loader: --no-stub\n")
        #expect(throws: (any Error).self) { try StubChoice.resolve(path: "/nonexistent/stub.json") }
    }
}
