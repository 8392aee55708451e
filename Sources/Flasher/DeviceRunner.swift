import Foundation
import Transport

/// The result for one device of a (multi-device) run.
public struct DeviceOutcome: Sendable, Codable, Equatable {
    public var device: String
    public var ok: Bool
    public var error: String?
    /// Blocking finding codes when the plan was refused.
    public var refused: [String]
    public var regions: [RegionResult]
    public var seconds: Double
    public var reconnects: Int
    public var retries: Int
    public var wireBytesSent: Int
    /// What the session did to cope with a noisy link (block size, baud rate, restarts).
    public var link: LinkAdaptation?

    public init(device: String, ok: Bool, error: String? = nil, refused: [String] = [], regions: [RegionResult] = [],
                seconds: Double = 0, reconnects: Int = 0, retries: Int = 0, wireBytesSent: Int = 0) {
        self.device = device
        self.ok = ok
        self.error = error
        self.refused = refused
        self.regions = regions
        self.seconds = seconds
        self.reconnects = reconnects
        self.retries = retries
        self.wireBytesSent = wireBytesSent
    }
}

/// Runs the same job on several ports at once, one thread per device (the work is I/O bound).
public enum DeviceRunner {
    public typealias Job = @Sendable (_ port: String, _ emit: @escaping @Sendable (FlashEvent) -> Void) -> DeviceOutcome

    public static func run(ports: [String], onEvent: @escaping @Sendable (FlashEvent) -> Void, job: @escaping Job) -> [DeviceOutcome] {
        let box = ResultBox(count: ports.count)
        let emitLock = NSLock()
        let emit: @Sendable (FlashEvent) -> Void = { e in
            emitLock.lock()
            onEvent(e)
            emitLock.unlock()
        }
        if ports.count == 1 {
            box.set(0, job(ports[0], emit))
            return box.all(ports)
        }
        let group = DispatchGroup()
        for (i, p) in ports.enumerated() {
            group.enter()
            let t = Thread {
                box.set(i, job(p, emit))
                group.leave()
            }
            t.stackSize = 4 << 20
            t.start()
        }
        group.wait()
        return box.all(ports)
    }

    /// The standard job: connect, plan, refuse or write, finish.
    public static func flash(port: String, request: FlashRequest, options: SessionOptions,
                             emit: @escaping (FlashEvent) -> Void) -> DeviceOutcome {
        let started = Date()
        // ESP32, ESP32-S3 and ESP32-C3 alike: one session (stub, compression, link adaptation,
        // reconnect and resume, MD5 repair); the rules check the plan against the chip's own facts.
        let session = FlashSession(port: port, options: options.withFieldMapChips)
        session.onEvent = emit
        defer { session.finish() }
        var outcome = DeviceOutcome(device: port, ok: false)
        do {
            try session.connect()
            guard let target = session.target(source: "port \(port)") else { throw FlasherError.gaveUp(port: port, why: "no chip facts") }
            let plan = FlashSafety.check(request, target: target)
            emitFindings(plan, port: port, emit: emit)
            if plan.refused {
                outcome.refused = plan.blockingCodes
                throw FlasherError.refused(codes: plan.blockingCodes)
            }
            outcome.regions = try session.write(plan)
            outcome.ok = true
        } catch {
            outcome.error = describe(error)
        }
        outcome.seconds = Date().timeIntervalSince(started)
        outcome.reconnects = session.reconnects
        outcome.retries = session.client?.retries ?? 0
        outcome.wireBytesSent = session.client?.bytesSent ?? 0
        outcome.link = session.link
        if session.link.adapted || session.link.restarts > 0 {
            emit(FlashEvent(device: port, event: "link", detail: session.link.summary))
        }
        emit(FlashEvent(device: port, event: outcome.ok ? "done" : "failed", detail: outcome.error))
        return outcome
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [DeviceOutcome?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ o: DeviceOutcome) {
        lock.lock()
        results[i] = o
        lock.unlock()
    }
    func all(_ ports: [String]) -> [DeviceOutcome] {
        lock.lock()
        defer { lock.unlock() }
        return results.enumerated().map { $1 ?? DeviceOutcome(device: ports[$0], ok: false, error: "did not finish") }
    }
}

/// Register access over any port, for the eFuse client: connect (ROM loader, no stub) and hand
/// out the loader client, which implements `RegisterAccess`. Close with `close()`.
public enum LoaderConnection {
    public static func open(port: String, baud: Int = 115_200, before: ResetMode = .defaultReset,
                            ports: PortOpener = PortOpener()) throws -> LoaderClient {
        var o = SessionOptions()
        o.ports = ports
        o.baud = baud
        o.before = before
        o.after = .noReset
        let s = FlashSession(port: port, options: o)
        try s.connect()
        guard let c = s.client else { throw FlasherError.gaveUp(port: port, why: "not connected") }
        return c
    }
}

extension LoaderClient {
    /// Closes the link (a virtual device writes its state back).
    public func close() { port.close() }
}
