import Foundation

/// The end of a (multi-device) write: one table row per device (or one JSON summary event each).
public enum FlashSummary {
    /// `{"event":"summary","summary":{…}}`, one per device with `--json`.
    public struct Event: Encodable, Sendable {
        public let event = "summary"
        public let summary: DeviceOutcome
        public init(_ summary: DeviceOutcome) { self.summary = summary }
    }

    /// The table: result, regions written/unchanged, retries, reconnects, seconds; then the links
    /// that adapted. Failures are the caller's to render as errors (``failures(_:)``).
    public static func table(_ outcomes: [DeviceOutcome]) -> String {
        func pad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        let width = max(8, outcomes.map(\.device.count).max() ?? 8)
        var out = "\n" + "device".padding(toLength: width, withPad: " ", startingAt: 0)
            + " result   regions  written  unchanged  retries  reconnects  seconds\n"
        for o in outcomes {
            let written = o.regions.filter { $0.outcome == .written }.count
            let unchanged = o.regions.filter { $0.outcome == .unchanged }.count
            let result = o.ok ? "ok      " : (o.refused.isEmpty ? "FAILED  " : "REFUSED ")
            out += o.device.padding(toLength: width, withPad: " ", startingAt: 0) + " " + result
                + " \(pad(String(o.regions.count), 7))  \(pad(String(written), 7))  \(pad(String(unchanged), 9))"
                + "  \(pad(String(o.retries), 7))  \(pad(String(o.reconnects), 10))  \(String(format: "%7.2f", o.seconds))\n"
        }
        for o in outcomes {
            if let l = o.link, l.adapted || l.restarts > 0 { out += "\(o.device): link adapted: \(l.summary)\n" }
        }
        return out
    }

    /// "DEVICE: why" for every device that failed or was refused.
    public static func failures(_ outcomes: [DeviceOutcome]) -> [String] {
        outcomes.filter { !$0.ok }.map { "\($0.device): \($0.error ?? "failed")" }
    }
}
