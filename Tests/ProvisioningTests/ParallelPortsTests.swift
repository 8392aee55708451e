import EFuse
import Foundation
import Registry
import Testing
import TestSupport
@testable import Provisioning

/// A link whose identify() blocks its thread until every device of the line is identifying,
/// as a board on a slow serial port blocks in poll/read; then it ends the run.
final class BarrierLink: DeviceLink, @unchecked Sendable {
    let port: String
    let barrier: LineBarrier
    init(port: String, barrier: LineBarrier) { self.port = port; self.barrier = barrier }
    func identify() throws -> LinkFacts {
        guard barrier.arrive() else { throw BarrierError.neverMet }
        throw BarrierError.allMet
    }
    func readEFuses() throws -> EFuseArray { EFuseArray(layout: .esp32) }
    func burn(_ requests: [EFuseBurnRequest]) throws {}
    func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])]) throws {}
    func firstBoot(_ request: FirstBootRequest) throws -> FirstBootReport {
        FirstBootReport(booted: false, reason: nil, console: "", resets: 0)
    }
    var virtualMilliseconds: Int { 0 }
    func close() {}
}

enum BarrierError: Error, CustomStringConvertible {
    case allMet, neverMet
    var description: String { self == .allMet ? "all devices met" : "the other devices never came" }
}

final class LineBarrier: @unchecked Sendable {
    let count: Int
    private let condition = NSCondition()
    private var arrived = 0
    init(count: Int) { self.count = count }
    func arrive() -> Bool {
        condition.lock(); defer { condition.unlock() }
        arrived += 1
        condition.broadcast()
        let deadline = Date().addingTimeInterval(30)
        while arrived < count { if !condition.wait(until: deadline) { return false } }
        return true
    }
}

struct BarrierTarget: ProvisioningTarget {
    let port: String
    let barrier: LineBarrier
    func connect() throws -> any DeviceLink { BarrierLink(port: port, barrier: barrier) }
}

@Suite("Provisioning: parallel ports")
struct ParallelPortsTests {
    @Test("every port is connected at once, beyond the number of cores (blocking links)", fixtures)
    func portsBeyondCores() async throws {
        let line = try Line(count: 0, mode: .host)
        defer { line.cleanup() }
        let registry = try await openRegistry(url: line.dir.appendingPathComponent("r.sqlite").path)
        let n = max(16, 2 * ProcessInfo.processInfo.activeProcessorCount + 2)
        let barrier = LineBarrier(count: n)
        let targets: [any ProvisioningTarget] = (0..<n).map { BarrierTarget(port: "slow\($0)", barrier: barrier) }
        let provisioner = Provisioner(job: line.job, registry: registry, sdkconfig: line.sdk)
        let results = await provisioner.provision(all: targets)
        #expect(results.map(\.port) == targets.map(\.port))
        let stalled = results.filter { $0.reason != "all devices met" }
        #expect(stalled.isEmpty, "devices that waited for others: \(stalled.map { "\($0.port): \($0.reason ?? "")" })")
    }
}
