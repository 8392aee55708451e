import Foundation

/// A task executor that owns one thread. A task that prefers it runs all of its (nonisolated)
/// code on that thread, so blocking calls made by that code — `poll`/`read` on a serial port or a
/// socket, `usleep` between retries, a boot-watch timeout — block that thread only, never a thread
/// of Swift's cooperative pool (which has one thread per core: on a 2-core line PC, two blocked
/// ports would stop every other port).
///
/// Call ``shutdown()`` when the work is done; the thread ends once its queue is empty.
public final class PortThreadExecutor: TaskExecutor, @unchecked Sendable {
    public let name: String
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var stopping = false

    public init(name: String, stackSize: Int = 8 << 20) {
        self.name = name
        // The thread holds the executor until shutdown() lets it finish.
        let threadName = Self.threadName(for: name)
        let thread = Thread { [self] in
            // Linux threads inherit their creator's name; name this one after its port (ps -L, gdb).
            Thread.current.name = threadName
            self.loop()
        }
        thread.name = threadName
        thread.stackSize = stackSize
        thread.start()
    }

    /// The OS thread name for a port: "p:" and the port name's last 13 characters (Linux keeps 15).
    public static func threadName(for port: String) -> String { "p:" + String(port.suffix(13)) }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread end after the jobs already queued have run.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while head == jobs.count && !stopping { condition.wait() }
            if head == jobs.count {
                condition.unlock()
                return
            }
            let job = jobs[head]
            head += 1
            if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Runs one piece of work per port concurrently, each on its own thread (``PortThreadExecutor``),
/// whatever the number of cores: every port progresses even while others block in I/O.
public enum PortThreads {
    /// Calls `body(index, port)` for every port at once and returns the results in port order.
    public static func map<T: Sendable>(_ ports: [String],
                                        _ body: @escaping @Sendable (Int, String) async -> T) async -> [T] {
        let executors = ports.map { PortThreadExecutor(name: $0) }
        defer { executors.forEach { $0.shutdown() } }
        let results = await withTaskGroup(of: (Int, T).self) { group in
            for (i, port) in ports.enumerated() {
                group.addTask(executorPreference: executors[i]) { (i, await body(i, port)) }
            }
            var out: [(Int, T)] = []
            for await r in group { out.append(r) }
            return out
        }
        return results.sorted { $0.0 < $1.0 }.map(\.1)
    }
}
