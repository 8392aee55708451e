import ESPCore
import Foundation
import ProductionLine
import Provisioning

/// How `espforge station` shows the line: a live table on a terminal, one line per event when
/// piped, or one JSON event per line.
final class StationView: @unchecked Sendable {
    enum Mode { case live, lines, json }
    let mode: Mode
    let slots: [StationSlot]
    private let lock = NSLock()
    private var drawnLines = 0
    private var lastDraw = Date.distantPast
    private var timer: DispatchSourceTimer?
    private var notes: [String] = []

    init(mode: Mode, slots: [StationSlot]) {
        self.mode = mode
        self.slots = slots
    }

    func start(_ station: Station) {
        switch mode {
        case .json:
            let s = station.snapshot()
            line(jsonText(["event": "start", "slots": s.slots.map { "\($0.name)=\($0.port)" }.joined(separator: " ")]))
        case .lines:
            for s in slots { line("[\(s.name)] \(s.port): waiting for a board") }
        case .live:
            let t = DispatchSource.makeTimerSource(queue: .global())
            t.schedule(deadline: .now() + 0.5, repeating: 0.5)
            t.setEventHandler { [weak self, weak station] in
                guard let self, let station else { return }
                self.draw(station.snapshot(), force: true)
            }
            t.resume()
            timer = t
            draw(station.snapshot(), force: true)
        }
    }

    func note(_ text: String) {
        if mode == .json { return line(jsonText(["event": "note", "detail": text])) }
        if mode == .live { lock.withLock { notes.append(text); if notes.count > 3 { notes.removeFirst() } }; return }
        line(text)
    }

    func show(_ e: StationEvent, _ station: Station) {
        switch mode {
        case .json:
            if let text = try? Self.encoder.encode(e) { line(String(decoding: text, as: UTF8.self)) }
        case .live:
            draw(station.snapshot(), force: e.event != .step)
        case .lines:
            guard let slot = e.slot else {
                if e.event == .stopping {
                    line(e.stop == .immediate ? "station: stopping now (records stay resumable)"
                         : "station: stopping: no more boards; boards in progress stop before their next step")
                }
                return
            }
            switch e.event {
            case .slot:
                guard let s = e.state else { return }
                switch s.phase {
                case .waiting: line("[\(slot)] waiting for a board")
                case .removal: line("[\(slot)] \(s.mac ?? "?"): take the board out")
                case .faulty: line("[\(slot)] FAULTY: \(s.linkErrors) link errors in a row (\(s.lastLinkError ?? "")); slot skipped")
                case .stopped: line("[\(slot)] stopped")
                case .provisioning: line("[\(slot)] \(s.mac ?? "?"): board in, provisioning")
                case .result: break
                }
            case .step:
                guard let p = e.step, p.state == .failed || p.state == .skipped else { return }
                line("[\(slot)] \(p.mac ?? "?") \(p.step): \(p.state.rawValue)" + (p.detail.map { " — \($0)" } ?? ""))
            case .result:
                guard let r = e.result else { return }
                line("[\(slot)] \(r.mac ?? "?"): " + Self.resultText(r) + String(format: " (%.1f s)", r.seconds))
                if let c = e.counters { line("station: " + Self.countersText(c, now: e.time)) }
            case .stopping: break
            }
        }
    }

    func finish(_ s: StationSnapshot) {
        timer?.cancel()
        switch mode {
        case .json:
            struct Summary: Encodable { let event = "summary"; let snapshot: StationSnapshot }
            if let text = try? Self.encoder.encode(Summary(snapshot: s)) { line(String(decoding: text, as: UTF8.self)) }
        case .live:
            draw(s, force: true)
            line("")
            line("shift: " + Self.countersText(s.counters, now: s.now))
        case .lines:
            line("shift: " + Self.countersText(s.counters, now: s.now))
        }
        let failed = s.recent.filter { $0.result.outcome == .failed }
        if mode != .json, !failed.isEmpty {
            line("failed boards:")
            for f in failed { line("  [\(f.slot)] \(f.result.mac ?? "?"): " + Self.resultText(f.result)) }
        }
    }

    // MARK: - text

    static func resultText(_ r: SlotResult) -> String {
        switch r.outcome {
        case .passed: return "PASSED" + (r.identity.map { " as \($0)" } ?? "")
        case .skipped: return "already provisioned" + (r.identity.map { " as \($0)" } ?? "") + ": left alone"
        case .stopped: return "stopped before \(r.failedStep ?? "?") (resumable)"
        case .failed:
            return "FAILED at \(r.failedStep ?? "?"): \(Diagnostic.terminalSafe(r.reason ?? ""))" + (r.diagnosis.map { " [doctor: \($0)]" } ?? "")
        }
    }

    static func countersText(_ c: ShiftCounters, now: Date) -> String {
        let fpy = c.firstPassYield.map { String(format: "%.1f %%", $0 * 100) } ?? "-"
        return "\(c.passed) passed, \(c.failed) failed, \(c.skipped) skipped"
            + (c.stopped > 0 ? ", \(c.stopped) stopped" : "")
            + "; first-pass yield \(fpy); " + String(format: "%.0f boards/hour", c.boardsPerHour(now: now))
    }

    private func draw(_ s: StationSnapshot, force: Bool) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        if !force, now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        var rows: [String] = []
        let header = ["SLOT", "STATE", "STEP", "PROGRESS", "MAC", "IDENTITY", "ELAPSED", "LAST RESULT"]
        var table = [header]
        for slot in s.slots {
            let bar = String(repeating: "#", count: Int(slot.progress * 10)) + String(repeating: ".", count: 10 - Int(slot.progress * 10))
            let elapsed = String(format: "%5.1fs", now.timeIntervalSince(slot.since))
            let last = slot.lastResult.map { Self.resultText($0) } ?? "-"
            table.append([slot.name, slot.phase.rawValue, slot.step ?? "-", "[\(bar)]", slot.mac ?? "-", slot.identity ?? "-",
                          elapsed, String(last.prefix(60))])
        }
        var widths = [Int](repeating: 0, count: header.count)
        for r in table { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        for r in table {
            rows.append(r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
        rows.append("")
        rows.append((s.stopping.map { $0 == .immediate ? "STOPPING NOW  " : "stopping (finishing boards in progress)  " } ?? "")
                    + Self.countersText(s.counters, now: now))
        rows += notes
        var out = drawnLines > 0 ? "\u{1B}[\(drawnLines)A" : ""
        for r in rows { out += "\r\u{1B}[2K" + Diagnostic.terminalSafe(r) + "\n" }
        drawnLines = rows.count
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    private func line(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    private func jsonText(_ dict: [String: String]) -> String {
        (try? Self.encoder.encode(dict)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }()
}
