import Diagnostics
import EFuse
import ESPCore
import Flasher

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
        return errors(entries: entries, target: target, sdkconfigValues: sdkconfigValues, partitionTableOffset: partitionTableOffset)
    }

    /// The same for an ESP32-S3/C3, from its eFuse blocks as read.
    static func errors(entries: [Entry], words: EFuseBlockWords, map: EFuseFieldMap, flashSize: Int, chipRevision: Int,
                       sdkconfigValues: [String: String], partitionTableOffset: Int) -> [String] {
        let facts = SecurityFuseFacts(words: words, map: map)
        let target = TargetFacts(chip: ChipSpec.named(map.chip) ?? .esp32, flashSize: flashSize,
                                 chipRevision: chipRevision * 100 + (facts.waferVersionMinor ?? 0),
                                 efuses: facts, source: "device")
        return errors(entries: entries, target: target, sdkconfigValues: sdkconfigValues, partitionTableOffset: partitionTableOffset)
    }

    static func errors(entries: [Entry], target: TargetFacts, sdkconfigValues: [String: String], partitionTableOffset: Int) -> [String] {
        let plan = FlashPlan(entries: entries.map { PlanEntry(address: $0.offset, name: $0.name, bytes: $0.bytes) },
                             partitionTableOffset: partitionTableOffset, sdkconfig: SDKConfig(values: sdkconfigValues))
        return SafetyRules.check(plan: plan, target: target).findings
            .filter { $0.severity == .error }
            .map { "\($0.code): \($0.message)" }
    }
}

extension DevicePreflight {
    /// The write-time safety rules (``FlashSafety``) on regions for an ESP32-S3/C3 with these
    /// eFuse blocks: refused, and the blocking findings as one line.
    static func safety(regions: [(name: String, offset: Int, bytes: [UInt8])], words: EFuseBlockWords, map: EFuseFieldMap,
                       flashSize: Int, chipRevision: Int, source: String, force: Bool) throws -> (refused: Bool, text: String) {
        guard let spec = ChipSpec.named(map.chip) else {
            throw ProvisioningError(.write, "no chip facts for \(map.chip)")
        }
        let target = TargetFacts(chip: spec, flashSize: flashSize, chipRevision: chipRevision,
                                 efuses: SecurityFuseFacts(words: words, map: map), source: source)
        let request = FlashRequest(regions: regions.map { FlashRegion(address: $0.offset, data: $0.bytes, name: $0.name) }, force: force)
        let report = FlashSafety.check(request, target: target)
        return (report.refused, report.refusalText)
    }
}
