import ESPCore

/// One 1216-byte Secure Boot V2 signature block (version 2 = RSA-3072 PSS, version 3 = ECDSA).
///
/// Layout (offsets within the block): 0 magic 0xE7, 1 version, 2 hash id (ECDSA: 0 SHA-256,
/// 1 SHA-384), 4 image digest (32 or 48 bytes). RSA: 36 n_LE[384], 420 e u32, 424 rinv_LE[384],
/// 808 mdash u32, 812 signature_LE[384]. ECDSA P-192/P-256: 36 curve id, 37 X_LE‖Y_LE[64],
/// 101 r_LE‖s_LE[64]; P-384: 52 curve id, 53 point[96], 149 r‖s[96]. 1196 CRC32 of [0,1196),
/// 1200 16 zero bytes.
public struct SignatureBlock: Sendable, Equatable {
    public static let size = 1216
    public static let magic: UInt8 = 0xE7
    public static let crcOffset = 1196
    public static let versionRSA: UInt8 = 2
    public static let versionECDSA: UInt8 = 3

    /// The 1216 bytes as stored.
    public let bytes: [UInt8]
    public let version: UInt8
    /// SHA-256 (SHA-384 for P-384) of the signed content, as stored in the block.
    public let imageDigest: [UInt8]
    public let key: PublicKeyFields
    /// The signature in standard big-endian form (RSA: 384 bytes; ECDSA: r‖s).
    public let signature: [UInt8]
    public let storedCRC: UInt32
    public let computedCRC: UInt32

    public var scheme: SignatureScheme { key.scheme }
    public var crcValid: Bool { storedCRC == computedCRC }
    /// The 16 bytes after the CRC are zero (espsecure writes zeros; nothing checks them).
    public var paddingIsZero: Bool { bytes[1200..<1216].allSatisfy { $0 == 0 } }

    /// The eFuse key digest: SHA-256 of the key fields exactly as this block stores them.
    public var keyDigest: [UInt8] {
        switch key {
        case .rsa: return Array(sha256(bytes[36..<812]))
        case .ecdsa(let curve, _, _):
            return curve == .p384 ? Array(sha256(bytes[52..<149])) : Array(sha256(bytes[36..<101]))
        }
    }

    /// Parses a block. Throws for a wrong magic, version, curve or hash id (with `baseOffset` + the
    /// field offset); a wrong CRC is not an error here (see ``crcValid``). Never traps on any input.
    public static func parse<C: Collection>(_ input: C, baseOffset: Int = 0) throws -> SignatureBlock where C.Element == UInt8 {
        let b = Array(input)
        guard b.count == size else {
            throw ByteReaderError.truncated(offset: baseOffset + b.count, needed: size - b.count, what: "signature block")
        }
        guard b[0] == magic else { throw SecureBootError.blockMagic(found: b[0], offset: baseOffset) }
        let computed = CRC32.checksum(b[0..<crcOffset])
        let stored = b[crcOffset..<(crcOffset + 4)].loadLE(UInt32.self)
        switch b[1] {
        case versionRSA:
            let n = bigEndian(b[36..<420])
            let e = b[420..<424].loadLE(UInt32.self)
            let rinv = bigEndian(b[424..<808])
            let mdash = b[808..<812].loadLE(UInt32.self)
            return SignatureBlock(bytes: b, version: b[1], imageDigest: Array(b[4..<36]),
                                  key: .rsa(modulus: n, exponent: e, rinv: rinv, mdash: mdash),
                                  signature: bigEndian(b[812..<1196]), storedCRC: stored, computedCRC: computed)
        case versionECDSA:
            let hashID = b[2]
            let curveOffset = hashID == 1 ? 52 : 36
            guard hashID <= 1 else {
                throw SecureBootError.blockHashVersion(found: hashID, curve: "?", offset: baseOffset + 2)
            }
            guard let curve = ECCurve(rawValue: b[curveOffset]) else {
                throw SecureBootError.blockCurve(found: b[curveOffset], offset: baseOffset + curveOffset)
            }
            guard (curve == .p384) == (hashID == 1) else {
                throw SecureBootError.blockHashVersion(found: hashID, curve: curve.name, offset: baseOffset + 2)
            }
            let c = curve.coordinateSize
            let digestLength = hashID == 1 ? 48 : 32
            let point = curveOffset + 1
            let fieldWidth = curve == .p384 ? 96 : 64
            let sig = point + fieldWidth
            let x = bigEndian(b[point..<(point + c)])
            let y = bigEndian(b[(point + c)..<(point + 2 * c)])
            let r = bigEndian(b[sig..<(sig + c)])
            let s = bigEndian(b[(sig + c)..<(sig + 2 * c)])
            return SignatureBlock(bytes: b, version: b[1], imageDigest: Array(b[4..<(4 + digestLength)]),
                                  key: .ecdsa(curve: curve, x: x, y: y), signature: r + s,
                                  storedCRC: stored, computedCRC: computed)
        default:
            throw SecureBootError.blockVersion(found: b[1], offset: baseOffset + 1)
        }
    }

    /// Builds a block from its parts. `signature` is big-endian (RSA 384 bytes, ECDSA r‖s).
    public static func make(imageDigest: ContentDigest, key: PublicKeyFields, signature: [UInt8]) -> SignatureBlock {
        var b = [UInt8](repeating: 0, count: size)
        b[0] = magic
        let digest = imageDigest.bytes
        switch key {
        case .rsa:
            b[1] = versionRSA
            b.replaceSubrange(4..<(4 + 32), with: fixedWidth(digest, 32))
            b.replaceSubrange(36..<812, with: key.digestedBytes)
            b.replaceSubrange(812..<1196, with: littleEndianFixed(signature, 384))
        case .ecdsa(let curve, _, _):
            b[1] = versionECDSA
            let c = curve.coordinateSize
            let isP384 = curve == .p384
            b[2] = isP384 ? 1 : 0
            let digestLength = isP384 ? 48 : 32
            b.replaceSubrange(4..<(4 + digestLength), with: fixedWidth(digest, digestLength))
            let keyStart = isP384 ? 52 : 36
            let keyBytes = key.digestedBytes
            b.replaceSubrange(keyStart..<(keyStart + keyBytes.count), with: keyBytes)
            let sigStart = keyStart + keyBytes.count
            let r = littleEndianFixed(Array(signature.prefix(c)), c)
            let s = littleEndianFixed(Array(signature.dropFirst(c).prefix(c)), c)
            b.replaceSubrange(sigStart..<(sigStart + 2 * c), with: r + s)
        }
        let crc = CRC32.checksum(b[0..<crcOffset])
        b.storeLE(crc, at: crcOffset)
        return SignatureBlock(bytes: b, version: b[1], imageDigest: Array(digest.prefix(key.scheme == .ecdsa384 ? 48 : 32)),
                              key: key, signature: signature, storedCRC: crc, computedCRC: crc)
    }
}

import Crypto

/// `bytes` cut or zero-extended to exactly `width` bytes, so a block never changes size.
func fixedWidth(_ bytes: [UInt8], _ width: Int) -> [UInt8] {
    Array(bytes.prefix(width)) + [UInt8](repeating: 0, count: max(0, width - bytes.count))
}

func sha256<C: Collection>(_ bytes: C) -> SHA256Digest where C.Element == UInt8 {
    var h = SHA256()
    h.update(data: Array(bytes))
    return h.finalize()
}
