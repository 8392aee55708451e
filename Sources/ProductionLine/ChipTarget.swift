import Diagnostics
import ESPCore
import Flasher
import Transport

/// The facts preflight checks a plan against, read from a chip through its ROM loader (nothing
/// is written): chip, revision, flash size from the flash id, security eFuses. An ESP32's eFuses
/// are read through its register layout; an ESP32-S3/C3's blocks through the chip's field map.
public enum ChipTarget {
    public static func read(port: String, before: ResetMode) throws -> TargetFacts {
        var options = SessionOptions()
        options.before = before
        options.ports = BoardPorts.opener
        options.after = .noReset
        do {
            return try readESP32(port: port, options: options)
        } catch FlasherError.unknownChip {
            // Not an ESP32 (the session closed its port): read it again through its field map.
            return try FieldMapTarget.read(port: port, options: options).target(source: "port \(port)")
        }
    }

    static func readESP32(port: String, options: SessionOptions) throws -> TargetFacts {
        let session = FlashSession(port: port, options: options)
        defer { session.finishWithoutReset() }
        try session.connect()
        let info = try session.chipInfo()
        let efuses = try session.withClient { try ChipProbe.readEFuses($0) }
        guard let spec = session.facts?.spec else { throw UsageError("no answer from \(port)") }
        return TargetFacts(chip: spec, flashSize: info.flashSize, chipRevision: info.majorRevision * 100 + info.minorRevision,
                           efuses: SecurityFuseFacts(esp32: efuses), source: "port \(port)")
    }
}
