import ESPCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one place where user-facing errors and warnings are rendered.
enum ErrorRenderer {
    static func report(_ error: DiagnosticConvertible) {
        writeStderr("error: " + error.diagnostic.description + "\n")
    }

    static func warn(_ diagnostic: Diagnostic) {
        writeStderr("warning: " + diagnostic.description + "\n")
    }

    static func warn(_ message: String) {
        writeStderr("warning: " + message + "\n")
    }

    static func writeStderr(_ text: String) {
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(2, raw.baseAddress! + done, raw.count - done)
                if n <= 0 { break }
                done += n
            }
        }
    }
}
