import Foundation
import Manifest
import Testing
@testable import ProductionLine
@testable import Provisioning

/// The slot state machine on its own: every input carries its time, nothing waits.
@Suite("Station slot state machine")
struct SlotMachineTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)
    func at(_ s: Double) -> Date { t0.addingTimeInterval(s) }

    func passed(_ mac: String, id: String = "SN1") -> SlotResult { SlotResult(outcome: .passed, mac: mac, identity: id, seconds: 12) }

    @Test("an empty slot keeps probing; a board that answers is provisioned")
    func appear() {
        var m = SlotMachine(name: "A1", port: "socket://x:1", now: t0)
        #expect(m.start == .probe(after: 0))
        #expect(m.probed(.absent, now: at(1)) == .probe(after: m.policy.insertPoll))
        #expect(m.state.phase == .waiting)
        #expect(m.probed(.present(mac: "aa"), now: at(2)) == .provision(mac: "aa"))
        #expect(m.state.phase == .provisioning && m.state.mac == "aa" && m.state.since == at(2))
    }

    @Test("progress follows the pipeline's steps; the claimed identity is shown")
    func progress() {
        var m = SlotMachine(name: "A1", port: "p", now: t0)
        _ = m.probed(.present(mac: "aa"), now: at(1))
        m.progressed(ProvisionEvent(port: "p", mac: "aa", step: "claim", state: .ok, detail: "SN7 (already held)"))
        #expect(m.state.identity == "SN7" && m.state.step == "claim")
        let afterClaim = m.state.progress
        m.progressed(ProvisionEvent(port: "p", mac: "aa", step: "write", state: .started))
        #expect(m.state.step == "write" && m.state.progress > afterClaim && m.state.progress < 1)
        // A late event of an earlier step never moves the bar back.
        let before = m.state.progress
        m.progressed(ProvisionEvent(port: "p", mac: "aa", step: "identify", state: .ok))
        #expect(m.state.progress == before)
    }

    @Test("result shown, then the same board is waited out; removal frees the slot for the next")
    func resultAndRemoval() {
        var m = SlotMachine(name: "A1", port: "p", now: t0)
        _ = m.probed(.present(mac: "aa"), now: at(1))
        #expect(m.finished(passed("aa"), now: at(20)) == .probe(after: m.policy.removalPoll))
        #expect(m.state.phase == .result && m.state.lastResult?.outcome == .passed && m.state.boards == 1 && m.state.progress == 1)
        // Still there: not provisioned again.
        #expect(m.probed(.present(mac: "aa"), now: at(22)) == .probe(after: m.policy.removalPoll))
        #expect(m.state.phase == .removal)
        #expect(m.probed(.present(mac: "aa"), now: at(24)) == .probe(after: m.policy.removalPoll))
        // Taken out.
        #expect(m.probed(.absent, now: at(25)) == .probe(after: m.policy.insertPoll))
        #expect(m.state.phase == .waiting && m.state.mac == nil && m.state.lastResult?.mac == "aa", "the last result stays shown")
        #expect(m.probed(.present(mac: "bb"), now: at(27)) == .provision(mac: "bb"))
    }

    @Test("a different MAC in a finished slot is the next board (swapped between two probes)")
    func swapped() {
        var m = SlotMachine(name: "A1", port: "p", now: t0)
        _ = m.probed(.present(mac: "aa"), now: at(1))
        _ = m.finished(SlotResult(outcome: .failed, mac: "aa", failedStep: "preflight", reason: "2MB"), now: at(5))
        #expect(m.probed(.present(mac: "bb"), now: at(6)) == .provision(mac: "bb"))
        #expect(m.state.phase == .provisioning && m.state.mac == "bb")
    }

    @Test("link errors in a row make the slot faulty; a board that answers resets the count")
    func faulty() {
        var m = SlotMachine(name: "A1", port: "p", now: t0)
        #expect(m.policy.faultyAfter == 3)
        #expect(m.probed(.linkError("no SYNC"), now: at(1)) == .probe(after: m.policy.insertPoll))
        #expect(m.probed(.linkError("no SYNC"), now: at(2)) == .probe(after: m.policy.insertPoll))
        #expect(m.state.linkErrors == 2)
        // A board answers and provisions: the count starts again.
        _ = m.probed(.present(mac: "aa"), now: at(3))
        #expect(m.state.linkErrors == 0)
        _ = m.finished(passed("aa"), now: at(9))
        _ = m.probed(.absent, now: at(10))
        // Connect failures of the pipeline count too.
        let lost = SlotResult(ProvisionResult(port: "p", mac: nil, identity: nil, ok: false, failedStep: "connect", reason: "lost",
                                              diagnosis: nil, bootedPartition: nil, virtualMilliseconds: 0, resumedAfter: nil), seconds: 1)
        #expect(lost.linkError)
        _ = m.probed(.present(mac: "bb"), now: at(11))
        _ = m.finished(lost, now: at(12))
        _ = m.probed(.linkError("x"), now: at(13))
        #expect(m.probed(.linkError("x"), now: at(14)) == .idle)
        #expect(m.state.phase == .faulty && m.state.lastLinkError == "x")
        // A faulty slot ignores what it is told.
        #expect(m.probed(.present(mac: "cc"), now: at(15)) == .idle)
        #expect(m.state.phase == .faulty)
    }

    @Test("first stop: idle slots stop, a provisioning slot finishes its board first; second stop: at once")
    func signals() {
        var idle = SlotMachine(name: "A1", port: "p", now: t0)
        _ = idle.probed(.absent, now: at(1))
        #expect(idle.requestStop(.graceful, now: at(2)) == .idle)
        #expect(idle.state.phase == .stopped)

        var busy = SlotMachine(name: "A2", port: "q", now: t0)
        _ = busy.probed(.present(mac: "aa"), now: at(1))
        #expect(busy.requestStop(.graceful, now: at(2)) == .provision(mac: "aa"), "keeps going until a safe step")
        #expect(busy.state.phase == .provisioning && busy.shouldStopBeforeNextStep)
        let stopped = SlotResult(ProvisionResult(port: "q", mac: "aa", identity: "SN1", ok: false, failedStep: "first-boot",
                                                 reason: "stopped", diagnosis: nil, bootedPartition: nil, virtualMilliseconds: 0,
                                                 resumedAfter: nil, state: .stopped), seconds: 3)
        #expect(stopped.outcome == .stopped && !stopped.linkError)
        #expect(busy.finished(stopped, now: at(3)) == .idle)
        #expect(busy.state.phase == .stopped && busy.state.lastResult?.outcome == .stopped)

        var second = SlotMachine(name: "A3", port: "r", now: t0)
        _ = second.probed(.present(mac: "bb"), now: at(1))
        _ = second.requestStop(.graceful, now: at(2))
        #expect(second.requestStop(.immediate, now: at(3)) == .idle)
        #expect(second.state.phase == .stopped && second.stop == .immediate)
        // A board taken out of a stopping station's slot is not followed by another.
        var waiting = SlotMachine(name: "A4", port: "s", now: t0)
        _ = waiting.probed(.present(mac: "cc"), now: at(1))
        _ = waiting.finished(passed("cc"), now: at(2))
        _ = waiting.requestStop(.graceful, now: at(3))
        #expect(waiting.probed(.present(mac: "dd"), now: at(4)) == .idle)
    }

    @Test("shift counters: passes, fails, skips; first-pass yield counts each board's first attempt once")
    func counters() {
        var c = ShiftCounters(started: t0)
        c.record(passed("a"))
        c.record(SlotResult(outcome: .failed, mac: "b", failedStep: "write", reason: "x"))
        c.record(passed("b"))   // the same board again, now passing: not a first pass
        c.record(SlotResult(outcome: .skipped, mac: "c"))
        c.record(SlotResult(outcome: .stopped, mac: "d"))
        #expect(c.passed == 2 && c.failed == 1 && c.skipped == 1 && c.stopped == 1)
        #expect(c.firstAttempts == 2 && c.firstPassPassed == 1 && c.firstPassYield == 0.5)
        #expect(c.boardsPerHour(now: t0.addingTimeInterval(1800)) == 6)
    }

    @Test("fleet defects: a count spreads over the failing kinds; kinds by name; bad specs are refused")
    func defects() throws {
        let three = try BoardDefect.parse("3")
        #expect(three.count == 3 && Set(three).count == 3 && !three.contains(.flaky))
        #expect(try BoardDefect.parse("reheadered=2,flaky") == [.reheadered, .reheadered, .flaky])
        #expect(throws: (any Error).self) { try BoardDefect.parse("melted=1") }
        #expect(throws: (any Error).self) { try BoardDefect.parse("secured=x") }
    }

    @Test("manifest [station] slots: read in order; duplicates and missing keys are errors with a line")
    func manifestSlots() throws {
        let base = """
            version = 1
            [chip]
            type = "esp32"
            flash_size = "4MB"
            [build]
            dir = "build"

            """
        let m = try Manifest.parse(base + "[station]\nslots = [{ name = \"A1\", port = \"/dev/ttyUSB0\" }, { name = \"A2\", port = \"socket://127.0.0.1:5000\" }]\n")
        #expect(m.stationSlots == [.init(name: "A1", port: "/dev/ttyUSB0"), .init(name: "A2", port: "socket://127.0.0.1:5000")])
        #expect(try Manifest.parse(base).stationSlots.isEmpty)
        for bad in ["slots = [{ name = \"A1\", port = \"p\" }, { name = \"A1\", port = \"q\" }]",
                    "slots = [{ name = \"A1\" }]", "slots = []", "slots = [{ name = \"A1\", port = \"p\", speed = 3 }]"] {
            #expect(throws: (any Error).self, "\(bad)") { try Manifest.parse(base + "[station]\n" + bad + "\n") }
        }
    }
}
