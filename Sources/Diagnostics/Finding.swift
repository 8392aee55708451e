import ESPCore

/// How bad a preflight finding is. Any `error` makes `espforge preflight` exit 1.
public enum Severity: String, Sendable, Codable, Comparable {
    case info
    case warning
    case error

    var rank: Int {
        switch self {
        case .info: return 0
        case .warning: return 1
        case .error: return 2
        }
    }

    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One problem a safety rule (``SafetyRules``) found in a flash plan: a stable code (`PF001`,
/// `RG001` …), what is wrong, the bytes or fields that show it, why it matters and how to fix it.
/// The one finding type of `flash`, `preflight` and `provision`.
public struct Finding: Sendable, Codable, Equatable {
    /// Stable identifier of the rule (`PF001`); never reused for another meaning.
    public var code: String
    public var severity: Severity
    /// Short rule name, e.g. `signed-header-rewrite`.
    public var rule: String
    /// One sentence: what is wrong.
    public var message: String
    /// The offending bytes or fields, one per line (`header byte 3 = 0x30 (8MB, 40m)`).
    public var evidence: [String]
    /// Why it matters: what the chip or bootloader will do.
    public var explanation: String
    /// What to do instead.
    public var fix: String
    /// The plan entry (file) concerned, if any.
    public var file: String?
    /// Flash address concerned, if any.
    public var address: Int?
    /// `--force` may override it (only where overriding cannot destroy the chip).
    public var overridable: Bool
    /// It was an error and `--force` overrode it.
    public var overridden: Bool = false

    /// An error not overridden: the plan must not be written.
    public var blocks: Bool { severity == .error && !overridden }

    public init(code: String, severity: Severity, rule: String, message: String, evidence: [String] = [],
                explanation: String, fix: String, file: String? = nil, address: Int? = nil, overridable: Bool = false) {
        self.code = code
        self.severity = severity
        self.rule = rule
        self.message = message
        self.evidence = evidence
        self.explanation = explanation
        self.fix = fix
        self.file = file
        self.address = address
        self.overridable = overridable
    }
}

func hex(_ v: some BinaryInteger) -> String { "0x" + String(v, radix: 16) }
func hex8(_ v: some BinaryInteger) -> String { NumberParsing.hex(v, width: 8) }
