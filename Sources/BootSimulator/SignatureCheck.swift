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

/// Why the ROM rejected the bootloader, with the line the ECO3 ROM prints.
struct ROMSignatureFailure: Equatable {
    enum Kind: Equatable {
        /// Recorded: `No signature block magic byte found at signature sector (found 0xff not 0xe7). Image not V2 signed?`
        case noSignatureBlock(found: UInt8)
        /// Modelled (not recorded): a block whose CRC32 does not match.
        case badCRC
        /// Modelled (not recorded): a block that is not an RSA-3072 block (ESP32 supports RSA only).
        case notRSA
        /// Recorded: `Sig block 0 invalid: Image digest does not match`.
        case imageDigest
        /// Recorded: `Sig block 0 signed with untrusted key`.
        case untrustedKey
        /// Modelled (not recorded): the RSA-PSS signature does not verify with the block's key.
        case signature
    }

    var kind: Kind

    var romLine: String {
        switch kind {
        case .noSignatureBlock(let found):
            return "No signature block magic byte found at signature sector (found 0x\(String(found, radix: 16)) not 0xe7). Image not V2 signed?"
        case .badCRC: return "Sig block 0 invalid: Invalid CRC"
        case .notRSA: return "Sig block 0 invalid: Invalid version"
        case .imageDigest: return "Sig block 0 invalid: Image digest does not match"
        case .untrustedKey: return "Sig block 0 signed with untrusted key"
        case .signature: return "Sig block 0 invalid: RSA-PSS signature does not verify"
        }
    }

    var explanation: String {
        switch kind {
        case .noSignatureBlock(let found): return "no signature block (sector starts with 0x\(String(found, radix: 16))): the bootloader is not signed"
        case .badCRC: return "signature block 0 is damaged (CRC32 mismatch)"
        case .notRSA: return "signature block 0 is not an RSA-3072 block"
        case .imageDigest: return "the bootloader does not match the digest in signature block 0 (changed after signing)"
        case .untrustedKey: return "signature block 0 is signed with a key whose digest is not the one in BLK2"
        case .signature: return "the RSA-PSS signature of block 0 does not verify"
        }
    }
}

extension SignatureCheck {
    /// The ROM's check of the bootloader (`content` = the image up to its signature sector), on
    /// the shared verifier (``SecureBootVerifier/inspect(image:sectorOffset:)``, also used by
    /// preflight PF003 and the flasher's SB rules). Order: magic, CRC, image digest, trusted key,
    /// RSA-PSS; the order between the last three is not recorded (each recording has one fault).
    static func romVerify(content: [UInt8], sector: [UInt8], trustedKeyDigest: [UInt8]) -> ROMSignatureFailure? {
        guard let magic = sector.first, magic == SignatureBlock.magic else {
            return ROMSignatureFailure(kind: .noSignatureBlock(found: sector.first ?? 0xFF))
        }
        let inspection = SecureBootVerifier.inspect(image: content + sector, sectorOffset: content.count)
        guard let check = inspection.checks.first, check.index == 0 else { return ROMSignatureFailure(kind: .notRSA) }
        guard check.block.crcValid else { return ROMSignatureFailure(kind: .badCRC) }
        guard check.block.version == SignatureBlock.versionRSA else { return ROMSignatureFailure(kind: .notRSA) }
        guard check.digestMatches else { return ROMSignatureFailure(kind: .imageDigest) }
        guard check.block.keyDigest == trustedKeyDigest else { return ROMSignatureFailure(kind: .untrustedKey) }
        guard check.signatureValid == true else { return ROMSignatureFailure(kind: .signature) }
        return nil
    }
}
