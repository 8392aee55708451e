import Foundation
import SwiftASN1

/// One `-----BEGIN LABEL-----` … `-----END LABEL-----` block.
///
/// Reading stays tolerant here rather than going through swift-asn1's `PEMDocument`, which
/// requires 64-character lines and no RFC 1421 headers: OpenSSL and espsecure accept any line
/// length, and an encrypted key (`Proc-Type: 4,ENCRYPTED`) must be reported as such, not as
/// damaged PEM. The DER inside is read by swift-asn1 (KeyStructures.swift); PEM is written by it.
public struct PEMBlock: Sendable, Equatable {
    public let label: String
    public let der: [UInt8]
    /// Whether RFC 1421 headers marked it encrypted (`Proc-Type: 4,ENCRYPTED`).
    public let encrypted: Bool

    /// All PEM blocks in `text`, in order. Malformed base64 → nil.
    public static func parseAll(_ text: String) -> [PEMBlock]? {
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

    /// PEM text with 64-character lines and `\n` line ends (as OpenSSL writes it), through swift-asn1.
    public static func encode(label: String, der: [UInt8]) -> String {
        PEMDocument(type: label, derBytes: der).pemString + "\n"
    }
}
