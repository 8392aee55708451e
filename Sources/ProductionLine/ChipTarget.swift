import Diagnostics
import ESPCore
import Flasher
import Transport

/// The facts preflight checks a plan against, read from a chip through its ROM loader (nothing
/// is written): chip, revision, flash size from the flash id, security eFuses.
public enum ChipTarget {
    public static func read(port: String, before: ResetMode) throws -> TargetFacts {
        var options = SessionOptions()
        options.before = before
        options.ports = BoardPorts.opener
        options.after = .noReset
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
