import Crypto
import _CryptoExtras
import ESPCore
import Foundation
import SecureBoot

/// What a sealed blob is bound to: the device's MAC, its identity and which key it is. The same
/// bytes are HPKE's `info` and part of the AEAD's associated data, so a blob opens only for the
/// device (and key slot) it was sealed for.
public struct EscrowContext: Sendable, Equatable {
    public var mac: String
    public var identity: String
    /// e.g. `flash_encryption_key`, `nvs_keys`.
    public var kind: String

    public init(mac: String, identity: String?, kind: String) {
        self.mac = mac.lowercased(); self.identity = identity ?? ""; self.kind = kind
    }

    public var bytes: [UInt8] {
        Array("espforge-escrow-v1".utf8) + [0] + Array(kind.utf8) + [0] + Array(mac.utf8) + [0] + Array(identity.utf8)
    }
}

/// Sealed-blob layout (all of it is stored; none of it is secret):
///
///     0  "EFES"  magic
///     4  1       version
///     5  scheme  1 = HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (RFC 9180)
///                2 = RSA-OAEP-SHA256 wrapping a fresh AES-256 key, AES-256-GCM
///     6  32      recipient fingerprint (SHA-256 of the escrow public key's DER)
///    38  u16 BE  length L of the encapsulated key (HPKE: 32; RSA: the modulus size)
///    40  L       encapsulated key
///  40+L  …       HPKE: ciphertext ‖ 16-byte tag; RSA: 12-byte nonce ‖ ciphertext ‖ 16-byte tag
///
/// AEAD associated data: bytes 0..<38 ‖ ``EscrowContext/bytes``.
public enum EscrowScheme: UInt8, Sendable, CaseIterable {
    case hpkeX25519 = 1
    case rsaOAEP = 2

    public var name: String {
        switch self {
        case .hpkeX25519: return "hpke-x25519-hkdf-sha256-aes256gcm"
        case .rsaOAEP: return "rsa-oaep-sha256-aes256gcm"
        }
    }
}

enum Envelope {
    static let magic: [UInt8] = Array("EFES".utf8)
    static let version: UInt8 = 1
    static let headerSize = 38
    static let suite = HPKE.Ciphersuite(kem: .Curve25519_HKDF_SHA256, kdf: .HKDF_SHA256, aead: .AES_GCM_256)

    static func header(_ scheme: EscrowScheme, _ fingerprint: [UInt8]) -> [UInt8] {
        magic + [version, scheme.rawValue] + fingerprint
    }

    struct Parsed {
        var scheme: EscrowScheme
        var fingerprint: [UInt8]
        var header: [UInt8]
        var encapsulated: [UInt8]
        var body: [UInt8]
    }

    static func parse(_ blob: [UInt8]) throws(KeyCustodyError) -> Parsed {
        guard blob.count >= headerSize + 2, Array(blob[0..<4]) == magic else { throw .unsealFailed(why: "not an espforge sealed blob") }
        guard blob[4] == version else { throw .unsealFailed(why: "sealed-blob version \(blob[4]) is not supported") }
        guard let scheme = EscrowScheme(rawValue: blob[5]) else { throw .unsealFailed(why: "unknown sealing scheme \(blob[5])") }
        let length = Int(blob[38]) << 8 | Int(blob[39])
        guard blob.count >= 40 + length + 16 else { throw .unsealFailed(why: "the sealed blob is truncated") }
        return Parsed(scheme: scheme, fingerprint: Array(blob[6..<38]), header: Array(blob[0..<headerSize]),
                      encapsulated: Array(blob[40..<(40 + length)]), body: Array(blob[(40 + length)...]))
    }
}

/// DER and PEM framing of X25519 keys (RFC 8410), as `openssl genpkey -algorithm X25519` writes them.
enum X25519DER {
    static let spkiPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x6E, 0x03, 0x21, 0x00]
    static let pkcs8Prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x6E, 0x04, 0x22, 0x04, 0x20]
}


/// The escrow public key configured on the line (`[escrow] public_key`, `--escrow-key`):
/// X25519 (HPKE) or RSA ≥ 2048 bits (RSA-OAEP-SHA256). Only this half is ever on the line PC.
public struct EscrowRecipient: Sendable {
    enum Key: @unchecked Sendable { // immutable key values
        case x25519(Curve25519.KeyAgreement.PublicKey)
        case rsa(_RSA.Encryption.PublicKey)
    }
    let key: Key
    /// SHA-256 of the public key's DER: names the escrow key in blobs and the registry.
    public let fingerprint: [UInt8]

    public var scheme: EscrowScheme {
        switch key { case .x25519: return .hpkeX25519; case .rsa: return .rsaOAEP }
    }

    public static func load(pem text: String) throws(KeyCustodyError) -> EscrowRecipient {
        guard let block = PEMBlock.parseAll(text)?.first else { throw .escrowKey(why: "not a PEM file") }
        let (label, der) = (block.label, block.der)
        if label.contains("PRIVATE") {
            throw .escrowKey(why: "this is a PRIVATE key; the line gets only the escrow PUBLIC key (the private half stays offline)")
        }
        if der.count == 44, Array(der.prefix(12)) == X25519DER.spkiPrefix {
            do {
                let k = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: der.suffix(32))
                return EscrowRecipient(key: .x25519(k), fingerprint: Array(SHA256.hash(data: der)))
            } catch { throw .escrowKey(why: "malformed X25519 public key") }
        }
        let rsa: _RSA.Encryption.PublicKey
        do { rsa = try _RSA.Encryption.PublicKey(pemRepresentation: text) } catch {
            throw .escrowKey(why: "neither an X25519 nor an RSA (≥ 2048-bit) public key")
        }
        return EscrowRecipient(key: .rsa(rsa), fingerprint: Array(SHA256.hash(data: rsa.derRepresentation)))
    }

    /// Seals `secret` for `context`; returns the blob (layout: ``EscrowScheme``).
    public func seal(_ secret: [UInt8], context: EscrowContext) throws(KeyCustodyError) -> [UInt8] {
        let header = Envelope.header(scheme, fingerprint)
        let aad = header + context.bytes
        do {
            switch key {
            case .x25519(let pub):
                var sender = try HPKE.Sender(recipientKey: pub, ciphersuite: Envelope.suite, info: Data(context.bytes))
                let ct = try sender.seal(secret, authenticating: aad)
                let enc = [UInt8](sender.encapsulatedKey)
                return header + [UInt8(enc.count >> 8), UInt8(enc.count & 0xFF)] + enc + ct
            case .rsa(let pub):
                let dataKey = SymmetricKey(size: .bits256)
                let wrapped = [UInt8](try dataKey.withUnsafeBytes { try pub.encrypt(Data($0), padding: .PKCS1_OAEP_SHA256) })
                let box = try AES.GCM.seal(secret, using: dataKey, authenticating: aad)
                return header + [UInt8(wrapped.count >> 8), UInt8(wrapped.count & 0xFF)] + wrapped
                    + Array(box.nonce) + [UInt8](box.ciphertext) + [UInt8](box.tag)
            }
        } catch {
            throw .sealFailed(why: "\(error)")
        }
    }
}

/// The escrow private key (offline; used by `espforge registry unseal`).
public struct EscrowPrivateKey: Sendable {
    enum Key: @unchecked Sendable { // immutable key values
        case x25519(Curve25519.KeyAgreement.PrivateKey)
        case rsa(_RSA.Encryption.PrivateKey)
    }
    let key: Key
    public let fingerprint: [UInt8]

    public static func load(pem text: String) throws(KeyCustodyError) -> EscrowPrivateKey {
        guard let block = PEMBlock.parseAll(text)?.first else { throw .escrowKey(why: "not a PEM file") }
        let (label, der) = (block.label, block.der)
        guard label.contains("PRIVATE") else { throw .escrowKey(why: "unsealing needs the escrow PRIVATE key, this is \(label)") }
        if der.count == 48, Array(der.prefix(16)) == X25519DER.pkcs8Prefix {
            do {
                let k = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: der.suffix(32))
                let spki = X25519DER.spkiPrefix + Array(k.publicKey.rawRepresentation)
                return EscrowPrivateKey(key: .x25519(k), fingerprint: Array(SHA256.hash(data: spki)))
            } catch { throw .escrowKey(why: "malformed X25519 private key") }
        }
        let rsa: _RSA.Encryption.PrivateKey
        do { rsa = try _RSA.Encryption.PrivateKey(pemRepresentation: text) } catch {
            throw .escrowKey(why: "neither an X25519 nor an RSA (≥ 2048-bit) private key")
        }
        return EscrowPrivateKey(key: .rsa(rsa), fingerprint: Array(SHA256.hash(data: rsa.publicKey.derRepresentation)))
    }

    /// A fresh X25519 escrow key pair as PEM (private PKCS#8, public SPKI), as openssl writes them.
    public static func generateX25519() -> (privatePEM: String, publicPEM: String) {
        let k = Curve25519.KeyAgreement.PrivateKey()
        return (PEMBlock.encode(label: "PRIVATE KEY", der: X25519DER.pkcs8Prefix + Array(k.rawRepresentation)),
                PEMBlock.encode(label: "PUBLIC KEY", der: X25519DER.spkiPrefix + Array(k.publicKey.rawRepresentation)))
    }

    /// Opens a blob sealed for `context`. Fails if the blob was sealed to another escrow key, for
    /// another device/identity/kind, or was altered.
    public func unseal(_ blob: [UInt8], context: EscrowContext) throws(KeyCustodyError) -> [UInt8] {
        let p = try Envelope.parse(blob)
        guard p.fingerprint == fingerprint else {
            throw .wrongEscrowKey(recipient: p.fingerprint.hexString, mine: fingerprint.hexString)
        }
        let aad = p.header + context.bytes
        let bound = "it was sealed for another device, identity or key, or was altered"
        switch (key, p.scheme) {
        case (.x25519(let priv), .hpkeX25519):
            do {
                var r = try HPKE.Recipient(privateKey: priv, ciphersuite: Envelope.suite, info: Data(context.bytes),
                                           encapsulatedKey: Data(p.encapsulated))
                return [UInt8](try r.open(p.body, authenticating: aad))
            } catch { throw .unsealFailed(why: bound) }
        case (.rsa(let priv), .rsaOAEP):
            guard p.body.count >= 12 + 16 else { throw .unsealFailed(why: "the sealed blob is truncated") }
            let dataKey: SymmetricKey
            do { dataKey = SymmetricKey(data: try priv.decrypt(p.encapsulated, padding: .PKCS1_OAEP_SHA256)) } catch {
                throw .unsealFailed(why: "the wrapped data key does not decrypt with this RSA key")
            }
            do {
                let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: p.body.prefix(12)),
                                                ciphertext: p.body.dropFirst(12).dropLast(16), tag: p.body.suffix(16))
                return [UInt8](try AES.GCM.open(box, using: dataKey, authenticating: aad))
            } catch { throw .unsealFailed(why: bound) }
        default:
            throw .unsealFailed(why: "the blob's scheme \(p.scheme.name) does not fit this private key")
        }
    }
}

/// Seals per-device secrets for escrow (the provisioning pipeline's view of an escrow key).
public protocol KeySealer: Sendable {
    /// The scheme name recorded with each blob.
    var schemeName: String { get }
    /// Hex SHA-256 fingerprint of the escrow public key.
    var recipientFingerprint: String { get }
    func seal(_ secret: [UInt8], context: EscrowContext) throws -> [UInt8]
}

extension EscrowRecipient: KeySealer {
    public var schemeName: String { scheme.name }
    public var recipientFingerprint: String { fingerprint.hexString }
}
