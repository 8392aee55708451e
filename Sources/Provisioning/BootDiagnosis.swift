import Diagnostics
import EFuse

/// The doctor on a failed first boot's console log (kept in its own file: Diagnostics and
/// BootSimulator both define `SDKConfig`).
enum BootDiagnosis {
    /// "RULE: cause" of the doctor's primary finding, nil when no rule matched.
    static func primaryCause(log: String) -> String? {
        Doctor.diagnose(logBytes: Array(log.utf8)).primary.map { "\($0.rule): \($0.cause)" }
    }

    /// Like ``primaryCause(log:)`` but only when the doctor is at least fairly sure (a boot that
    /// merely went quiet — an app with nothing to say, in-place encryption at work — is not a failure).
    static func confidentCause(log: String) -> String? {
        guard let f = Doctor.diagnose(logBytes: Array(log.utf8)).primary, f.confidence > .low else { return nil }
        return "\(f.rule): \(f.cause)"
    }
}

/// The safety rules (the one engine of flash, preflight and provision) on this device's whole
/// plan, with this device's facts and the build's configuration.
enum DevicePreflight {
    struct Entry { var name: String; var offset: Int; var bytes: [UInt8] }

    /// Error findings as "PFxxx: message" lines (warnings do not stop a device).
    static func errors(entries: [Entry], efuses: EFuseArray, flashSize: Int, chipRevision: Int,
                       sdkconfigValues: [String: String], partitionTableOffset: Int) -> [String] {
        let facts = SecurityFuseFacts(esp32: efuses)
        let target = TargetFacts(chip: .esp32, flashSize: flashSize,
                                 chipRevision: chipRevision * 100 + (facts.waferVersionMinor ?? 0),
                                 efuses: facts, source: "device")
        let plan = FlashPlan(entries: entries.map { PlanEntry(address: $0.offset, name: $0.name, bytes: $0.bytes) },
                             partitionTableOffset: partitionTableOffset, sdkconfig: SDKConfig(values: sdkconfigValues))
        return SafetyRules.check(plan: plan, target: target).findings
            .filter { $0.severity == .error }
            .map { "\($0.code): \($0.message)" }
    }
}
