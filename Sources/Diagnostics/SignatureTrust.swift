import ESPCore
import SecureBoot

/// One Secure Boot V2 signature block judged as a chip with key-purpose eFuses judges it: is it
/// among the blocks the chip looks at, does it verify, which digest slot holds its key, is that
/// slot revoked. Used by the safety rules (PF019-PF024) and `espforge secure-boot verify`.
public struct SignatureBlockTrust: Sendable, Codable, Equatable {
    public var index: Int
    public var scheme: String
    /// Hex SHA-256 of the block's public key (what a digest slot holds).
    public var keyDigest: String
    public var crcValid: Bool
    public var imageDigestMatches: Bool
    /// The signature verifies with the block's own key (nil: the key is unusable).
    public var signatureValid: Bool?
    /// Among the leading blocks the chip checks (ESP32: block 0; S3/C3: blocks 0-2).
    public var honoured: Bool
    /// The digest slot (0-2) whose digest is this block's key digest, when eFuses are known.
    public var slot: Int?
    /// That slot's SECURE_BOOT_KEY_REVOKEn is burned.
    public var slotRevoked: Bool?

    /// CRC, image digest and signature all check out.
    public var verifies: Bool { crcValid && imageDigestMatches && signatureValid == true }
    /// The chip accepts the image through this block: honoured, verifies, key in a live slot.
    public var trusted: Bool { honoured && verifies && slot != nil && slotRevoked == false }

    /// Every block of `inspection`, judged against `fuses` (nil: slots unknown).
    public static func evaluate(_ inspection: SecureBootVerifier.Inspection, honouredBlocks: Int,
                                fuses: KeyBlockFuseFacts?) -> [SignatureBlockTrust] {
        var scanning = true
        return inspection.checks.map { c in
            let honoured = scanning && c.index < honouredBlocks
            if !c.block.crcValid { scanning = false }
            let slot = fuses?.slot(matching: c.block.keyDigest)
            return SignatureBlockTrust(
                index: c.index, scheme: c.block.scheme.displayName, keyDigest: c.block.keyDigest.hexString,
                crcValid: c.block.crcValid, imageDigestMatches: c.digestMatches, signatureValid: c.signatureValid,
                honoured: honoured && c.block.crcValid, slot: slot?.slot, slotRevoked: slot.map(\.revoked))
        }
    }
}

extension AnalyzedEntry {
    /// The blocks of this signed image judged against the target (empty when unsigned).
    func trust(_ ctx: PreflightContext) -> [SignatureBlockTrust] {
        guard let inspection = signature else { return [] }
        return SignatureBlockTrust.evaluate(inspection, honouredBlocks: ctx.honouredBlocks, fuses: ctx.keyBlocks)
    }

    /// "the bootloader at 0x0" / "the app image at 0x10000".
    var label: String { "the \(kind.rawValue) at \(hex(entry.address))" }
}
