import ESPCore

/// One Secure Boot V2 signature block as `image info` and `secure-boot info` report it.
public struct SignatureBlockReport: Codable, Sendable, Equatable {
    public var index: Int
    /// e.g. "RSA-3072 (PSS)", "ECDSA P-256", "ECDSA P-384".
    public var scheme: String
    /// Hex SHA-256 of the block's public-key fields: the digest burned into eFuse.
    public var keyDigest: String
    public var crcValid: Bool
    /// Whether the image digest stored in the block equals the digest of the signed content.
    public var imageDigestMatches: Bool
    /// Whether the signature verifies with the block's own key (nil when it could not be checked).
    public var signatureValid: Bool?
}

/// What the signature sector of an image holds.
public struct SignatureSectorReport: Codable, Sendable, Equatable {
    /// File offset of the 4096-byte signature sector.
    public var offset: Int
    public var blocks: [SignatureBlockReport]
    /// Anything odd about the sector (e.g. "block 1: bad magic; scanning stopped").
    public var problems: [String]

    /// The blocks of the sector of `file` at `sectorOffset`, each checked against the content
    /// before it; nil when there is no Secure Boot V2 signature sector there.
    public static func inspect(file: [UInt8], sectorOffset: Int) -> SignatureSectorReport? {
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
}

/// `espforge secure-boot info`: the signature blocks of a signed image (``text`` / ``json()``).
public struct SecureBootInfoReport: Encodable, Sendable, Equatable {
    /// The name the image is reported under (its path).
    public var file: String
    public var length: Int
    public var signatureSector: SignatureSectorReport?
    public var problems: [String]
    /// Offset of the last 4 KiB sector (where a signature sector would be).
    public var sectorOffset: Int

    enum CodingKeys: String, CodingKey { case file, length, signatureSector, problems }

    /// Reads the last 4096-byte sector of `image`. Throws when the image has no 4 KiB-aligned
    /// sector (``SignedImage/sectorOffset(of:)``); an unsigned image gives a report with a problem.
    public static func inspect(image: [UInt8], name: String) throws -> SecureBootInfoReport {
        let offset = try SignedImage.sectorOffset(of: image)
        let sector = SignatureSectorReport.inspect(file: image, sectorOffset: offset)
        let problems = sector == nil ? ["no signature block at offset 0x\(String(offset, radix: 16)) (unsigned image?)"] : []
        return SecureBootInfoReport(file: name, length: image.count, signatureSector: sector, problems: problems,
                                    sectorOffset: offset)
    }

    public var text: String {
        var lines = ["\(file): \(length) bytes, signature sector at 0x\(String(sectorOffset, radix: 16))"]
        guard let sector = signatureSector else { return lines.joined(separator: "\n") + "\n  no signature block (unsigned image?)\n" }
        for b in sector.blocks {
            lines += ["  block \(b.index): \(b.scheme)",
                      "    key digest:   \(b.keyDigest)",
                      "    CRC32:        \(b.crcValid ? "valid" : "INVALID")",
                      "    image digest: \(b.imageDigestMatches ? "matches content" : "DOES NOT MATCH content")",
                      "    signature:    \(b.signatureValid.map { $0 ? "valid" : "INVALID" } ?? "not checked")"]
        }
        lines += sector.problems.map { "  note: \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() throws -> String { try JSONText.render(self) }
}

extension SigningResult {
    /// What `secure-boot sign` prints after writing the result to `output` (one line each).
    public func summary(output: String) -> [String] {
        let contentLength = image.count - SignatureSector.size
        var line = "signed \(contentLength) bytes"
        if padding > 0 { line += " (padded with \(padding) bytes of 0xFF)" }
        var lines = [line + "; signature sector at 0x\(String(contentLength, radix: 16)) now has \(totalBlocks) block(s)"]
        for (i, b) in newBlocks.enumerated() {
            lines.append("  block \(existingBlocks + i): \(b.scheme.displayName), key digest \(b.keyDigest.hexString)")
        }
        return lines + ["verified and wrote \(output)"]
    }
}
