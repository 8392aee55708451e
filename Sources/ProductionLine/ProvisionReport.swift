import ESPCore
import Foundation
import Provisioning

/// How a batch of provisioned devices reads as text (what `espforge provision` and `espforge demo`
/// print): the progress lines, the live per-port board, the summary table and the failures.
/// Pure functions of the line's events and results; the caller decides where the text goes.
public enum ProvisionReport {
    /// One compact JSON object with sorted keys (the `--json` event streams).
    public static func jsonLine<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// `pool NAME: N identities added from the values CSV (T in the pool, C claimed)`.
    public static func poolLine(_ p: ProvisionSetup.PoolLoaded) -> String {
        "pool \(p.pool): \(p.added) identities added from the values CSV (\(p.total) in the pool, \(p.claimed) claimed)"
    }

    /// The line a step's end prints when the output is not a terminal (`[PORT MAC] STEP: STATE — DETAIL`);
    /// nil for `started` and `done`, which only the live board shows.
    public static func eventLine(_ e: ProvisionEvent) -> String? {
        guard e.state != .started, e.state != .done else { return nil }
        let who = e.mac.map { "\(e.port) \($0)" } ?? e.port
        return "[\(who)] \(e.step): \(e.state.rawValue)" + (e.detail.map { " — \($0)" } ?? "")
    }

    /// What the live board shows for a port after `e`: `MAC  STEP…`, `done (…)`, `FAILED at …`.
    public static func liveStatus(_ e: ProvisionEvent) -> String {
        let what: String
        switch e.state {
        case .started: what = "\(e.step)…"
        case .done: what = "done" + (e.detail.map { " (\($0))" } ?? "")
        case .failed: what = "FAILED at \(e.step): \(e.detail ?? "")"
        default: what = "\(e.step) \(e.state.rawValue)"
        }
        return "\(e.mac ?? "")  \(what)"
    }

    /// A failed device in one line: `PORT (MAC): STEP: REASON — doctor: DIAGNOSIS` (not yet made
    /// terminal-safe).
    public static func failureLine(_ f: ProvisionResult) -> String {
        var why = "\(f.port)\(f.mac.map { " (\($0))" } ?? ""): \(f.failedStep ?? "?"): \(f.reason ?? "failed")"
        if let d = f.diagnosis { why += " — doctor: \(d)" }
        return why
    }

    /// The summary: one row per port (PORT, MAC, IDENTITY, RESULT, DETAIL), then the counts.
    public static func summaryTable(_ results: [ProvisionResult]) -> String {
        var rows = [["PORT", "MAC", "IDENTITY", "RESULT", "DETAIL"]]
        for r in results {
            let detail = r.state == .skipped ? "already provisioned as \(r.identity ?? r.mac ?? "?"): left alone"
                : r.ok ? "booted \(r.bootedPartition ?? "-")"
                : "\(r.failedStep ?? "?"): \(r.reason ?? "")" + (r.diagnosis.map { " [doctor: \($0)]" } ?? "")
            rows.append([r.port, r.mac ?? "-", r.identity ?? "-", r.state == .skipped ? "skipped" : r.ok ? "ok" : "FAILED", detail])
        }
        var widths = [Int](repeating: 0, count: 4)
        for row in rows { for i in 0..<4 { widths[i] = max(widths[i], row[i].count) } }
        return rows.map { row in
            (0..<4).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") + "  " + row[4]
        }.joined(separator: "\n") + "\n" + ProvisionSetup.counts(results)
    }

    /// The live board on a terminal: one line per port, redrawn in place (ANSI cursor-up and
    /// erase-line) as events arrive.
    public struct LiveBoard: Sendable {
        public let ports: [String]
        private var status: [String: String] = [:]
        private var drawn = false

        public init(ports: [String]) { self.ports = ports }

        /// Takes `e` in and returns the text that redraws the board.
        public mutating func update(_ e: ProvisionEvent) -> String {
            status[e.port] = ProvisionReport.liveStatus(e)
            var text = drawn ? "\u{1B}[\(ports.count)A" : ""
            for p in ports { text += "\r\u{1B}[2K" + p + "  " + (status[p] ?? "waiting") + "\n" }
            drawn = true
            return text
        }
    }
}
