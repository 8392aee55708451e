import Foundation
import ESPCore
import ImageFormat
import SecureBoot

/// Matches one log line.
public enum LineMatch: Sendable {
    /// The cleaned line contains the text (case-sensitive, as ESP-IDF and the ROM print it).
    case contains(String)
    /// An ESP-IDF log line with this level (`E`, `W`, `I`) whose message contains the text.
    case logged(level: String, contains: String)

    public func matches(_ line: BootLog.Line) -> Bool {
        switch self {
        case let .contains(s): return line.text.contains(s)
        case let .logged(level, s): return line.level == level && line.message.contains(s)
        }
    }
}

public enum Confidence: String, Sendable, Codable, Comparable {
    case low, medium, high
    var rank: Int { self == .low ? 0 : self == .medium ? 1 : 2 }
    public static func < (a: Confidence, b: Confidence) -> Bool { a.rank < b.rank }
}

/// What the doctor concluded from one rule.
public struct DoctorFinding: Sendable, Codable {
    public var rule: String
    public var name: String
    /// The root cause, one sentence.
    public var cause: String
    public var confidence: Confidence
    public var explanation: String
    public var fix: [String]
    /// The log lines that prove it.
    public var evidence: [BootLog.Line]
    /// What the build artifacts showed (doctor with --build-dir or ADDR FILE).
    public var correlation: [String]
    /// Higher = closer to a root cause (a missing bootable app is a consequence).
    public var priority: Int
}

/// Build artifacts the doctor can correlate with (the files as flashed, by address).
public struct DoctorArtifacts: Sendable {
    public var files: [PlanEntry]
    public var chip: ChipSpec
    public init(files: [PlanEntry], chip: ChipSpec = .esp32) {
        self.files = files
        self.chip = chip
    }
    public var bootloader: PlanEntry? { files.first { $0.address == chip.bootloaderOffset } }
}

/// Everything a rule may look at.
public struct DoctorContext: Sendable {
    public let log: BootLog
    public let artifacts: DoctorArtifacts?

    public func lines(_ m: LineMatch) -> [BootLog.Line] { log.chipLines.filter { m.matches($0) } }
    public func has(_ m: LineMatch) -> Bool { log.chipLines.contains { m.matches($0) } }

    /// The flash parameters the running bootloader reports about its own header
    /// (`SPI Mode : DIO`, `SPI Speed : 40MHz`, `SPI Flash Size : 4MB`).
    public var reportedFlashParameters: (mode: String?, frequency: String?, size: String?, lines: [BootLog.Line]) {
        var mode: String?, freq: String?, size: String?
        var found: [BootLog.Line] = []
        func value(_ l: BootLog.Line) -> String? {
            guard let c = l.message.lastIndex(of: ":") else { return nil }
            let v = l.message[l.message.index(after: c)...].trimmingCharacters(in: .whitespaces)
            return v.isEmpty ? nil : v
        }
        for l in log.chipLines where l.tag?.hasPrefix("boot") == true {
            if mode == nil, l.message.hasPrefix("SPI Mode"), let v = value(l) { mode = v.uppercased(); found.append(l) }
            if freq == nil, l.message.hasPrefix("SPI Speed"), let v = value(l) {
                // "40MHz" → "40m", "26.7MHz" → "26m"
                let digits = v.prefix { $0.isNumber }
                freq = digits.isEmpty ? v : digits + "m"
                found.append(l)
            }
            if size == nil, l.message.hasPrefix("SPI Flash Size"), let v = value(l) { size = v.uppercased(); found.append(l) }
        }
        return (mode, freq, size, found)
    }
}

/// One doctor rule, as data: the lines that must appear (each inner list: any one of them), lines
/// that rule it out, supporting lines quoted as evidence when present, and the diagnosis.
/// `refine` may adjust the finding from the context (build artifacts, other lines).
public struct DoctorRule: Sendable {
    public var id: String
    public var name: String
    public var priority: Int
    public var required: [[LineMatch]]
    public var excluded: [LineMatch]
    public var supporting: [LineMatch]
    public var confidence: Confidence
    public var cause: String
    public var explanation: String
    public var fix: [String]
    public var refine: (@Sendable (inout DoctorFinding, DoctorContext) -> Void)?
    /// Custom trigger instead of `required` (e.g. counting resets); returns the evidence lines.
    public var trigger: (@Sendable (DoctorContext) -> [BootLog.Line]?)?

    public init(id: String, name: String, priority: Int, required: [[LineMatch]] = [], excluded: [LineMatch] = [],
                supporting: [LineMatch] = [], confidence: Confidence = .high, cause: String, explanation: String,
                fix: [String], refine: (@Sendable (inout DoctorFinding, DoctorContext) -> Void)? = nil,
                trigger: (@Sendable (DoctorContext) -> [BootLog.Line]?)? = nil) {
        self.id = id
        self.name = name
        self.priority = priority
        self.required = required
        self.excluded = excluded
        self.supporting = supporting
        self.confidence = confidence
        self.cause = cause
        self.explanation = explanation
        self.fix = fix
        self.refine = refine
        self.trigger = trigger
    }

    func evaluate(_ ctx: DoctorContext) -> DoctorFinding? {
        var evidence: [BootLog.Line] = []
        if let trigger {
            guard let lines = trigger(ctx) else { return nil }
            evidence = lines
        } else {
            guard !required.isEmpty else { return nil }
            for alternatives in required {
                let hits = ctx.log.chipLines.filter { l in alternatives.contains { $0.matches(l) } }
                guard let first = hits.first else { return nil }
                evidence.append(first)
            }
        }
        if excluded.contains(where: { ctx.has($0) }) { return nil }
        for m in supporting { if let l = ctx.lines(m).first { evidence.append(l) } }
        var seen = Set<String>()
        evidence = evidence.filter { seen.insert("\($0.number):\($0.text)").inserted }.sorted { $0.number < $1.number }
        var f = DoctorFinding(rule: id, name: name, cause: cause, confidence: confidence, explanation: explanation,
                              fix: fix, evidence: evidence, correlation: [], priority: priority)
        refine?(&f, ctx)
        return f
    }
}

public struct DoctorReport: Sendable, Codable {
    /// Most likely root cause first.
    public var findings: [DoctorFinding]
    public var linesRead: Int
    public var primary: DoctorFinding? { findings.first }
}

/// Explains a boot log: which failure, why, and how to fix it.
public enum Doctor {
    public static func diagnose(log: BootLog, artifacts: DoctorArtifacts? = nil, rules: [DoctorRule] = DoctorRules.all) -> DoctorReport {
        let ctx = DoctorContext(log: log, artifacts: artifacts)
        var findings = rules.compactMap { $0.evaluate(ctx) }
        findings.sort {
            if $0.priority != $1.priority { return $0.priority > $1.priority }
            return $0.rule < $1.rule
        }
        return DoctorReport(findings: findings, linesRead: log.lines.count)
    }

    public static func diagnose(logBytes: [UInt8], artifacts: DoctorArtifacts? = nil) -> DoctorReport {
        diagnose(log: BootLog(bytes: logBytes), artifacts: artifacts)
    }
}
