import ESPCore
import Foundation
import Provisioning
import Registry
import Transport

/// One slot of a station: a name (a place on the fixture) and its port.
public struct StationSlot: Sendable, Codable, Equatable {
    public var name: String
    public var port: String
    public init(name: String, port: String) { self.name = name; self.port = port }
}

/// Something that happened at the station (the terminal, `--json` and the dashboard show these).
public struct StationEvent: Sendable, Codable {
    public enum Kind: String, Sendable, Codable {
        /// A slot changed phase.
        case slot
        /// A pipeline step of a slot's board started or ended.
        case step
        /// A board's result.
        case result
        /// The station was asked to stop (graceful or immediate).
        case stopping
    }
    public var event: Kind
    public var time: Date
    public var slot: String?
    public var state: SlotState?
    public var step: ProvisionEvent?
    public var result: SlotResult?
    public var counters: ShiftCounters?
    public var stop: StopRequest?
}

/// The station at one moment.
public struct StationSnapshot: Sendable, Codable {
    public var station: String?
    public var now: Date
    public var slots: [SlotState]
    public var counters: ShiftCounters
    public var boardsPerHour: Double
    public var firstPassYield: Double?
    public var stopping: StopRequest?
    /// The latest results, newest last (at most ``Station/recentLimit``), with their slot.
    public var recent: [RecentResult]

    public struct RecentResult: Sendable, Codable, Equatable {
        public var slot: String
        public var time: Date
        public var result: SlotResult
    }

    enum CodingKeys: String, CodingKey {
        case station, now, slots, counters, boardsPerHour = "boards_per_hour", firstPassYield = "first_pass_yield", stopping, recent
    }
}

/// A station: slots that each wait for a board, provision it with the line's pipeline (same job,
/// registry, resume and admission rules as `provision`), show the result, wait until it is taken
/// out, and take the next — until it is stopped.
///
/// Each slot runs on its own thread (``PortThreadExecutor``): probes and the pipeline's blocking
/// port I/O hold up that slot only. The state of every slot is a ``SlotMachine``; this class feeds
/// it probes, pipeline events and results and does what it answers.
public final class Station: @unchecked Sendable {
    public static let recentLimit = 200

    public struct Options: Sendable {
        public var policy = SlotPolicy()
        /// How boards are found (the opener, reset mode and reply timeout).
        public var probe: BoardProbe
        /// How boards are provisioned (the same options as `provision`'s ports).
        public var link: LoaderLinkOptions
        /// A graceful stop waits this long for in-flight boards to reach a safe step, then stops
        /// at once.
        public var stopTimeout: Double = 120
        public init(link: LoaderLinkOptions) {
            let link = ProvisionSetup.linkOptions(link)
            self.link = link
            probe = BoardProbe(ports: link.session.ports, before: link.session.before)
        }
    }

    public let slots: [StationSlot]
    public let options: Options
    public let stationName: String?
    private let provisioner: Provisioner
    private let lock = NSLock()
    private var machines: [SlotMachine]
    private var counters: ShiftCounters
    private var recent: [StationSnapshot.RecentResult] = []
    private var stopLevel: StopRequest?
    private var finished: CheckedContinuation<Void, Never>?
    private var done = false
    private var observers: [UUID: @Sendable (StationEvent) -> Void] = [:]

    /// `provisioner` comes from ``ProvisionSetup/prepare(_:registry:options:)`` (pool loaded); its
    /// `onEvent` and `shouldStop` are set per slot here.
    public init(slots: [StationSlot], provisioner: Provisioner, options: Options, stationName: String? = nil, now: Date = Date()) {
        self.slots = slots
        self.provisioner = provisioner
        self.options = options
        self.stationName = stationName
        machines = slots.map { SlotMachine(name: $0.name, port: $0.port, policy: options.policy, now: now) }
        counters = ShiftCounters(started: now)
    }

    /// Adds an observer of every event (called on the slots' threads; keep it short). Returns a
    /// token for ``removeObserver(_:)``.
    @discardableResult
    public func addObserver(_ body: @escaping @Sendable (StationEvent) -> Void) -> UUID {
        let id = UUID()
        lock.withLock { observers[id] = body }
        return id
    }

    public func removeObserver(_ id: UUID) { lock.withLock { observers[id] = nil } }

    public func snapshot(now: Date = Date()) -> StationSnapshot {
        lock.withLock {
            StationSnapshot(station: stationName, now: now, slots: machines.map(\.state), counters: counters,
                            boardsPerHour: counters.boardsPerHour(now: now), firstPassYield: counters.firstPassYield,
                            stopping: stopLevel, recent: recent)
        }
    }

    /// Ctrl-C / SIGTERM: the first takes no more boards and lets in-flight boards reach a safe
    /// step (bounded by ``Options/stopTimeout``); the second (or the timeout) stops at once —
    /// ``run()`` returns without waiting for in-flight boards, whose finished steps are recorded.
    public func requestStop(_ request: StopRequest? = nil) {
        let (level, first): (StopRequest, Bool) = lock.withLock {
            let level = request ?? (stopLevel == nil ? .graceful : .immediate)
            let first = stopLevel == nil
            if stopLevel.map({ $0 < level }) ?? true { stopLevel = level }
            return (stopLevel ?? level, first)
        }
        emit(StationEvent(event: .stopping, time: Date(), stop: level))
        if level == .immediate {
            let states: [SlotState] = lock.withLock {
                for i in machines.indices { _ = machines[i].requestStop(.immediate, now: Date()) }
                return machines.map(\.state)
            }
            for s in states { emit(StationEvent(event: .slot, time: Date(), slot: s.name, state: s)) }
            finish()
        } else if first {
            let timeout = options.stopTimeout
            Task { [weak self] in
                try? await Task.sleep(nanoseconds: UInt64(max(0, timeout) * 1e9))
                self?.requestStop(.immediate)
            }
        }
    }

    /// Runs every slot until the station is stopped (or every slot is faulty). Returns the
    /// snapshot at the end.
    public func run() async -> StationSnapshot {
        let ports = slots.map(\.port)
        let all = Task {
            _ = await PortThreads.map(ports) { i, _ in await self.runSlot(i) }
            self.finish()
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let already: Bool = lock.withLock {
                if done { return true }
                finished = c
                return false
            }
            if already { c.resume() }
        }
        _ = all
        return snapshot()
    }

    private func finish() {
        let c: CheckedContinuation<Void, Never>? = lock.withLock {
            done = true
            defer { finished = nil }
            return finished
        }
        c?.resume()
    }

    // MARK: - one slot (on its own thread)

    private func runSlot(_ i: Int) async {
        let port = slots[i].port
        var action = lock.withLock { machines[i].start }
        while true {
            switch action {
            case .idle:
                return
            case .probe(let after):
                if let stop = await wait(after) {
                    action = update(i) { $0.requestStop(stop, now: Date()) }
                    continue
                }
                let presence = options.probe.probe(port)
                action = update(i) { $0.probed(presence, now: Date()) }
            case .provision:
                let started = Date()
                var p = provisioner
                let name = slots[i].name
                p.onEvent = { [weak self] e in
                    guard let self else { return }
                    let state = self.lock.withLock { () -> SlotState in
                        self.machines[i].progressed(e)
                        return self.machines[i].state
                    }
                    self.emit(StationEvent(event: .step, time: Date(), slot: name, state: state, step: e))
                }
                p.shouldStop = { [weak self] in
                    guard let self else { return true }
                    return self.lock.withLock { self.stopLevel != nil }
                }
                let target = ProvisioningTargets.target(for: port, link: options.link)
                let result = await p.provision(target)
                let slotResult = SlotResult(result, seconds: Date().timeIntervalSince(started))
                let now = Date()
                let (next, counters) = lock.withLock { () -> (SlotAction, ShiftCounters) in
                    let next = machines[i].finished(slotResult, now: now)
                    self.counters.record(slotResult)
                    recent.append(.init(slot: name, time: now, result: slotResult))
                    if recent.count > Self.recentLimit { recent.removeFirst(recent.count - Self.recentLimit) }
                    return (next, self.counters)
                }
                let state = lock.withLock { machines[i].state }
                emit(StationEvent(event: .result, time: now, slot: name, state: state, result: slotResult, counters: counters))
                action = next
            }
        }
    }

    /// Applies `body` to slot `i`'s machine; emits a slot event when the phase changed.
    private func update(_ i: Int, _ body: (inout SlotMachine) -> SlotAction) -> SlotAction {
        let (action, before, after) = lock.withLock { () -> (SlotAction, SlotPhase, SlotState) in
            let before = machines[i].state.phase
            let action = body(&machines[i])
            return (action, before, machines[i].state)
        }
        if before != after.phase { emit(StationEvent(event: .slot, time: Date(), slot: after.name, state: after)) }
        return action
    }

    /// Sleeps up to `seconds`, waking early for a stop request (returned).
    private func wait(_ seconds: Double) async -> StopRequest? {
        let end = Date().addingTimeInterval(seconds)
        while true {
            if let stop = lock.withLock({ stopLevel }) { return stop }
            let left = end.timeIntervalSinceNow
            if left <= 0 { return nil }
            try? await Task.sleep(nanoseconds: UInt64(min(left, 0.1) * 1e9))
        }
    }

    private func emit(_ event: StationEvent) {
        let list = lock.withLock { Array(observers.values) }
        for o in list { o(event) }
    }
}
