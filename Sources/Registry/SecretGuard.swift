/// Keeps key material out of the registry. The registry stores digests (exactly 32-byte hex
/// values in their own fields) and key ids (short labels); anything that looks like a PEM key,
/// a raw hex/base64 key, or a populated key eFuse block is refused before it reaches the database.
public enum SecretGuard {
    static let nameCharacters = Set("abcdefghijklmnopqrstuvwxyz0123456789_.-")

    /// Checks a device's facts; throws ``RegistryError/secretRejected(field:why:)`` or
    /// ``RegistryError/invalidValue(field:why:)``.
    public static func check(_ facts: DeviceFacts) throws(RegistryError) {
        for (field, value) in [("chip", facts.chip), ("flash_id", facts.flashID ?? ""), ("station", facts.station ?? "")] {
            try checkLabel(value, field: field, maxLength: 128)
        }
        if let h = facts.manifestHash { try checkDigest(h, field: "manifest_hash") }
        for (name, digest) in facts.imageHashes {
            try checkName(name, field: "image_hashes")
            try checkDigest(digest, field: "image_hashes.\(name)")
        }
        for (name, digest) in facts.keyDigests {
            try checkName(name, field: "key_digests")
            try checkDigest(digest, field: "key_digests.\(name)")
        }
        for (name, id) in facts.keyIDs {
            try checkName(name, field: "key_ids")
            try checkLabel(id, field: "key_ids.\(name)", maxLength: 128)
        }
    }

    /// eFuse summary: field → value as read back. Key blocks must read as zeros or be read-protected.
    public static func check(efuseSummary: [String: String]) throws(RegistryError) {
        for (name, value) in efuseSummary {
            try checkLabel(name, field: "efuse_summary", maxLength: 64)
            if isKeyField(name) && !looksEmpty(value) && !isKeyBlockState(value) {
                throw .secretRejected(field: "efuse_summary.\(name)",
                                      why: "a key eFuse block with readable contents (record its digest in key_digests instead)")
            }
            try checkFreeText(value, field: "efuse_summary.\(name)")
        }
    }

    /// Free text (step details, failure reasons): no PEM blocks.
    public static func checkFreeText(_ text: String, field: String) throws(RegistryError) {
        if text.contains("-----BEGIN") || text.uppercased().contains("PRIVATE KEY") {
            throw .secretRejected(field: field, why: "it contains a PEM key block")
        }
        guard text.utf8.count <= 16384 else { throw .invalidValue(field: field, why: "longer than 16 KiB") }
    }

    /// Free text with PEM blocks cut out (for error messages recorded automatically).
    public static func redactedFreeText(_ text: String) -> String {
        guard let start = text.range(of: "-----BEGIN") else { return String(text.prefix(16384)) }
        return String(text[..<start.lowerBound]) + "[key material removed]"
    }

    /// An identity id (serial number): 1–128 printable characters, no PEM block. Unlike key ids,
    /// long hex serials are allowed: identities are public names, not key labels.
    public static func checkIdentity(_ id: String) throws(RegistryError) {
        guard !id.isEmpty, id.count <= 128 else { throw .invalidValue(field: "identity", why: "must be 1–128 characters") }
        guard id.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw .invalidValue(field: "identity", why: "control characters")
        }
        try checkFreeText(id, field: "identity")
    }

    static func isKeyField(_ name: String) -> Bool {
        let n = name.uppercased()
        if n == "KEY_STATUS" || n.hasPrefix("KEY_PURPOSE") { return false }
        return n.hasPrefix("BLOCK") && n != "BLOCK0" || n.hasPrefix("BLK") && n != "BLK0" || n.contains("KEY")
    }

    /// A key block described by its state, never its contents (ESP32-S3/C3 summaries):
    /// `empty`, a number of at most three digits, or a purpose name (capitals, digits, `_`, at most 32) followed by states from a
    /// fixed list, e.g. `SECURE_BOOT_DIGEST0, burned, write-protected`.
    static func isKeyBlockState(_ value: String) -> Bool {
        let parts = value.split(separator: ",", omittingEmptySubsequences: false).map { String($0.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
        guard let purpose = parts.first else { return false }
        // A small number (a flag or count whose name mentions KEY, e.g. SECURE_BOOT_KEY_REVOKE0).
        if parts.count == 1 { return purpose == "empty" || (purpose.count <= 3 && purpose.allSatisfy { $0.isASCII && $0.isNumber }) }
        let states: Set<String> = ["burned", "empty", "contents unknown", "read-protected", "write-protected"]
        return purpose.count <= 32 && !purpose.isEmpty && purpose.allSatisfy { $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") }
            && purpose.first?.isUppercase == true && parts.dropFirst().allSatisfy(states.contains)
    }

    static func looksEmpty(_ value: String) -> Bool {
        let v = value.lowercased().replacingOccurrences(of: "0x", with: "")
        if v.contains("read-protected") || v.contains("read protected") || v.contains("??") { return true }
        return v.allSatisfy { $0 == "0" || $0 == " " || $0 == ":" || $0 == "-" || $0 == "," }
    }

    static func checkName(_ name: String, field: String) throws(RegistryError) {
        guard !name.isEmpty, name.count <= 64, name.lowercased().allSatisfy({ nameCharacters.contains($0) }) else {
            throw .invalidValue(field: field, why: "name `\(name.prefix(64))` must be 1–64 letters, digits, `_`, `.` or `-`")
        }
    }

    static func checkDigest(_ value: String, field: String) throws(RegistryError) {
        guard value.count == 64, value.allSatisfy({ $0.isHexDigit }) else {
            if value.contains("-----BEGIN") { throw .secretRejected(field: field, why: "it contains a PEM key block") }
            throw .invalidValue(field: field, why: "a SHA-256 digest is 64 hex digits")
        }
    }

    /// A label: short, printable, and not shaped like key material.
    static func checkLabel(_ value: String, field: String, maxLength: Int) throws(RegistryError) {
        if value.contains("-----BEGIN") || value.uppercased().contains("PRIVATE KEY") {
            throw .secretRejected(field: field, why: "it contains a PEM key block")
        }
        guard value.count <= maxLength else {
            throw .secretRejected(field: field, why: "longer than \(maxLength) characters (key material?)")
        }
        guard value.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw .invalidValue(field: field, why: "control characters")
        }
        // Runs of hex or base64 long enough to be a 128-bit or longer key.
        var hexRun = 0, b64Run = 0
        for ch in value {
            hexRun = ch.isHexDigit ? hexRun + 1 : 0
            b64Run = (ch.isASCII && (ch.isLetter || ch.isNumber || ch == "+" || ch == "/" || ch == "=")) ? b64Run + 1 : 0
            if hexRun >= 32 { throw .secretRejected(field: field, why: "it holds a run of 32+ hex digits (a raw key?)") }
            if b64Run >= 40 { throw .secretRejected(field: field, why: "it holds a run of 40+ base64 characters (a raw key?)") }
        }
    }
}
