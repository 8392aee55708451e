import ESPCore
import SecureBoot

/// The Secure Boot V2 part of `espforge image info`: what the signature sector of an image holds.
/// `image info` (ImageCommands.swift) calls ``secureBootReport(file:sectorOffset:)`` and prints
/// the result; the SecureBoot module supplies the facts.
struct SignatureBlockReport: Codable, Sendable {
    var index: Int
    /// e.g. "RSA-3072 (PSS)", "ECDSA P-256", "ECDSA P-384".
    var scheme: String
    /// Hex SHA-256 of the block's public-key fields: the digest burned into eFuse.
    var keyDigest: String
    var crcValid: Bool
    /// Whether the image digest stored in the block equals the digest of the signed content.
    var imageDigestMatches: Bool
    /// Whether the signature verifies with the block's own key (nil when it could not be checked).
    var signatureValid: Bool?
}

struct SignatureSectorReport: Codable, Sendable {
    /// File offset of the 4096-byte signature sector.
    var offset: Int
    var blocks: [SignatureBlockReport]
    /// Anything odd about the sector (e.g. "block 1: bad magic; scanning stopped").
    var problems: [String]
}

/// Returns nil when `file` has no Secure Boot V2 signature sector at `sectorOffset`.
func secureBootReport(file: [UInt8], sectorOffset: Int) -> SignatureSectorReport? {
    guard sectorOffset >= 0, sectorOffset < file.count, file.count - sectorOffset >= SignatureSector.size,
          file[sectorOffset] == SignatureBlock.magic else { return nil }
    let inspection = SecureBootVerifier.inspect(image: file, sectorOffset: sectorOffset)
    let blocks = inspection.checks.map { c in
        SignatureBlockReport(index: c.index, scheme: c.block.scheme.displayName, keyDigest: c.block.keyDigest.hexString,
                             crcValid: c.block.crcValid, imageDigestMatches: c.digestMatches,
                             signatureValid: c.signatureValid)
    }
    return SignatureSectorReport(offset: sectorOffset, blocks: blocks, problems: inspection.sector.problems)
}
