import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Registry

/// Issue 15 §5: a step left `running` by a killed process is marked `interrupted`, with a time,
/// when the device is picked up again — on both backends.
@Suite("Interrupted steps", .serialized)
struct InterruptedStepTests {
    @Test(arguments: Backend.enabled)
    func runningStepOfAKilledRunBecomesInterrupted(_ backend: Backend) async throws {
        let (url, cleanup) = try backend.makeLocation()
        defer { cleanup() }
        let s = Scope()
        let mac = s.mac(1)
        let killed = try await openRegistry(url: url)
        try await killed.register(facts(mac))
        let identify = try await killed.beginStep(mac: mac, step: "identify", detail: nil)
        try await killed.finishStep(identify, outcome: .ok, detail: nil)
        _ = try await killed.beginStep(mac: mac, step: "write", detail: nil)   // the process dies here
        try await killed.close()

        let resumed = try await openRegistry(url: url)
        #expect(try await resumed.markInterruptedSteps(mac: mac) == 1)
        let steps = try await resumed.steps(mac: mac)
        #expect(steps.map(\.outcome) == [.ok, .interrupted])
        #expect(steps.last?.finishedAt != nil)
        #expect(steps.last?.detail?.contains("interrupted") == true)
        // Nothing is left running, the last safe step is unchanged, and a second pass finds nothing.
        #expect(try await resumed.lastSafeStep(mac: mac)?.step == "identify")
        #expect(try await resumed.markInterruptedSteps(mac: mac) == 0)
        try await resumed.close()
    }
}
