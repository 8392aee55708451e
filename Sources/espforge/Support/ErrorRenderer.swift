import ESPCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one place where user-facing errors and warnings are rendered. Text that may quote bad
/// input is made terminal-safe first (control characters escaped, long runs cut to an excerpt:
/// see ``Diagnostic/terminalSafe(_:)``).
enum ErrorRenderer {
    static func report(_ error: DiagnosticConvertible) {
        writeStderr("error: " + error.diagnostic.terminalSafe.description + "\n")
    }

    static func warn(_ diagnostic: Diagnostic) {
        writeStderr("warning: " + diagnostic.terminalSafe.description + "\n")
    }

    static func warn(_ message: String) {
        writeStderr("warning: " + Diagnostic.terminalSafe(message) + "\n")
    }

    static func writeStderr(_ text: String) {
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count, let base = raw.baseAddress {
                let n = write(2, base + done, raw.count - done)
                if n <= 0 { break }
                done += n
            }
        }
    }
}
