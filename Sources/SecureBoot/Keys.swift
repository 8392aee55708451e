import Crypto
import _CryptoExtras
import Foundation
import ESPCore
import SwiftASN1

/// The signature schemes of Secure Boot V2 signature blocks.
public enum SignatureScheme: String, Sendable, Codable, CaseIterable {
    case rsa3072
    case ecdsa192
    case ecdsa256
    case ecdsa384

    public var displayName: String {
        switch self {
        case .rsa3072: return "RSA-3072 (PSS)"
        case .ecdsa192: return "ECDSA P-192"
        case .ecdsa256: return "ECDSA P-256"
        case .ecdsa384: return "ECDSA P-384"
        }
    }

    /// The hash of the signed content: SHA-384 for P-384, SHA-256 otherwise.
    public var contentHash: ContentHash { self == .ecdsa384 ? .sha384 : .sha256 }

    public var isECDSA: Bool { self != .rsa3072 }
}

public enum ContentHash: String, Sendable, Codable {
    case sha256, sha384

    public func digest<D: DataProtocol>(_ data: D) -> ContentDigest {
        switch self {
        case .sha256: return .sha256(SHA256.hash(data: data))
        case .sha384: return .sha384(SHA384.hash(data: data))
        }
    }
}

/// The digest of the signed content, typed so it can be handed to the signature primitives.
public enum ContentDigest: Sendable, Equatable {
    case sha256(SHA256Digest)
    case sha384(SHA384Digest)

    public var bytes: [UInt8] {
        switch self {
        case .sha256(let d): return Array(d)
        case .sha384(let d): return Array(d)
        }
    }
}

/// The NIST curves a version-3 block may name, by their block curve id.
public enum ECCurve: UInt8, Sendable, Codable {
    case p192 = 1, p256 = 2, p384 = 3

    public var coordinateSize: Int {
        switch self { case .p192: return 24; case .p256: return 32; case .p384: return 48 }
    }
    public var name: String {
        switch self { case .p192: return "P-192"; case .p256: return "P-256"; case .p384: return "P-384" }
    }
    public var scheme: SignatureScheme {
        switch self { case .p192: return .ecdsa192; case .p256: return .ecdsa256; case .p384: return .ecdsa384 }
    }
}

/// The public-key fields of a signature block, in natural (big-endian) byte order.
public enum PublicKeyFields: Sendable, Equatable {
    /// Modulus and rinv are 384 bytes big-endian.
    case rsa(modulus: [UInt8], exponent: UInt32, rinv: [UInt8], mdash: UInt32)
    /// Coordinates are `curve.coordinateSize` bytes big-endian each.
    case ecdsa(curve: ECCurve, x: [UInt8], y: [UInt8])

    public var scheme: SignatureScheme {
        switch self {
        case .rsa: return .rsa3072
        case .ecdsa(let curve, _, _): return curve.scheme
        }
    }

    /// The bytes of the block that the eFuse key digest covers, exactly as the block stores them:
    /// RSA: n_LE ‖ e_LE32 ‖ rinv_LE ‖ mdash_LE32 (776 bytes); ECDSA: curve id ‖ X_LE ‖ Y_LE, the point
    /// zero-filled to 64 bytes (P-192/P-256) or 96 bytes (P-384).
    public var digestedBytes: [UInt8] {
        switch self {
        case let .rsa(modulus, exponent, rinv, mdash):
            var out = littleEndianFixed(modulus, 384)
            out.appendLE(exponent)
            out += littleEndianFixed(rinv, 384)
            out.appendLE(mdash)
            return out
        case let .ecdsa(curve, x, y):
            let width = curve == .p384 ? 96 : 64
            var point = littleEndianFixed(x, curve.coordinateSize) + littleEndianFixed(y, curve.coordinateSize)
            point += [UInt8](repeating: 0, count: width - point.count)
            return [curve.rawValue] + point
        }
    }

    /// SHA-256 of ``digestedBytes``: the 32-byte digest burned into eFuse (espsecure
    /// `digest-sbv2-public-key`).
    public var keyDigest: [UInt8] { Array(SHA256.hash(data: digestedBytes)) }
}

/// `value` (big-endian) as `width` little-endian bytes: reversed, zero-extended (or cut) on the
/// high-order side.
func littleEndianFixed(_ value: [UInt8], _ width: Int) -> [UInt8] {
    var out = Array(value.reversed().prefix(width))
    if out.count < width { out += [UInt8](repeating: 0, count: width - out.count) }
    return out
}

/// Big-endian value of `width` bytes from little-endian storage.
func bigEndian(_ littleEndian: ArraySlice<UInt8>) -> [UInt8] { Array(littleEndian.reversed()) }

/// A public key that can check Secure Boot V2 signatures.
public enum VerifyingKey: Sendable {
    case rsa(_RSA.Signing.PublicKey)
    case p192(P192.PublicKey)
    case p256(P256.Signing.PublicKey)
    case p384(P384.Signing.PublicKey)

    public var scheme: SignatureScheme {
        switch self {
        case .rsa: return .rsa3072
        case .p192: return .ecdsa192
        case .p256: return .ecdsa256
        case .p384: return .ecdsa384
        }
    }

    /// The curve of an ECDSA key (nil for RSA).
    public var curve: ECCurve? {
        switch self {
        case .rsa: return nil
        case .p192: return .p192
        case .p256: return .p256
        case .p384: return .p384
        }
    }

    /// The block fields for this key (RSA: with the Montgomery constants computed).
    public func fields() throws -> PublicKeyFields {
        switch self {
        case .rsa(let key):
            let primitives: _RSA.Signing.PublicKey.Primitives
            do { primitives = try key.getKeyPrimitives() } catch {
                throw SecureBootError.malformedKey("cannot read RSA modulus and exponent")
            }
            let n = Array(primitives.modulus.drop { $0 == 0 })
            guard n.count <= 384 else { throw SecureBootError.rsaKeySize(bits: n.count * 8) }
            let modulus = [UInt8](repeating: 0, count: 384 - n.count) + n
            let eBytes = Array(primitives.publicExponent.drop { $0 == 0 })
            guard eBytes.count <= 4 else { throw SecureBootError.unsupportedKeyType("RSA public exponent wider than 32 bits") }
            var e: UInt32 = 0
            for b in eBytes { e = e << 8 | UInt32(b) }
            guard let rinv = Montgomery.rinv(modulusBE: modulus), let mdash = Montgomery.mdash(modulusBE: modulus) else {
                throw SecureBootError.malformedKey("RSA modulus is even")
            }
            return .rsa(modulus: modulus, exponent: e, rinv: rinv, mdash: mdash)
        case .p192(let key):
            return .ecdsa(curve: .p192, x: key.x, y: key.y)
        case .p256(let key):
            let raw = Array(key.rawRepresentation)
            return .ecdsa(curve: .p256, x: Array(raw.prefix(32)), y: Array(raw.suffix(32)))
        case .p384(let key):
            let raw = Array(key.rawRepresentation)
            return .ecdsa(curve: .p384, x: Array(raw.prefix(48)), y: Array(raw.suffix(48)))
        }
    }

    /// The 32-byte eFuse key digest.
    public func keyDigest() throws -> [UInt8] { try fields().keyDigest }

    /// Checks a standard (big-endian; DER is not accepted here) signature over `contentDigest`,
    /// which must be SHA-256 (RSA, P-192, P-256) or SHA-384 (P-384) of the signed content.
    public func isValidSignature(_ signature: [UInt8], contentDigest: ContentDigest) -> Bool {
        switch (self, contentDigest) {
        case let (.rsa(key), .sha256(digest)):
            guard signature.count == key.keySizeInBits / 8 else { return false }
            return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: digest, padding: .PSS)
        case let (.p192(key), .sha256(digest)):
            return key.isValidSignature(signature, digest: Array(digest))
        case let (.p256(key), .sha256(digest)):
            guard let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: digest)
        case let (.p384(key), .sha384(digest)):
            guard let sig = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: digest)
        default:
            return false
        }
    }

    /// A signature from an external signer, normalised to the big-endian form the block model
    /// uses: RSA raw 384 bytes (as `openssl pkeyutl` writes); ECDSA DER (as espsecure expects) or
    /// raw r‖s.
    public func normalizeExternalSignature(_ bytes: [UInt8], index: Int) throws -> [UInt8] {
        switch self {
        case .rsa(let key):
            let size = key.keySizeInBits / 8
            guard bytes.count == size else {
                throw SecureBootError.signatureFormat(index: index,
                    "RSA signature is \(bytes.count) bytes; expected the raw \(size)-byte RSA-PSS signature")
            }
            return bytes
        case .p192, .p256, .p384:
            let c = curve?.coordinateSize ?? 0
            if let (r, s) = try? KeyStructure.ecdsaSignature(bytes), r.count <= c, s.count <= c {
                return [UInt8](repeating: 0, count: c - r.count) + r + [UInt8](repeating: 0, count: c - s.count) + s
            }
            if bytes.count == 2 * c { return bytes }
            let name = curve?.name ?? "?"
            throw SecureBootError.signatureFormat(index: index, "not a DER ECDSA \(name) signature (nor raw \(2 * c)-byte r‖s)")
        }
    }

    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), as espsecure writes public keys.
    public var pemRepresentation: String {
        switch self {
        case .rsa(let key): return key.pemRepresentation
        case .p192(let key):
            // Serializing a fixed, valid structure; swift-asn1 fails only on programming errors.
            return (try? key.derRepresentation()).map { PEMBlock.encode(label: "PUBLIC KEY", der: $0) } ?? ""
        case .p256(let key): return key.pemRepresentation
        case .p384(let key): return key.pemRepresentation
        }
    }

    /// Rebuilds a key from block fields, to check a block with its own key. Nil if the fields do
    /// not form a usable key (a point off the curve, garbage).
    public init?(fields: PublicKeyFields) {
        switch fields {
        case let .rsa(modulus, exponent, _, _):
            var e: [UInt8] = []
            withUnsafeBytes(of: exponent.bigEndian) { e = Array($0) }
            guard let key = try? _RSA.Signing.PublicKey(n: modulus, e: Array(e.drop { $0 == 0 })) else { return nil }
            self = .rsa(key)
        case let .ecdsa(curve, x, y):
            switch curve {
            case .p192:
                guard let key = try? P192.PublicKey(x: x, y: y) else { return nil }
                self = .p192(key)
            case .p256:
                guard let key = try? P256.Signing.PublicKey(rawRepresentation: x + y) else { return nil }
                self = .p256(key)
            case .p384:
                guard let key = try? P384.Signing.PublicKey(rawRepresentation: x + y) else { return nil }
                self = .p384(key)
            }
        }
    }
}

/// A private key that signs Secure Boot V2 images.
public enum SigningKey: Sendable {
    case rsa(_RSA.Signing.PrivateKey)
    case p192(P192.PrivateKey)
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)

    public var scheme: SignatureScheme { publicKey.scheme }

    public var publicKey: VerifyingKey {
        switch self {
        case .rsa(let key): return .rsa(key.publicKey)
        case .p192(let key): return .p192(key.publicKey)
        case .p256(let key): return .p256(key.publicKey)
        case .p384(let key): return .p384(key.publicKey)
        }
    }

    /// A fresh key. RSA uses e = 65537.
    public static func generate(_ scheme: SignatureScheme) throws -> SigningKey {
        switch scheme {
        case .rsa3072:
            do { return .rsa(try _RSA.Signing.PrivateKey(keySize: .bits3072)) } catch {
                throw SecureBootError.signingFailed("RSA key generation failed")
            }
        case .ecdsa192: return .p192(P192.PrivateKey())
        case .ecdsa256: return .p256(P256.Signing.PrivateKey())
        case .ecdsa384: return .p384(P384.Signing.PrivateKey())
        }
    }

    /// Big-endian signature over `contentDigest` (SHA-256, or SHA-384 for P-384): RSA-PSS
    /// (MGF1-SHA-256, salt 32) or ECDSA raw r‖s (P-192: deterministic nonce, RFC 6979).
    public func sign(contentDigest: ContentDigest) throws -> [UInt8] {
        do {
            switch (self, contentDigest) {
            case let (.rsa(key), .sha256(digest)):
                return Array(try key.signature(for: digest, padding: .PSS).rawRepresentation)
            case let (.p192(key), .sha256(digest)):
                return key.signature(digest: Array(digest))
            case let (.p256(key), .sha256(digest)):
                return Array(try key.signature(for: digest).rawRepresentation)
            case let (.p384(key), .sha384(digest)):
                return Array(try key.signature(for: digest).rawRepresentation)
            default:
                throw SecureBootError.signingFailed("digest type does not fit the key")
            }
        } catch let e as SecureBootError {
            throw e
        } catch {
            throw SecureBootError.signingFailed(String(describing: error))
        }
    }

    /// PEM in the "traditional" forms espsecure writes: `RSA PRIVATE KEY` (PKCS#1) or
    /// `EC PRIVATE KEY` (SEC1 with the curve and the public point).
    public var pemRepresentation: String {
        switch self {
        case .rsa(let key):
            return key.pemRepresentation
        case .p192(let key):
            // A fixed, valid structure: swift-asn1 fails here only on programming errors.
            return (try? key.sec1DER()).map { PEMBlock.encode(label: "EC PRIVATE KEY", der: $0) } ?? ""
        case .p256(let key):
            return Self.sec1PEM(scalar: Array(key.rawRepresentation), curve: KeyOID.p256,
                                point: Array(key.publicKey.x963Representation)) ?? key.pemRepresentation
        case .p384(let key):
            return Self.sec1PEM(scalar: Array(key.rawRepresentation), curve: KeyOID.p384,
                                point: Array(key.publicKey.x963Representation)) ?? key.pemRepresentation
        }
    }

    /// The SEC1 `EC PRIVATE KEY` PEM; nil only if swift-asn1 could not serialize it (then the
    /// caller writes swift-crypto's PKCS#8 `PRIVATE KEY`, which espsecure reads as well).
    static func sec1PEM(scalar: [UInt8], curve: ASN1ObjectIdentifier, point: [UInt8]) -> String? {
        guard let der = try? KeyStructure.sec1DER(scalar: scalar, curve: curve, point: point) else { return nil }
        return PEMBlock.encode(label: "EC PRIVATE KEY", der: der)
    }
}

/// What a key file holds.
public enum KeyMaterial: Sendable {
    case privateKey(SigningKey)
    case publicKey(VerifyingKey)

    public var verifyingKey: VerifyingKey {
        switch self {
        case .privateKey(let k): return k.publicKey
        case .publicKey(let k): return k
        }
    }

    public var scheme: SignatureScheme { verifyingKey.scheme }

    /// Reads a PEM key file as espsecure accepts them: `RSA PRIVATE KEY`, `EC PRIVATE KEY`,
    /// `PRIVATE KEY` (PKCS#8), `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY`. RSA keys must be 3072 bits;
    /// curves P-192, P-256 and P-384 are supported.
    public static func load(pem text: String) throws -> KeyMaterial {
        guard let blocks = PEMBlock.parseAll(text) else {
            throw SecureBootError.malformedKey("PEM base64 body or END line is damaged")
        }
        let keyBlocks = blocks.filter { $0.label != "EC PARAMETERS" }
        guard let block = keyBlocks.first else {
            if blocks.isEmpty { throw SecureBootError.notPEM }
            throw SecureBootError.unsupportedPEMLabel(blocks[0].label)
        }
        if block.encrypted || block.label == "ENCRYPTED PRIVATE KEY" { throw SecureBootError.encryptedKey }
        let clean = PEMBlock.encode(label: block.label, der: block.der)

        switch block.label {
        case "RSA PRIVATE KEY":
            return .privateKey(.rsa(try rsaPrivate(clean)))
        case "RSA PUBLIC KEY":
            return .publicKey(.rsa(try rsaPublic(clean)))
        case "EC PRIVATE KEY":
            let curve = try sec1Curve(block.der)
            if curve == .p192 { return .privateKey(.p192(try p192Private(sec1: block.der))) }
            return .privateKey(try ecPrivate(clean, curve: curve))
        case "PRIVATE KEY":
            let (alg, curve) = try algorithm(ofPKCS8: block.der)
            if alg == .rsa { return .privateKey(.rsa(try rsaPrivate(clean))) }
            if curve == .p192 {
                guard let inner = try? KeyStructure.pkcs8(block.der).privateKey else {
                    throw SecureBootError.malformedKey("PRIVATE KEY is not a PKCS#8 structure")
                }
                return .privateKey(.p192(try p192Private(sec1: inner)))
            }
            return .privateKey(try ecPrivate(clean, curve: curve))
        case "PUBLIC KEY":
            let (alg, curve) = try algorithm(ofSPKI: block.der)
            if alg == .rsa { return .publicKey(.rsa(try rsaPublic(clean))) }
            switch curve {
            case .p256:
                do { return .publicKey(.p256(try P256.Signing.PublicKey(pemRepresentation: clean))) } catch {
                    throw SecureBootError.malformedKey("cannot read the P-256 public key")
                }
            case .p384:
                do { return .publicKey(.p384(try P384.Signing.PublicKey(pemRepresentation: clean))) } catch {
                    throw SecureBootError.malformedKey("cannot read the P-384 public key")
                }
            case .p192:
                guard let point = try? KeyStructure.spki(block.der).key else {
                    throw SecureBootError.malformedKey("PUBLIC KEY is not a SubjectPublicKeyInfo structure")
                }
                return .publicKey(.p192(try P192.PublicKey(x963Representation: point)))
            case nil:
                throw SecureBootError.malformedKey("EC key without a named curve")
            }
        default:
            throw SecureBootError.unsupportedPEMLabel(block.label)
        }
    }

    private enum Algorithm { case rsa, ec }

    private static func rsaPrivate(_ pem: String) throws -> _RSA.Signing.PrivateKey {
        let key: _RSA.Signing.PrivateKey
        do { key = try _RSA.Signing.PrivateKey(unsafePEMRepresentation: pem) } catch {
            throw SecureBootError.malformedKey("cannot read the RSA private key (or it is smaller than 1024 bits)")
        }
        guard key.keySizeInBits == 3072 else { throw SecureBootError.rsaKeySize(bits: key.keySizeInBits) }
        return key
    }

    private static func rsaPublic(_ pem: String) throws -> _RSA.Signing.PublicKey {
        let key: _RSA.Signing.PublicKey
        do { key = try _RSA.Signing.PublicKey(unsafePEMRepresentation: pem) } catch {
            throw SecureBootError.malformedKey("cannot read the RSA public key (or it is smaller than 1024 bits)")
        }
        guard key.keySizeInBits == 3072 else { throw SecureBootError.rsaKeySize(bits: key.keySizeInBits) }
        return key
    }

    private static func ecPrivate(_ pem: String, curve: ECCurve?) throws -> SigningKey {
        switch curve {
        case .p256:
            do { return .p256(try P256.Signing.PrivateKey(pemRepresentation: pem)) } catch {
                throw SecureBootError.malformedKey("cannot read the P-256 private key")
            }
        case .p384:
            do { return .p384(try P384.Signing.PrivateKey(pemRepresentation: pem)) } catch {
                throw SecureBootError.malformedKey("cannot read the P-384 private key")
            }
        case .p192:
            throw SecureBootError.malformedKey("P-192 keys are read by p192Private(sec1:)")
        case nil:
            throw SecureBootError.malformedKey("EC key without a named curve")
        }
    }

    /// A P-192 private key from SEC 1 ECPrivateKey DER; a public point stored with it must match.
    private static func p192Private(sec1 der: [UInt8]) throws -> P192.PrivateKey {
        let sec1: (scalar: [UInt8], curve: ASN1ObjectIdentifier?, point: [UInt8]?)
        do { sec1 = try KeyStructure.sec1(der) } catch {
            throw SecureBootError.malformedKey("EC private key is not a SEC1 structure (\(asn1Reason(error)))")
        }
        if let oid = sec1.curve, oid != KeyOID.p192 {
            throw SecureBootError.malformedKey("PKCS#8 names P-192 but the inner key names \(KeyOID.name(oid))")
        }
        let key = try P192.PrivateKey(scalar: sec1.scalar)
        if let point = sec1.point, (try? P192.PublicKey(x963Representation: point)) != key.publicKey {
            throw SecureBootError.malformedKey("the public point stored with the P-192 private key does not belong to it")
        }
        return key
    }

    private static func curve(forOID oid: ASN1ObjectIdentifier) throws -> ECCurve {
        switch oid {
        case KeyOID.p256: return .p256
        case KeyOID.p384: return .p384
        case KeyOID.p192: return .p192
        default: throw SecureBootError.unsupportedKeyType("elliptic curve \(KeyOID.name(oid))")
        }
    }

    /// SEC1 ECPrivateKey: the named curve, else the curve inferred from the scalar size.
    private static func sec1Curve(_ der: [UInt8]) throws -> ECCurve {
        let sec1: (scalar: [UInt8], curve: ASN1ObjectIdentifier?, point: [UInt8]?)
        do { sec1 = try KeyStructure.sec1(der) } catch {
            throw SecureBootError.malformedKey("EC PRIVATE KEY is not a SEC1 structure (\(asn1Reason(error)))")
        }
        if let oid = sec1.curve { return try curve(forOID: oid) }
        switch sec1.scalar.count { // no named curve: infer from the scalar size
        case 24: return .p192
        case 32: return .p256
        case 48: return .p384
        default: throw SecureBootError.malformedKey("EC key without a named curve")
        }
    }

    /// The algorithm (and curve) an AlgorithmIdentifier names.
    private static func algorithm(_ id: (algorithm: ASN1ObjectIdentifier, parameter: ASN1ObjectIdentifier?)) throws -> (Algorithm, ECCurve?) {
        switch id.algorithm {
        case KeyOID.rsaEncryption, KeyOID.rsaPSS:
            return (.rsa, nil)
        case KeyOID.ecPublicKey:
            guard let curveOID = id.parameter else { throw SecureBootError.malformedKey("EC key without a named curve") }
            return (.ec, try curve(forOID: curveOID))
        default:
            throw SecureBootError.unsupportedKeyType("\(KeyOID.name(id.algorithm)) key")
        }
    }

    /// PKCS#8 PrivateKeyInfo.
    private static func algorithm(ofPKCS8 der: [UInt8]) throws -> (Algorithm, ECCurve?) {
        do { return try algorithm(try KeyStructure.pkcs8Algorithm(der)) } catch let error as SecureBootError { throw error } catch {
            throw SecureBootError.malformedKey("PRIVATE KEY is not a PKCS#8 structure (\(asn1Reason(error)))")
        }
    }

    /// SubjectPublicKeyInfo.
    private static func algorithm(ofSPKI der: [UInt8]) throws -> (Algorithm, ECCurve?) {
        do { return try algorithm(try KeyStructure.spkiAlgorithm(der)) } catch let error as SecureBootError { throw error } catch {
            throw SecureBootError.malformedKey("PUBLIC KEY is not a SubjectPublicKeyInfo structure (\(asn1Reason(error)))")
        }
    }

    /// swift-asn1's reason in a few words (its errors print as `ASN1Error.<code>: <reason> <file>:<line>`).
    private static func asn1Reason(_ error: any Error) -> String {
        guard let e = error as? ASN1Error else { return "\(error)" }
        switch e.code {
        case .truncatedASN1Field: return "truncated DER"
        case .unexpectedFieldType: return "unexpected DER field"
        case .invalidASN1Object: return "invalid DER object"
        case .invalidASN1IntegerEncoding: return "invalid DER integer"
        case .unsupportedFieldLength: return "unsupported DER length"
        case .tooFewOIDComponents: return "invalid object identifier"
        default: return "not valid DER"
        }
    }
}
