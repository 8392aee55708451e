import ESPCore
import Foundation
import Provisioning

/// What a station shows an operator, as text: a live table on a terminal, one line per event
/// when piped, or one JSON object per line (`espforge station` writes these; a station app can
/// show the same). Pure functions of the station's events and snapshots, plus ``LiveScreen``,
/// which remembers how many lines it drew so the next frame overwrites them.
public enum StationConsole {
    public enum Mode: Sendable { case live, lines, json }

    /// The encoder of the JSON lines (sorted keys, ISO 8601 times).
    public static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    static func json<T: Encodable>(_ value: T) -> String? {
        (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Lines printed when the station starts (none in live mode: the table is drawn instead).
    public static func startLines(_ mode: Mode, _ s: StationSnapshot) -> [String] {
        switch mode {
        case .json: return [json(["event": "start", "slots": s.slots.map { "\($0.name)=\($0.port)" }.joined(separator: " ")]) ?? "{}"]
        case .lines: return s.slots.map { "[\($0.name)] \($0.port): waiting for a board" }
        case .live: return []
        }
    }

    /// A note (pool loaded, dashboard address) as a line; in live mode notes go under the table.
    public static func noteLine(_ mode: Mode, _ text: String) -> String {
        mode == .json ? json(["event": "note", "detail": text]) ?? "{}" : text
    }

    /// The lines an event prints in `json` and `lines` mode (live mode redraws instead).
    public static func eventLines(_ mode: Mode, _ e: StationEvent) -> [String] {
        if mode == .json { return json(e).map { [$0] } ?? [] }
        guard mode == .lines else { return [] }
        guard let slot = e.slot else {
            guard e.event == .stopping else { return [] }
            return [e.stop == .immediate ? "station: stopping now (records stay resumable)"
                    : "station: stopping: no more boards; boards in progress stop before their next step"]
        }
        switch e.event {
        case .slot:
            guard let s = e.state else { return [] }
            switch s.phase {
            case .waiting: return ["[\(slot)] waiting for a board"]
            case .removal: return ["[\(slot)] \(s.mac ?? "?"): take the board out"]
            case .faulty: return ["[\(slot)] FAULTY: \(s.linkErrors) link errors in a row (\(s.lastLinkError ?? "")); slot skipped"]
            case .stopped: return ["[\(slot)] stopped"]
            case .provisioning: return ["[\(slot)] \(s.mac ?? "?"): board in, provisioning"]
            case .result: return []
            }
        case .step:
            guard let p = e.step, p.state == .failed || p.state == .skipped else { return [] }
            return ["[\(slot)] \(p.mac ?? "?") \(p.step): \(p.state.rawValue)" + (p.detail.map { " — \($0)" } ?? "")]
        case .result:
            guard let r = e.result else { return [] }
            return ["[\(slot)] \(r.mac ?? "?"): " + resultText(r) + String(format: " (%.1f s)", r.seconds)]
                + (e.counters.map { ["station: " + countersText($0, now: e.time)] } ?? [])
        case .stopping: return []
        }
    }

    /// The lines after the run: the JSON summary, or the shift's counters and the failed boards
    /// (live mode: after the last frame of the table).
    public static func finishLines(_ mode: Mode, _ s: StationSnapshot) -> [String] {
        struct Summary: Encodable { let event = "summary"; let snapshot: StationSnapshot }
        if mode == .json { return json(Summary(snapshot: s)).map { [$0] } ?? [] }
        var out = (mode == .live ? [""] : []) + ["shift: " + countersText(s.counters, now: s.now)]
        let failed = s.recent.filter { $0.result.outcome == .failed }
        if !failed.isEmpty {
            out.append("failed boards:")
            for f in failed { out.append("  [\(f.slot)] \(f.result.mac ?? "?"): " + resultText(f.result)) }
        }
        return out
    }

    /// A board's result in words: `PASSED as ID`, `already provisioned …: left alone`, `stopped …`, `FAILED at …`.
    public static func resultText(_ r: SlotResult) -> String {
        switch r.outcome {
        case .passed: return "PASSED" + (r.identity.map { " as \($0)" } ?? "")
        case .skipped: return "already provisioned" + (r.identity.map { " as \($0)" } ?? "") + ": left alone"
        case .stopped: return "stopped before \(r.failedStep ?? "?") (resumable)"
        case .failed:
            return "FAILED at \(r.failedStep ?? "?"): \(Diagnostic.terminalSafe(r.reason ?? ""))" + (r.diagnosis.map { " [doctor: \($0)]" } ?? "")
        }
    }

    /// `P passed, F failed, S skipped[, N stopped]; first-pass yield Y %; R boards/hour`.
    public static func countersText(_ c: ShiftCounters, now: Date) -> String {
        let fpy = c.firstPassYield.map { String(format: "%.1f %%", $0 * 100) } ?? "-"
        return "\(c.passed) passed, \(c.failed) failed, \(c.skipped) skipped"
            + (c.stopped > 0 ? ", \(c.stopped) stopped" : "")
            + "; first-pass yield \(fpy); " + String(format: "%.0f boards/hour", c.boardsPerHour(now: now))
    }

    /// The live table at `now`: one row per slot (slot, state, step, progress bar, MAC, identity,
    /// elapsed, last result), a blank line, the counters (and whether the station is stopping), the notes.
    public static func table(_ s: StationSnapshot, now: Date, notes: [String] = []) -> [String] {
        let header = ["SLOT", "STATE", "STEP", "PROGRESS", "MAC", "IDENTITY", "ELAPSED", "LAST RESULT"]
        var table = [header]
        for slot in s.slots {
            let filled = Int(slot.progress * 10)
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 10 - filled)
            let last = slot.lastResult.map { resultText($0) } ?? "-"
            table.append([slot.name, slot.phase.rawValue, slot.step ?? "-", "[\(bar)]", slot.mac ?? "-", slot.identity ?? "-",
                          String(format: "%5.1fs", now.timeIntervalSince(slot.since)), String(last.prefix(60))])
        }
        var rows = TextTable.render(header: header, rows: Array(table.dropFirst())).components(separatedBy: "\n")
        rows.append("")
        rows.append((s.stopping.map { $0 == .immediate ? "STOPPING NOW  " : "stopping (finishing boards in progress)  " } ?? "")
                    + countersText(s.counters, now: now))
        return rows + notes
    }

    /// A screen redrawn in place: each frame moves the cursor up over the previous one and
    /// erases every line it rewrites (terminal-safe text only).
    public struct LiveScreen: Sendable {
        private var drawnLines = 0
        public init() {}

        public mutating func frame(_ rows: [String]) -> String {
            var out = drawnLines > 0 ? "\u{1B}[\(drawnLines)A" : ""
            for r in rows { out += "\r\u{1B}[2K" + Diagnostic.terminalSafe(r) + "\n" }
            drawnLines = rows.count
            return out
        }
    }
}
