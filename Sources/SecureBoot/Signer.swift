import ESPCore

/// The result of signing: the complete output image and what happened.
public struct SigningResult: Sendable {
    /// Content (padded) ‖ signature sector.
    public let image: [UInt8]
    /// Bytes of 0xFF appended to reach a 4096-byte boundary.
    public let padding: Int
    /// Blocks kept from the input's sector (`--append`).
    public let existingBlocks: Int
    public let newBlocks: [SignatureBlock]
    /// Non-fatal remarks (e.g. ESP32 honours only block 0).
    public let warnings: [String]

    public var totalBlocks: Int { existingBlocks + newBlocks.count }
}

/// Signing of images for Secure Boot V2, with private keys or with signatures made elsewhere.
public enum SecureBootSigner {
    /// What is signed, derived from the input image.
    public struct Prepared: Sendable {
        /// Everything before the signature sector, padded to 4 KiB.
        public internal(set) var content: [UInt8]
        public let padding: Int
        /// Valid blocks of an existing sector (append mode).
        public let existing: [SignatureBlock]
    }

    /// Without `append`: pads the image (refusing one that is already signed). With `append`:
    /// keeps the valid blocks of the existing sector (they must sign the same content).
    public static func prepare(image: [UInt8], append: Bool) throws -> Prepared {
        if !append {
            if let signed = SignedImage.existingSignature(image) {
                throw SecureBootError.alreadySigned(blocks: signed.sector.validBlocks.count, offset: signed.offset)
            }
            let (content, padding) = SignedImage.padded(image, reserve: SignatureSector.size)
            return Prepared(content: content, padding: padding, existing: [])
        }
        let offset = try SignedImage.sectorOffset(of: image)
        let sector = SignatureSector.parse(file: image, offset: offset)
        let valid = sector.validBlocks
        guard !valid.isEmpty else { throw SecureBootError.appendWithoutSignature(offset: offset) }
        var digests = DigestCache(content: image[0..<offset])
        for e in valid where digests.digest(e.block.scheme.contentHash).bytes != e.block.imageDigest {
            throw SecureBootError.staleBlock(index: e.index, offset: e.offset)
        }
        var content: [UInt8] = []
        content.reserveCapacity(offset + SignatureSector.size)
        content.append(contentsOf: image[0..<offset])
        return Prepared(content: content, padding: 0, existing: valid.map(\.block))
    }

    /// The digest an external signer must sign for `image` (content padded as `sign` pads it; an
    /// already signed image yields the digest of the content before its signature sector, for
    /// `--append`). `hash`: SHA-256 for RSA-3072 and P-256, SHA-384 for P-384.
    public static func digestToSign(image: [UInt8], hash: ContentHash) -> (digest: ContentDigest, padding: Int, signed: Bool) {
        if let signed = SignedImage.existingSignature(image) {
            return (hash.digest(image[0..<signed.offset]), 0, true)
        }
        let (content, padding) = SignedImage.padded(image)
        return (hash.digest(content), padding, false)
    }

    /// Signs `image` with each key in order (one block per key).
    public static func sign(image: [UInt8], keys: [SigningKey], append: Bool,
                            policy: SecureBootPolicy) throws -> SigningResult {
        guard !keys.isEmpty else { throw SecureBootError.noKeys }
        for k in keys { try policy.check(k.scheme) }
        var prepared = try prepare(image: image, append: append)
        try checkCapacity(existing: prepared.existing.count, adding: keys.count)
        try checkSchemes(prepared.existing, keys.map(\.scheme))
        let digests = contentDigests(prepared.content, keys.map(\.scheme.contentHash))
        var blocks: [SignatureBlock] = []
        for key in keys {
            guard let digest = digests[key.scheme.contentHash] else { throw SecureBootError.signingFailed("no digest") }
            let signature = try key.sign(contentDigest: digest)
            blocks.append(SignatureBlock.make(imageDigest: digest, key: try key.publicKey.fields(), signature: signature))
        }
        return try finish(&prepared, blocks, keys.map(\.publicKey), policy: policy)
    }

    /// Builds blocks from signatures made elsewhere (HSM, openssl): RSA raw 384-byte big-endian
    /// RSA-PSS, ECDSA DER. Each signature must verify with its public key over the content digest.
    public static func signExternal(image: [UInt8], signatures: [(key: VerifyingKey, signature: [UInt8])],
                                    append: Bool, policy: SecureBootPolicy) throws -> SigningResult {
        guard !signatures.isEmpty else { throw SecureBootError.noKeys }
        for s in signatures { try policy.check(s.key.scheme) }
        var prepared = try prepare(image: image, append: append)
        try checkCapacity(existing: prepared.existing.count, adding: signatures.count)
        try checkSchemes(prepared.existing, signatures.map(\.key.scheme))
        let digests = contentDigests(prepared.content, signatures.map(\.key.scheme.contentHash))
        var blocks: [SignatureBlock] = []
        for (i, s) in signatures.enumerated() {
            guard let digest = digests[s.key.scheme.contentHash] else { throw SecureBootError.signingFailed("no digest") }
            let raw = try s.key.normalizeExternalSignature(s.signature, index: i)
            guard s.key.isValidSignature(raw, contentDigest: digest) else {
                throw SecureBootError.externalSignatureInvalid(index: i, digestHex: digest.bytes.hexString)
            }
            blocks.append(SignatureBlock.make(imageDigest: digest, key: try s.key.fields(), signature: raw))
        }
        return try finish(&prepared, blocks, signatures.map(\.key), policy: policy)
    }

    static func checkSchemes(_ existing: [SignatureBlock], _ adding: [SignatureScheme]) throws {
        var seen: [SignatureScheme] = []
        for s in existing.map(\.scheme) + adding where !seen.contains(s) { seen.append(s) }
        if seen.count > 1 { throw SecureBootError.mixedSchemes(seen) }
    }

    static func checkCapacity(existing: Int, adding: Int) throws {
        guard existing + adding <= SignatureSector.maxBlocks else {
            throw SecureBootError.tooManyBlocks(existing: existing, adding: adding)
        }
    }

    /// Assembles the output and verifies it as a device would before returning it.
    /// Each needed digest of `content`, computed once.
    static func contentDigests(_ content: [UInt8], _ hashes: [ContentHash]) -> [ContentHash: ContentDigest] {
        var out: [ContentHash: ContentDigest] = [:]
        for h in hashes where out[h] == nil { out[h] = h.digest(content) }
        return out
    }

    static func finish(_ prepared: inout Prepared, _ blocks: [SignatureBlock], _ keys: [VerifyingKey],
                       policy: SecureBootPolicy) throws -> SigningResult {
        let all = prepared.existing + blocks
        let contentLength = prepared.content.count
        // Take the content buffer over (it has room for the sector) instead of copying it.
        var output = prepared.content
        prepared.content = []
        output.append(contentsOf: SignatureSector.build(all))
        // Self-check: parse the output like any other image; every new block must be valid and
        // verify with the key that made it.
        let inspection = SecureBootVerifier.inspect(image: output, sectorOffset: contentLength)
        for (j, key) in keys.enumerated() {
            let index = prepared.existing.count + j
            guard index < inspection.checks.count else {
                throw SecureBootError.selfVerificationFailed(index: index, reason: "block missing")
            }
            let check = inspection.checks[index]
            guard check.block.crcValid, check.digestMatches, check.signatureValid == true else {
                throw SecureBootError.selfVerificationFailed(index: index, reason: "block not valid")
            }
            guard (try? key.keyDigest()) == check.block.keyDigest,
                  key.isValidSignature(check.block.signature, contentDigest: check.contentDigest) else {
                throw SecureBootError.selfVerificationFailed(index: index, reason: "key mismatch")
            }
        }
        var warnings: [String] = []
        if all.count > policy.honouredBlocks {
            warnings.append("\(policy.displayName) honours only \(policy.honouredBlocks) signature block(s); "
                            + "the sector now has \(all.count), the extra ones are ignored by the device")
        }
        return SigningResult(image: output, padding: prepared.padding, existingBlocks: prepared.existing.count,
                             newBlocks: blocks, warnings: warnings)
    }
}

/// Checking signed images.
public enum SecureBootVerifier {
    /// One block of a sector checked against the image content.
    public struct BlockCheck: Sendable {
        public let index: Int
        /// File offset of the block.
        public let offset: Int
        public let block: SignatureBlock
        /// The stored image digest equals the digest of the content before the sector.
        public let digestMatches: Bool
        /// The signature verifies with the block's own key (nil: the block's key is unusable, e.g. a point off the curve).
        public let signatureValid: Bool?
        /// The digest of the content before the sector, with the block's hash function.
        public let contentDigest: ContentDigest
    }

    public struct Inspection: Sendable {
        public let sectorOffset: Int
        public let sector: SignatureSector
        public let checks: [BlockCheck]
    }

    /// Parses the sector at `sectorOffset` and checks every block found against the content
    /// `image[0..<sectorOffset]`. Never throws.
    public static func inspect(image: [UInt8], sectorOffset: Int) -> Inspection {
        let sector = SignatureSector.parse(file: image, offset: sectorOffset)
        guard sectorOffset >= 0, sectorOffset <= image.count else {
            return Inspection(sectorOffset: sectorOffset, sector: sector, checks: [])
        }
        var digests = DigestCache(content: image[0..<sectorOffset])
        let checks = sector.entries.map { e -> BlockCheck in
            let digest = digests.digest(e.block.scheme.contentHash)
            let matches = digest.bytes == e.block.imageDigest
            let valid = VerifyingKey(fields: e.block.key).map { $0.isValidSignature(e.block.signature, contentDigest: digest) }
            return BlockCheck(index: e.index, offset: e.offset, block: e.block, digestMatches: matches,
                              signatureValid: valid, contentDigest: digest)
        }
        return Inspection(sectorOffset: sectorOffset, sector: sector, checks: checks)
    }

    /// Verifies that a signed image carries a valid block made with `key` that `policy`'s chip
    /// honours. Returns that block's index; throws ``SecureBootError/verificationFailed(reasons:)``
    /// with one reason per block otherwise.
    @discardableResult
    public static func verify(image: [UInt8], key: VerifyingKey, policy: SecureBootPolicy) throws -> Int {
        try policy.check(key.scheme)
        let offset = try SignedImage.sectorOffset(of: image)
        let inspection = inspect(image: image, sectorOffset: offset)
        guard !inspection.checks.isEmpty else { throw SecureBootError.noSignatureSector(offset: offset) }
        let keyDigest = try key.keyDigest()
        var reasons: [String] = []
        for check in inspection.checks {
            let i = check.index
            let block = check.block
            guard block.crcValid else {
                reasons.append("block \(i): CRC32 mismatch, the block is damaged (scanning stops here)")
                break
            }
            guard block.scheme == key.scheme, block.keyDigest == keyDigest else {
                reasons.append("block \(i): signed with another key (\(block.scheme.displayName), key digest \(block.keyDigest.hexString.prefix(16))…)")
                continue
            }
            guard check.digestMatches else {
                reasons.append("block \(i): image digest does not match the content (image modified after signing)")
                continue
            }
            guard key.isValidSignature(block.signature, contentDigest: check.contentDigest) else {
                reasons.append("block \(i): signature does not verify")
                continue
            }
            guard i < policy.honouredBlocks else {
                reasons.append("block \(i) is signed with this key, but \(policy.displayName) honours only "
                               + (policy.honouredBlocks == 1 ? "block 0" : "blocks 0-\(policy.honouredBlocks - 1)"))
                continue
            }
            return i
        }
        for p in inspection.sector.problems where !reasons.contains(where: { p.hasPrefix(String($0.prefix(7))) }) {
            reasons.append(p)
        }
        throw SecureBootError.verificationFailed(reasons: reasons)
    }
}
