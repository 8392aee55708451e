import Foundation
import ProductionLine
import Provisioning

/// Step durations of this station's boards, as histograms per step (from the pipeline's events).
final class StepMetrics: @unchecked Sendable {
    static let buckets: [Double] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300]
    struct Histogram { var counts = [Int](repeating: 0, count: StepMetrics.buckets.count); var sum = 0.0; var count = 0 }
    private let lock = NSLock()
    private var started: [String: Date] = [:]   // slot + step → start
    private var histograms: [String: Histogram] = [:]

    func observe(_ e: StationEvent) {
        guard e.event == .step, let slot = e.slot, let p = e.step else { return }
        let key = slot + "\u{0}" + p.step
        lock.withLock {
            switch p.state {
            case .started: started[key] = e.time
            case .ok, .failed:
                guard let begin = started.removeValue(forKey: key) else { return }
                let seconds = e.time.timeIntervalSince(begin)
                var h = histograms[p.step] ?? Histogram()
                for (i, b) in Self.buckets.enumerated() where seconds <= b { h.counts[i] += 1 }
                h.sum += seconds
                h.count += 1
                histograms[p.step] = h
            default: break
            }
        }
    }

    func snapshot() -> [String: Histogram] { lock.withLock { histograms } }
}

/// `/metrics` in the Prometheus text format (version 0.0.4).
enum PrometheusText {
    static func render(_ s: StationSnapshot, metrics: StepMetrics) -> String {
        var out = ""
        func label(_ v: String) -> String {
            v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
        }
        func num(_ d: Double) -> String { d.isFinite ? String(format: "%.6g", d) : "NaN" }
        out += "# HELP espforge_station_boards_total Boards with a result this shift, by result.\n"
        out += "# TYPE espforge_station_boards_total counter\n"
        for (result, n) in [("passed", s.counters.passed), ("failed", s.counters.failed), ("skipped", s.counters.skipped),
                            ("stopped", s.counters.stopped)] {
            out += "espforge_station_boards_total{result=\"\(result)\"} \(n)\n"
        }
        out += "# HELP espforge_station_first_pass_yield Share of boards provisioned at their first attempt this shift.\n"
        out += "# TYPE espforge_station_first_pass_yield gauge\n"
        out += "espforge_station_first_pass_yield \(s.firstPassYield.map(num) ?? "NaN")\n"
        out += "# HELP espforge_station_boards_per_hour Passed and skipped boards per hour since the shift started.\n"
        out += "# TYPE espforge_station_boards_per_hour gauge\n"
        out += "espforge_station_boards_per_hour \(num(s.boardsPerHour))\n"
        out += "# HELP espforge_station_slot_state 1 for the state each slot is in.\n"
        out += "# TYPE espforge_station_slot_state gauge\n"
        for slot in s.slots {
            for phase in SlotPhase.allCases {
                out += "espforge_station_slot_state{slot=\"\(label(slot.name))\",state=\"\(phase.rawValue)\"} \(slot.phase == phase ? 1 : 0)\n"
            }
        }
        out += "# HELP espforge_station_step_duration_seconds Duration of pipeline steps on this station.\n"
        out += "# TYPE espforge_station_step_duration_seconds histogram\n"
        for (step, h) in metrics.snapshot().sorted(by: { $0.key < $1.key }) {
            for (i, b) in StepMetrics.buckets.enumerated() {
                out += "espforge_station_step_duration_seconds_bucket{step=\"\(label(step))\",le=\"\(num(b))\"} \(h.counts[i])\n"
            }
            out += "espforge_station_step_duration_seconds_bucket{step=\"\(label(step))\",le=\"+Inf\"} \(h.count)\n"
            out += "espforge_station_step_duration_seconds_sum{step=\"\(label(step))\"} \(num(h.sum))\n"
            out += "espforge_station_step_duration_seconds_count{step=\"\(label(step))\"} \(h.count)\n"
        }
        return out
    }
}
