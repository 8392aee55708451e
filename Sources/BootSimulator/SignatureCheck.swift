import Crypto
import ESPCore
import SecureBoot

/// What the ROM's `ets_secure_boot_verify_signature` does with signature block 0 of a sector
/// (ESP32 uses block 0 only): nil when it verifies, else the reason the ROM prints after
/// `Sig block 0 invalid: `.
enum SignatureCheck {
    static func check(sector: [UInt8], imageDigest: SHA256Digest, trustedKeyDigest: [UInt8]) -> String? {
        guard sector.count >= SignatureBlock.size else { return "Invalid magic byte" }
        guard let block = try? SignatureBlock.parse(sector[0..<SignatureBlock.size]), block.version == SignatureBlock.versionRSA else {
            return "Invalid magic byte"
        }
        guard block.crcValid else { return "Invalid CRC" }
        guard block.imageDigest == Array(imageDigest) else { return "Image digest does not match" }
        guard block.keyDigest == trustedKeyDigest else { return "Key digest does not match eFuse" }
        guard let key = VerifyingKey(fields: block.key),
              key.isValidSignature(block.signature, contentDigest: .sha256(imageDigest)) else {
            return "RSA-PSS signature does not verify"
        }
        return nil
    }

    /// Key digest of block 0 if it is a well-formed RSA block with a correct CRC.
    static func blockKeyDigest(_ sector: [UInt8]) -> [UInt8]? {
        guard sector.count >= SignatureBlock.size,
              let block = try? SignatureBlock.parse(sector[0..<SignatureBlock.size]),
              block.version == SignatureBlock.versionRSA, block.crcValid else { return nil }
        return block.keyDigest
    }
}
