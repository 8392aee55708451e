import Testing
@testable import Provisioning

@Suite("BootWatch: judging a first boot from the console")
struct BootWatchTests {
    let markers = ["cpu_start: Pro cpu start user code"]

    @Test("the ready line ends the watch, even when it arrives in pieces")
    func readyInPieces() {
        var w = BootWatch(readyLine: nil, defaultMarkers: markers)
        let log = "ets Jul 29 2019 12:21:46\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
            + "I (512) boot: Loaded app from partition at offset 0x60000\r\nI (700) cpu_start: Pro cpu start user code\r\n"
        for chunk in Array(log.utf8).chunked(7) { w.feed(chunk) }
        #expect(w.verdict == .ready(line: "I (700) cpu_start: Pro cpu start user code"))
        #expect(w.bootedOffset == 0x60000)
    }

    @Test("a custom ready line replaces the defaults")
    func customReadyLine() {
        var w = BootWatch(readyLine: "factory: READY", defaultMarkers: markers)
        #expect(w.feed(Array("I (700) cpu_start: Pro cpu start user code\n".utf8)) == .watching)
        #expect(w.feed(Array("I (900) factory: READY sn=42\n".utf8)) == .ready(line: "I (900) factory: READY sn=42"))
    }

    @Test("endless resets are a boot loop")
    func bootLoop() {
        var w = BootWatch(readyLine: nil, defaultMarkers: markers, maxBoots: 3)
        var verdict = BootWatch.Verdict.watching
        for _ in 0..<4 { verdict = w.feed(Array("ets Jun  8 2016 00:22:57\nrst:0x10 (RTCWDT_RTC_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\ninvalid header: 0xffffffff\n".utf8)) }
        guard case .failed(let reason) = verdict else { Issue.record("\(verdict)"); return }
        #expect(reason.contains("boot loop"))
    }

    @Test("a console that stops after a failure the doctor knows is a failed boot; a quiet healthy boot is not")
    func quietConsole() {
        var failed = BootWatch(readyLine: nil, defaultMarkers: markers)
        failed.feed(Array("rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\nsecure boot check fail\nets_main.c 371\n".utf8))
        guard case .failed(let reason) = failed.quiet() else { Issue.record("\(failed.verdict)"); return }
        #expect(reason.contains("DR"))
        var busy = BootWatch(readyLine: nil, defaultMarkers: markers)
        busy.feed(Array("rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\nI (600) flash_encrypt: Encrypting partition 2 at offset 0x60000 (length 0x30000)...\n".utf8))
        #expect(busy.quiet() == .watching)
    }

    @Test("arbitrary bytes never crash the watch and a runaway line is bounded")
    func arbitraryBytes() {
        var rng = SystemRandomNumberGenerator()
        var w = BootWatch(readyLine: nil, defaultMarkers: markers)
        for _ in 0..<50 { w.feed((0..<500).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
        _ = w.quiet()
        #expect(w.console.utf8.count <= 50 * 500 * 3 + 100)
    }
}

extension Array {
    func chunked(_ n: Int) -> [[Element]] {
        stride(from: 0, to: count, by: n).map { Array(self[$0..<Swift.min($0 + n, count)]) }
    }
}
