import ESPCore

/// Anything that can make Secure Boot V2 signatures: a private key in memory (``SigningKey``)
/// or a key that never leaves a token (KeyCustody's PKCS#11 keys).
public protocol ImageSigningKey: Sendable {
    /// The public half (its block fields and eFuse digest).
    var publicKey: VerifyingKey { get }
    /// Big-endian signature over `contentDigest` (SHA-256, or SHA-384 for P-384): RSA-PSS
    /// (MGF1-SHA-256, salt 32) 384 bytes, or ECDSA raw r‖s.
    func sign(contentDigest: ContentDigest) throws -> [UInt8]
}

extension SigningKey: ImageSigningKey {}

extension SecureBootSigner {
    /// Signs `image` with each signer in order (one block per signer). Every signature is checked
    /// with the signer's public key before the block is made, and the output again as a whole.
    public static func sign(image: [UInt8], signers: [any ImageSigningKey], append: Bool,
                            policy: SecureBootPolicy) throws -> SigningResult {
        guard !signers.isEmpty else { throw SecureBootError.noKeys }
        let keys = signers.map(\.publicKey)
        for k in keys { try policy.check(k.scheme) }
        var prepared = try prepare(image: image, append: append)
        try checkCapacity(existing: prepared.existing.count, adding: signers.count)
        try checkSchemes(prepared.existing, keys.map(\.scheme))
        let digests = contentDigests(prepared.content, keys.map(\.scheme.contentHash))
        var blocks: [SignatureBlock] = []
        for (i, signer) in signers.enumerated() {
            let key = keys[i]
            guard let digest = digests[key.scheme.contentHash] else { throw SecureBootError.signingFailed("no digest") }
            let raw = try key.normalizeExternalSignature(try signer.sign(contentDigest: digest), index: i)
            guard key.isValidSignature(raw, contentDigest: digest) else {
                throw SecureBootError.externalSignatureInvalid(index: i, digestHex: digest.bytes.hexString)
            }
            blocks.append(SignatureBlock.make(imageDigest: digest, key: try key.fields(), signature: raw))
        }
        return try finish(&prepared, blocks, keys, policy: policy)
    }
}
