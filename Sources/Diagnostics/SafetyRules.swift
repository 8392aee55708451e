import ESPCore
import ImageFormat

/// The result of checking a plan: the findings, and the files exactly as they will be written
/// (an unsigned bootloader's header adapted to the flash options; everything else as given).
public struct SafetyReport: Sendable, Codable {
    public var findings: [Finding]
    public var rulesRun: Int
    /// The plan's files as they will be written (not part of the JSON form).
    public var entries: [PlanEntry] = []

    public var errors: Int { findings.filter { $0.severity == .error }.count }
    public var warnings: Int { findings.filter { $0.severity == .warning }.count }
    /// No error, overridden or not: what `preflight` reports.
    public var passed: Bool { errors == 0 }
    /// An error `--force` did not override: nothing may be written.
    public var refused: Bool { findings.contains { $0.blocks } }
    public var blockingCodes: [String] { findings.filter(\.blocks).map(\.code) }

    enum CodingKeys: String, CodingKey { case findings, rulesRun }

    public init(findings: [Finding], rulesRun: Int, entries: [PlanEntry] = []) {
        self.findings = findings
        self.rulesRun = rulesRun
        self.entries = entries
    }
}

public typealias PreflightReport = SafetyReport

/// The one safety-rule engine: `espforge flash`, `espforge preflight` and the provisioning
/// pipeline (every link: serial, socket://, virtual:) check a plan with these rules and refuse it
/// with the same codes. A pure function of the plan and the target's facts; nothing is written
/// unless `check(…).refused` is false. See docs/safety-rules.md.
public enum SafetyRules {
    /// Every rule, in code order: the PF rules, then the write rules (FP, FE, RG).
    public static let rules: [SafetyRule] = Preflight.rules + WriteRules.rules

    /// Checks `plan` against `target`. `force` overrides the errors marked overridable (those
    /// whose override cannot brick the chip: never a Secure Boot finding once ABS_DONE_1 is burned).
    public static func check(plan: FlashPlan, target: TargetFacts, force: Bool = false,
                             rules: [SafetyRule] = SafetyRules.rules) -> SafetyReport {
        let context = PreflightContext(plan: plan, target: target)
        var findings: [Finding] = []
        for rule in rules { findings += rule.check(context) }
        if force {
            for i in findings.indices where findings[i].severity == .error && findings[i].overridable {
                findings[i].overridden = true
            }
        }
        // Errors first, then by code, then by address.
        findings.sort {
            if $0.severity != $1.severity { return $0.severity > $1.severity }
            if $0.code != $1.code { return $0.code < $1.code }
            return ($0.address ?? -1) < ($1.address ?? -1)
        }
        return SafetyReport(findings: findings, rulesRun: rules.count, entries: entriesAsWritten(context, force: force))
    }

    /// The entries as the write sends them. Only an unsigned bootloader's header (bytes 2..3) may
    /// change, and only when no rule forbids it: not signed, Secure Boot not expected, and an
    /// appended SHA-256 (recomputed) only with `force`.
    static func entriesAsWritten(_ ctx: PreflightContext, force: Bool) -> [PlanEntry] {
        var entries = ctx.plan.entries
        guard let bl = ctx.bootloader, let img = bl.image, ctx.rewrittenHeader(for: bl) != nil,
              !bl.isSigned, !ctx.secureBootExpected, !img.hashAppended || force,
              let index = entries.firstIndex(where: { $0.address == bl.entry.address }) else { return entries }
        let options = ctx.plan.options
        var size = options.size
        if size?.lowercased() == "detect" {
            size = ctx.target.flashSize.flatMap { s in ctx.target.chip.flashSizes.first { $0.value == s }?.name }
        }
        if let out = try? ImageRetarget.retarget(bl.entry.bytes, parameters: FlashParameters(
            mode: options.mode, frequency: options.frequency, size: size), stripSignature: false) {
            entries[index].bytes = out
        }
        return entries
    }
}
