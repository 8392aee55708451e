import Foundation

/// espsecure's `--hsm-config` file, accepted as it is so a line can move over without rewriting
/// its configuration:
///
///     [hsm_config]
///     pkcs11_lib = /usr/lib/softhsm/libsofthsm2.so
///     slot = 1940389591
///     label = sbv2-2026
///     label_pubkey = sbv2-2026-pub   (optional; default: label)
///     credentials = …                (optional PIN; then the file must be mode 0600)
public struct HSMConfig: Sendable, Equatable {
    public var modulePath: String
    public var slot: UInt
    public var label: String
    public var publicLabel: String?
    var credentials: [UInt8]?

    /// The private key as a URI (slot and label).
    public var privateKeyURI: PKCS11URI {
        var u = PKCS11URI(object: label, type: .privateKey)
        u.slotID = slot
        return u
    }

    /// The public key as a URI (label_pubkey, else label).
    public var publicKeyURI: PKCS11URI {
        var u = PKCS11URI(object: publicLabel ?? label, type: .publicKey)
        u.slotID = slot
        return u
    }

    /// `base` with the file's PIN (if it has one) taking precedence.
    public func pinSource(_ base: PINSource) -> PINSource {
        var s = base
        if let credentials { s.configured = credentials }
        return s
    }

    public static func load(path: String) throws(KeyCustodyError) -> HSMConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw .hsmConfig(file: path, why: "cannot read the file") }
        var st = stat()
        let mode = stat(path, &st) == 0 ? st.st_mode & 0o777 : 0o777
        return try parse(String(decoding: data, as: UTF8.self), file: path, mode: mode)
    }

    /// Parses the INI text. `mode`: the file's permission bits (a file holding credentials must
    /// not be readable by group or others).
    public static func parse(_ text: String, file: String, mode: mode_t) throws(KeyCustodyError) -> HSMConfig {
        var section: String?
        var values: [String: String] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw .hsmConfig(file: file, why: "line \(n + 1): unterminated section header") }
                section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard section == "hsm_config" else { continue }
            guard let sep = line.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                throw .hsmConfig(file: file, why: "line \(n + 1): expected `name = value`")
            }
            let name = line[..<sep].trimmingCharacters(in: .whitespaces).lowercased()
            values[name] = line[line.index(after: sep)...].trimmingCharacters(in: .whitespaces)
        }
        guard section != nil || !values.isEmpty else { throw .hsmConfig(file: file, why: "no [hsm_config] section") }
        func required(_ name: String) throws(KeyCustodyError) -> String {
            guard let v = values[name], !v.isEmpty else { throw .hsmConfig(file: file, why: "`\(name)` is missing under [hsm_config]") }
            return v
        }
        let lib = try required("pkcs11_lib")
        let slotText = try required("slot")
        guard let slot = UInt(slotText) else { throw .hsmConfig(file: file, why: "slot `\(slotText)` is not a slot number") }
        let label = try required("label")
        var config = HSMConfig(modulePath: lib, slot: slot, label: label, publicLabel: values["label_pubkey"], credentials: nil)
        if let pin = values["credentials"], !pin.isEmpty {
            guard mode & 0o077 == 0 else {
                throw .hsmConfig(file: file, why: "it holds the token PIN (credentials) but its mode is 0\(String(mode, radix: 8)); "
                                 + "chmod 600 it, or remove credentials and set $ESPFORGE_PKCS11_PIN")
            }
            config.credentials = Array(pin.utf8)
        }
        for key in values.keys where !["pkcs11_lib", "slot", "label", "label_pubkey", "credentials"].contains(key) {
            throw .hsmConfig(file: file, why: "unknown option `\(key)`")
        }
        return config
    }

    public static func == (a: HSMConfig, b: HSMConfig) -> Bool {
        a.modulePath == b.modulePath && a.slot == b.slot && a.label == b.label && a.publicLabel == b.publicLabel
            && (a.credentials == nil) == (b.credentials == nil)
    }
}
