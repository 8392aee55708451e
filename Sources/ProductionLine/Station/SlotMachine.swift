import Foundation
import Provisioning

/// Where one station slot is in its cycle. A slot is a place on the fixture: boards come and go.
///
///     waiting ──board answers──▶ provisioning ──result──▶ result ──same board──▶ removal
///        ▲                                                  │                      │
///        └────────────── board gone (node, link, or another MAC) ◀────────────────┘
///
/// A slot whose link errors `faultyAfter` times in a row is `faulty` and is left alone; a
/// stopping station moves every slot to `stopped` once its in-flight board reached a safe step.
public enum SlotPhase: String, Sendable, Codable, CaseIterable {
    /// No board (or none answering yet).
    case waiting
    /// A board is being provisioned (see ``SlotState/step``).
    case provisioning
    /// The board's result is shown; the operator is expected to take it out.
    case result
    /// The finished board is still in the slot.
    case removal
    /// The link failed repeatedly: the slot is skipped until the station is restarted.
    case faulty
    /// The station stopped taking boards.
    case stopped
}

/// What a probe of the slot's port found.
public enum BoardPresence: Sendable, Equatable {
    /// Nothing there: the device node is gone, or the connection was refused.
    case absent
    /// A board answered through its ROM loader with this MAC.
    case present(mac: String)
    /// Something is there but does not answer properly (a link error).
    case linkError(String)
}

/// How far a stop request goes.
public enum StopRequest: Int, Sendable, Codable, Comparable {
    /// First Ctrl-C / SIGTERM: take no more boards; in-flight boards finish their current step.
    case graceful = 1
    /// Second signal: stop at once (records stay resumable: every finished step is recorded).
    case immediate = 2
    public static func < (a: StopRequest, b: StopRequest) -> Bool { a.rawValue < b.rawValue }
}

/// The outcome of one board in a slot.
public struct SlotResult: Sendable, Codable, Equatable {
    public enum Outcome: String, Sendable, Codable { case passed, failed, skipped, stopped }
    public var outcome: Outcome
    public var mac: String?
    public var identity: String?
    public var failedStep: String?
    public var reason: String?
    public var diagnosis: String?
    public var seconds: Double
    /// The failure was the link, not the board (counts towards a faulty slot).
    public var linkError: Bool

    public init(outcome: Outcome, mac: String?, identity: String? = nil, failedStep: String? = nil, reason: String? = nil,
                diagnosis: String? = nil, seconds: Double = 0, linkError: Bool = false) {
        self.outcome = outcome; self.mac = mac; self.identity = identity; self.failedStep = failedStep
        self.reason = reason; self.diagnosis = diagnosis; self.seconds = seconds; self.linkError = linkError
    }

    /// A pipeline result as the station shows it.
    public init(_ r: ProvisionResult, seconds: Double) {
        let outcome: Outcome
        switch r.state {
        case .provisioned: outcome = .passed
        case .skipped: outcome = .skipped
        case .stopped: outcome = .stopped
        case .failed: outcome = r.ok ? .passed : .failed
        }
        // No MAC means the link failed before the chip said who it is.
        self.init(outcome: outcome, mac: r.mac, identity: r.identity, failedStep: r.failedStep, reason: r.reason,
                  diagnosis: r.diagnosis, seconds: seconds,
                  linkError: outcome == .failed && r.failedStep == ProvisionStep.connect.rawValue)
    }
}

/// One slot as the terminal, the JSON stream and the dashboard show it.
public struct SlotState: Sendable, Codable, Equatable {
    public var name: String
    public var port: String
    public var phase: SlotPhase
    /// The board in the slot (provisioning, result, removal).
    public var mac: String?
    public var identity: String?
    /// The pipeline step in progress and how far the board is (0…1, by steps done).
    public var step: String?
    public var progress: Double
    /// When the current board started (provisioning) or the slot entered its phase.
    public var since: Date
    public var lastResult: SlotResult?
    /// Link errors in a row (reset by any board that answered).
    public var linkErrors: Int
    public var lastLinkError: String?
    /// Boards finished in this slot this shift.
    public var boards: Int

    public init(name: String, port: String, now: Date) {
        self.name = name; self.port = port; phase = .waiting; progress = 0; since = now; linkErrors = 0; boards = 0
    }
}

/// What the slot's driver does next.
public enum SlotAction: Sendable, Equatable {
    /// Probe the port again after this many seconds.
    case probe(after: Double)
    /// Provision the board with this MAC now.
    case provision(mac: String)
    /// Nothing more: the slot is faulty or stopped.
    case idle
}

/// Timing and limits of a slot (seconds).
public struct SlotPolicy: Sendable, Equatable {
    /// Probe interval of an empty slot.
    public var insertPoll: Double = 0.5
    /// Probe interval while a finished board is still in the slot.
    public var removalPoll: Double = 1.0
    /// Link errors in a row that make the slot faulty.
    public var faultyAfter: Int = 3
    public init() {}
}

/// The per-slot state machine: pure (no I/O, no clock of its own; every input carries its time).
public struct SlotMachine: Sendable {
    public private(set) var state: SlotState
    public let policy: SlotPolicy
    public private(set) var stop: StopRequest?

    public init(name: String, port: String, policy: SlotPolicy = SlotPolicy(), now: Date) {
        state = SlotState(name: name, port: port, now: now)
        self.policy = policy
    }

    /// The first action of a fresh slot.
    public var start: SlotAction { .probe(after: 0) }

    /// A probe's answer.
    public mutating func probed(_ presence: BoardPresence, now: Date) -> SlotAction {
        switch state.phase {
        case .faulty, .stopped, .provisioning:
            return idleOrWait
        case .waiting:
            if stop != nil { return halt(now) }
            switch presence {
            case .absent:
                return .probe(after: policy.insertPoll)
            case .linkError(let why):
                return linkFailed(why, now: now) ?? .probe(after: policy.insertPoll)
            case .present(let mac):
                return begin(mac, now: now)
            }
        case .result, .removal:
            switch presence {
            case .absent, .linkError:
                // The node is gone or the link closed: the board was taken out.
                enter(.waiting, now: now)
                state.mac = nil; state.identity = nil; state.step = nil; state.progress = 0
                if stop != nil { return halt(now) }
                return .probe(after: policy.insertPoll)
            case .present(let mac) where mac == state.mac:
                if state.phase == .result { enter(.removal, now: now) }
                if stop != nil { return halt(now) }
                return .probe(after: policy.removalPoll)
            case .present(let mac):
                // Another board already: the last one was swapped out between two probes.
                if stop != nil { return halt(now) }
                return begin(mac, now: now)
            }
        }
    }

    /// A pipeline progress event of the board in this slot.
    public mutating func progressed(_ event: ProvisionEvent) {
        guard state.phase == .provisioning else { return }
        if let mac = event.mac { state.mac = mac }
        if let step = ProvisionStep(rawValue: event.step) {
            state.step = step.rawValue
            let total = Double(ProvisionStep.allCases.count)
            let done = event.state == .started ? step.index : step.index + 1
            state.progress = max(state.progress, min(1, Double(done) / total))
        }
        if event.step == ProvisionStep.claim.rawValue, event.state == .ok, let id = event.detail?.split(separator: " ").first {
            state.identity = String(id)
        }
    }

    /// The board's pipeline ended.
    public mutating func finished(_ result: SlotResult, now: Date) -> SlotAction {
        guard state.phase == .provisioning else { return idleOrWait }
        state.lastResult = result
        state.boards += 1
        state.step = nil
        state.progress = result.outcome == .passed || result.outcome == .skipped ? 1 : state.progress
        if let mac = result.mac { state.mac = mac }
        if let id = result.identity { state.identity = id }
        if result.linkError {
            enter(.waiting, now: now)
            if let action = linkFailed(result.reason ?? "link error", now: now) { return action }
            if stop != nil { return halt(now) }
            return .probe(after: policy.insertPoll)
        }
        state.linkErrors = 0
        enter(.result, now: now)
        if stop != nil { return halt(now) }
        return .probe(after: policy.removalPoll)
    }

    /// A stop request. Returns `.idle` when the slot can stop now; a provisioning slot stops once
    /// ``finished(_:now:)`` is called (graceful) or is abandoned (immediate).
    public mutating func requestStop(_ request: StopRequest, now: Date) -> SlotAction {
        stop = max(stop ?? request, request)
        switch state.phase {
        case .provisioning where request == .graceful:
            return .provision(mac: state.mac ?? "")   // keep going until a safe step
        case .faulty:
            return .idle
        default:
            return halt(now)
        }
    }

    /// Asked by the pipeline before each step: stop there?
    public var shouldStopBeforeNextStep: Bool { stop != nil }

    // MARK: -

    private var idleOrWait: SlotAction {
        switch state.phase {
        case .faulty, .stopped: return .idle
        case .provisioning: return .provision(mac: state.mac ?? "")
        default: return .probe(after: policy.insertPoll)
        }
    }

    private mutating func begin(_ mac: String, now: Date) -> SlotAction {
        enter(.provisioning, now: now)
        state.mac = mac
        state.identity = nil
        state.step = nil
        state.progress = 0
        state.linkErrors = 0
        state.lastLinkError = nil
        return .provision(mac: mac)
    }

    /// Counts a link error; the slot becomes faulty (nil otherwise).
    private mutating func linkFailed(_ why: String, now: Date) -> SlotAction? {
        state.linkErrors += 1
        state.lastLinkError = why
        guard state.linkErrors >= policy.faultyAfter else { return nil }
        enter(.faulty, now: now)
        return .idle
    }

    private mutating func halt(_ now: Date) -> SlotAction {
        if state.phase != .faulty { enter(.stopped, now: now) }
        return .idle
    }

    private mutating func enter(_ phase: SlotPhase, now: Date) {
        if state.phase != phase { state.since = now }
        state.phase = phase
    }
}
