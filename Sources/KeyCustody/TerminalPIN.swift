import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension PINSource {
    /// The PIN from `file`, else `$ESPFORGE_PKCS11_PIN`, else — only when standard input is a
    /// terminal — a no-echo prompt (``terminalPrompt(_:)``).
    public static func interactive(file: String?) -> PINSource {
        var prompt: (@Sendable (String) -> [UInt8]?)? = nil
        if isatty(STDIN_FILENO) == 1 { prompt = { (token: String) -> [UInt8]? in PINSource.terminalPrompt(token) } }
        return PINSource(file: file, environment: ProcessInfo.processInfo.environment, prompt: prompt)
    }

    /// Asks for the PIN of `token` on the terminal without echo; the C buffer is wiped. nil when
    /// nothing was entered.
    public static func terminalPrompt(_ token: String) -> [UInt8]? {
        guard let p = getpass("PIN for token \(token): ") else { return nil }
        let length = strlen(p)
        let bytes = [UInt8](UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: length))
        memset(p, 0, length)
        return bytes.isEmpty ? nil : bytes
    }
}
