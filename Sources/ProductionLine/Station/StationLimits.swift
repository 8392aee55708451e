import Foundation

extension Station {
    /// Whether `event` is the result that brings the shift to `limit` boards with a result
    /// (passed, failed, skipped or stopped) while no stop is asked for yet: then a caller stops
    /// the station gracefully (`espforge station --max-boards`). Call it from an observer, after
    /// showing the event, so the result is shown before the stop.
    public func reachedLimit(_ event: StationEvent, boards limit: Int) -> Bool {
        guard event.event == .result, let c = event.counters else { return false }
        return c.passed + c.failed + c.skipped + c.stopped >= limit && snapshot().stopping == nil
    }

    /// Asks for a graceful stop after `seconds` of wall time (a safety net for scripts).
    public func stopAfter(seconds: Double) {
        Task { [weak self] in
            try? await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9))
            self?.requestStop(.graceful)
        }
    }
}
