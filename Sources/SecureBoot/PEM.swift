import Foundation

/// One `-----BEGIN LABEL-----` … `-----END LABEL-----` block.
struct PEMBlock {
    let label: String
    let der: [UInt8]
    /// Whether RFC 1421 headers marked it encrypted (`Proc-Type: 4,ENCRYPTED`).
    let encrypted: Bool

    /// All PEM blocks in `text`, in order. Malformed base64 → nil.
    static func parseAll(_ text: String) -> [PEMBlock]? {
        var blocks: [PEMBlock] = []
        var label: String?
        var body = ""
        var encrypted = false
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") {
                label = String(line.dropFirst(11).dropLast(5))
                body = ""
                encrypted = false
            } else if line.hasPrefix("-----END "), line.hasSuffix("-----") {
                guard let l = label, String(line.dropFirst(9).dropLast(5)) == l else { return nil }
                guard let data = Data(base64Encoded: body) else { return nil }
                blocks.append(PEMBlock(label: l, der: [UInt8](data), encrypted: encrypted))
                label = nil
            } else if label != nil {
                if line.contains(":") {
                    if line.uppercased().contains("ENCRYPTED") { encrypted = true }
                } else {
                    body += line
                }
            }
        }
        return blocks
    }

    /// PEM text with 64-character lines and `\n` line ends (as OpenSSL writes it).
    static func encode(label: String, der: [UInt8]) -> String {
        let b64 = Data(der).base64EncodedString()
        var out = "-----BEGIN \(label)-----\n"
        var line = ""
        for c in b64 {
            line.append(c)
            if line.count == 64 { out += line + "\n"; line = "" }
        }
        if !line.isEmpty { out += line + "\n" }
        out += "-----END \(label)-----\n"
        return out
    }
}
