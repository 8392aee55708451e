import ESPCore
import Foundation
import Testing

/// A barrier for `count` parties; `arrive` blocks the calling thread until all have arrived or
/// the guard time passes (then it returns false). The guard only turns a hang into a failure.
final class BlockingBarrier: @unchecked Sendable {
    let count: Int
    private let condition = NSCondition()
    private var arrived = 0
    init(count: Int) { self.count = count }
    func arrive(guardSeconds: Double = 30) -> Bool {
        condition.lock(); defer { condition.unlock() }
        arrived += 1
        condition.broadcast()
        let deadline = Date().addingTimeInterval(guardSeconds)
        while arrived < count {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }
}

/// More ports than Swift's cooperative pool has threads (one per core).
let portsBeyondCores = max(16, 2 * ProcessInfo.processInfo.activeProcessorCount + 2)

@Suite("Per-port threads")
struct PortThreadsTests {
    @Test("every port's blocking work runs at once, beyond the number of cores")
    func blockingPortsProgressTogether() async {
        let ports = (0..<portsBeyondCores).map { "port\($0)" }
        let barrier = BlockingBarrier(count: ports.count)
        // Each body blocks its thread until all bodies are inside: only possible when every port
        // has a thread of its own (a task group on the cooperative pool would stall at #cores).
        let results = await PortThreads.map(ports) { _, port in (port, barrier.arrive()) }
        #expect(results.map(\.0) == ports, "results in port order")
        let stalled = results.filter { !$0.1 }.map(\.0)
        #expect(stalled.isEmpty, "ports that never met the others: \(stalled)")
    }

    @Test("code after an await stays on the port's own thread; every port has its own")
    func staysOnPortThread() async {
        let ports = (0..<8).map { "port\($0)" }
        let ids = await PortThreads.map(ports) { _, _ -> [String] in
            let before = threadID()
            await Task.yield()
            try? await Task.sleep(nanoseconds: 1_000_000)
            return [before, threadID()]
        }
        #expect(ids.allSatisfy { $0[0] == $0[1] }, "\(ids)")
        #expect(Set(ids.map { $0[0] }).count == ports.count, "one thread per port: \(ids)")
        #expect(PortThreadExecutor.threadName(for: "socket://127.0.0.1:40001") == "p:7.0.0.1:40001")
    }
}

/// The current OS thread (a synchronous helper: thread APIs are not for async contexts).
/// (Foundation's `Thread.current.name` is not a reliable identity on Linux; pthread_self is.)
func threadID() -> String { "\(pthread_self())" }
