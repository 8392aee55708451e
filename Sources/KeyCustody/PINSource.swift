import Foundation

/// Where a token PIN comes from: a PIN file (mode 0600, owned by this user), the environment
/// variable `ESPFORGE_PKCS11_PIN`, or an interactive prompt, in that order. Never the command
/// line; the PIN is never logged and its bytes are wiped after login.
public struct PINSource: Sendable {
    public static let environmentVariable = "ESPFORGE_PKCS11_PIN"

    public var file: String?
    /// A PIN read from a configuration file that was checked like a PIN file (espsecure's
    /// `credentials` in a 0600 `--hsm-config`).
    var configured: [UInt8]?
    public var environment: [String: String]
    /// Asks a person (the CLI passes a no-echo terminal prompt; nil when there is no terminal).
    public var prompt: (@Sendable (_ token: String) -> [UInt8]?)?

    public init(file: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment,
                prompt: (@Sendable (String) -> [UInt8]?)? = nil) {
        self.file = file; self.environment = environment; self.prompt = prompt
    }

    /// No PIN at all (public objects only).
    public static let none = PINSource(file: nil, environment: [:], prompt: nil)

    /// The PIN for `token`, or nil when no source has one.
    public func pin(for token: String) throws(KeyCustodyError) -> [UInt8]? {
        if let configured { return configured }
        if let file { return try Self.readPINFile(file) }
        if let v = environment[Self.environmentVariable], !v.isEmpty { return Array(v.utf8) }
        return prompt?(token)
    }

    /// Reads a PIN file: a regular file of this user, not readable by group or others; the PIN is
    /// its first line.
    public static func readPINFile(_ path: String) throws(KeyCustodyError) -> [UInt8] {
        var st = stat()
        guard stat(path, &st) == 0 else { throw .pinFile(path: path, why: "cannot read it (\(String(cString: strerror(errno))))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .pinFile(path: path, why: "not a regular file") }
        let mode = st.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw .pinFile(path: path, why: "mode is 0\(String(mode, radix: 8)); a PIN file must be readable by its owner only (chmod 600)")
        }
        guard st.st_uid == geteuid() else { throw .pinFile(path: path, why: "owned by another user") }
        guard let data = FileManager.default.contents(atPath: path) else { throw .pinFile(path: path, why: "cannot read it") }
        var bytes = [UInt8](data)
        if let nl = bytes.firstIndex(where: { $0 == 0x0A || $0 == 0x0D }) { bytes.removeSubrange(nl...) }
        guard !bytes.isEmpty else { throw .pinFile(path: path, why: "it is empty") }
        return bytes
    }
}
