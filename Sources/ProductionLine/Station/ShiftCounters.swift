import Foundation

/// The shift's tally, as the supervisor reads it.
///
/// - passed: boards provisioned this shift; skipped: boards already provisioned (left alone,
///   also a pass); failed: boards that failed; stopped: boards left between two steps by a
///   stopping station (resumable, neither pass nor fail).
/// - first-pass yield: of the boards (distinct MACs) attempted this shift and not skipped, the
///   share provisioned at their first attempt.
/// - boards/hour: passed + skipped per hour since the shift started.
public struct ShiftCounters: Sendable, Codable, Equatable {
    public var passed = 0
    public var failed = 0
    public var skipped = 0
    public var stopped = 0
    /// Distinct boards with a first attempt this shift (skipped ones excluded), and how many of
    /// those passed at that first attempt.
    public var firstAttempts = 0
    public var firstPassPassed = 0
    public var started: Date
    /// Seconds per finished board (passed), for the average cycle time.
    public var passSeconds = 0.0
    private var seen: Set<String> = []

    public init(started: Date) { self.started = started }

    public var firstPassYield: Double? { firstAttempts == 0 ? nil : Double(firstPassPassed) / Double(firstAttempts) }

    public func boardsPerHour(now: Date) -> Double {
        let hours = now.timeIntervalSince(started) / 3600
        return hours > 0 ? Double(passed + skipped) / hours : 0
    }

    public mutating func record(_ r: SlotResult) {
        switch r.outcome {
        case .passed: passed += 1; passSeconds += r.seconds
        case .failed: failed += 1
        case .skipped: skipped += 1
        case .stopped: stopped += 1
        }
        guard r.outcome != .skipped, r.outcome != .stopped, let mac = r.mac, !seen.contains(mac) else { return }
        seen.insert(mac)
        firstAttempts += 1
        if r.outcome == .passed { firstPassPassed += 1 }
    }

    enum CodingKeys: String, CodingKey {
        case passed, failed, skipped, stopped, firstAttempts = "first_attempts", firstPassPassed = "first_pass_passed"
        case started, passSeconds = "pass_seconds"
    }
}
