import Diagnostics

/// The doctor on a failed first boot's console log (kept in its own file: Diagnostics and
/// BootSimulator both define `SDKConfig`).
enum BootDiagnosis {
    /// "RULE: cause" of the doctor's primary finding, nil when no rule matched.
    static func primaryCause(log: String) -> String? {
        Doctor.diagnose(logBytes: Array(log.utf8)).primary.map { "\($0.rule): \($0.cause)" }
    }
}
