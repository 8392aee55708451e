import Diagnostics
import ESPCore
import Foundation
import Transport
import VirtualDevice

/// What `espforge preflight` was asked: the plan (ADDR FILE pairs and/or an ESP-IDF build
/// folder), where the target's facts come from, and the options the write will use.
public struct PreflightRequest: Sendable {
    /// ADDR FILE pairs (instead of or in addition to `buildDir`).
    public var pairs: [String] = []
    public var buildDir: String?
    public var sdkconfig: String?
    public var partitionTableOffset: String?
    /// Target: a virtual device folder, a port read through its ROM loader, or flags.
    public var state: String?
    public var port: String?
    public var before: ResetMode = .defaultReset
    public var chip: String?
    public var flashSize: String?
    public var chipRevision: String?
    public var efuseSummary: String?
    /// An `espefuse --virt --path-efuse-file` file of an ESP32-S3 / ESP32-C3 (as `efuse decode
    /// --from-file` reads it): the key blocks, Secure Boot and flash-encryption eFuses.
    public var efuseFile: String?
    /// The write's options (nil: the build's, else keep).
    public var writeFlashMode: String?
    public var writeFlashFreq: String?
    public var writeFlashSize: String?
    public var encrypt = false
    /// Also write the plan into a copy of the device and power it on.
    public var simulate = false
    public var rngSeed: UInt64?

    public init() {}
}

/// The outcome of a preflight run: the target, the safety rules' report and, with `simulate`,
/// the predicted first power-on. Rendered as text or JSON.
public struct PreflightOutcome {
    public var target: TargetFacts
    public var plan: FlashPlan
    public var report: SafetyReport
    public var simulation: FirstBootPrediction?
    /// Why the plan could not be simulated (the static findings usually say it too).
    public var simulationError: (any Error)?

    /// The exit status after the output: 1 with an error finding (or an unsimulatable plan that
    /// otherwise passes), 2 when the plan passes but no app would boot, nil for success.
    public var exitStatus: Int32? {
        if simulationError != nil, report.passed { return 1 }
        if !report.passed { return 1 }
        if let simulation, simulation.bootedPartition == nil { return 2 }
        return nil
    }

    /// The JSON document of `preflight --json`.
    public var json: PreflightJSON {
        PreflightJSON(target: TargetJSON(target), passed: report.passed, errors: report.errors, warnings: report.warnings,
                      findings: report.findings, simulation: simulation,
                      simulationError: simulationError.map { ($0 as? any DiagnosticConvertible)?.diagnostic.description ?? "\($0)" })
    }

    /// The text report (the simulation error, if any, is the caller's to render as an error).
    public var text: String {
        var out = "preflight: \(plan.entries.count) file(s) against \(target.chip.displayName)"
            + (target.flashSize.map { ", \($0 >> 20)MB flash" } ?? "")
            + (target.chipRevision.map { ", rev v\($0 / 100).\($0 % 100)" } ?? "")
            + " (\(target.source))\n"
        for f in report.findings { out += FindingText.render(f) }
        out += (report.findings.isEmpty ? "no findings: the plan passes every rule (\(report.rulesRun) rules)"
                : "\(report.errors) error(s), \(report.warnings) warning(s)") + "\n"
        if let simulation { out += FirstBootText.render(simulation) }
        return out
    }
}

/// One finding as text: severity, code, rule and message, the evidence, why and how to fix it.
public enum FindingText {
    public static func render(_ f: Finding) -> String {
        var out = "\(f.severity.rawValue.uppercased()) \(f.code) \(f.rule): \(f.message)"
            + (f.overridden ? " (overridden by --force)" : "") + "\n"
        for e in f.evidence { out += "    \(e)\n" }
        out += "  why: \(f.explanation)\n"
        if !f.fix.isEmpty { out += "  fix: \(f.fix)\n" }
        return out
    }

    /// `--list-rules`: every rule of the one engine, one line each.
    public static func ruleList() -> String {
        SafetyRules.rules.map { "\($0.code)  \($0.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \($0.summary)\n" }.joined()
    }
}

/// The predicted first power-on as text.
enum FirstBootText {
    static func render(_ s: FirstBootPrediction) -> String {
        var out = "\nsimulated first power-on (a copy of the device; nothing was written to it):\n"
        if !s.assumptions.isEmpty {
            out += "  no sdkconfig: the bootloader's options are inferred from the plan:\n"
            for a in s.assumptions { out += "    \(a)\n" }
        }
        for w in s.writes { out += "  wrote \(w)\n" }
        for (i, log) in s.bootLogs.enumerated() {
            out += "--- power cycle \(i + 1)" + (i == 0 ? " (first power-on)" : " (reset by the bootloader)") + "\n" + log
        }
        out += "---\n"
        if let p = s.bootedPartition {
            out += "predicted: app started from \(p)\n"
        } else {
            out += "predicted: no app starts (\(s.result ?? "?")): \(s.reason ?? "")" + (s.errorCode.map { ", last error \($0)" } ?? "") + "\n"
        }
        out += "eFuses burned: " + (s.burnedEFuses.isEmpty ? "none" : s.burnedEFuses.joined(separator: ", ")) + "\n"
        out += "encrypted in place: " + (s.encryptedRegions.isEmpty ? "nothing" : s.encryptedRegions.joined(separator: ", ")) + "\n"
        return out
    }
}

public struct RuleRow: Codable, Sendable {
    public var code: String
    public var name: String
    public var summary: String
    public static var all: [RuleRow] { SafetyRules.rules.map { RuleRow(code: $0.code, name: $0.name, summary: $0.summary) } }
}

public struct TargetJSON: Codable, Sendable {
    public var chip: String
    public var flashSize: Int?
    public var chipRevision: Int?
    public var source: String
    public var efuses: SecurityFuseFacts?
    public init(_ t: TargetFacts) {
        chip = t.chip.name
        flashSize = t.flashSize
        chipRevision = t.chipRevision
        source = t.source
        efuses = t.efuses
    }
}

public struct PreflightJSON: Codable, Sendable {
    public var target: TargetJSON
    public var passed: Bool
    public var errors: Int
    public var warnings: Int
    public var findings: [Finding]
    public var simulation: FirstBootPrediction?
    public var simulationError: String?
}
