import Crypto
import ESPCore
import Foundation
import Testing
import TestSupport
@testable import SecureBoot

/// ECDSA P-192 (PrimeCurve.swift, P192Keys.swift) against published vectors: RFC 6979 A.2.3
/// (P-192 with SHA-256; the RFC's key, messages "sample" and "test"), and the key encodings
/// OpenSSL writes for that key.
@Suite("ECDSA P-192")
struct P192Tests {
    static let d = "6fab034934e4c0fc9ae67f5b5659a9d7d1fefd187ee09fd4"
    static let ux = "ac2c77f529f91689fea0ea5efec7f210d8eea0b9e047ed56"
    static let uy = "3bc723e57670bd4887ebc732c523063d0a7c957bc97c1c43"
    /// (message, r, s) for SHA-256.
    static let vectors = [
        ("sample", "4b0b8ce98a92866a2820e20aa6b75b56382e0f9bfd5ecb55", "ccdb006926ea9565cbadc840829d8c384e06de1f1e381b85"),
        ("test", "3a718bd8b4926c3b52ee6bbe67ef79b18cb6eb62b1ad97ae", "5662e6848a4a19b1f1ae2f72acd4b8bbe50f1eac65d9124f"),
    ]

    // The RFC 6979 key as OpenSSL writes it (a published test key, not a secret).
    static let sec1PEM = """
        -----BEGIN EC PRIVATE KEY-----
        MF8CAQEEGG+rA0k05MD8muZ/W1ZZqdfR/v0YfuCf1KAKBggqhkjOPQMBAaE0AzIA
        BKwsd/Up+RaJ/qDqXv7H8hDY7qC54EftVjvHI+V2cL1Ih+vHMsUjBj0KfJV7yXwc
        Qw==
        -----END EC PRIVATE KEY-----

        """
    static let pkcs8PEM = """
        -----BEGIN PRIVATE KEY-----
        MG8CAQAwEwYHKoZIzj0CAQYIKoZIzj0DAQEEVTBTAgEBBBhvqwNJNOTA/Jrmf1tW
        WanX0f79GH7gn9ShNAMyAASsLHf1KfkWif6g6l7+x/IQ2O6gueBH7VY7xyPldnC9
        SIfrxzLFIwY9CnyVe8l8HEM=
        -----END PRIVATE KEY-----

        """
    static let spkiPEM = """
        -----BEGIN PUBLIC KEY-----
        MEkwEwYHKoZIzj0CAQYIKoZIzj0DAQEDMgAErCx39Sn5Fon+oOpe/sfyENjuoLng
        R+1WO8cj5XZwvUiH68cyxSMGPQp8lXvJfBxD
        -----END PUBLIC KEY-----

        """

    static func hex(_ s: String) throws -> [UInt8] { try #require([UInt8](hexString: s)) }

    @Test func rfc6979Vectors() throws {
        let key = try P192.PrivateKey(scalar: Self.hex(Self.d))
        #expect(key.publicKey.x.hexString == Self.ux)
        #expect(key.publicKey.y.hexString == Self.uy)
        for (message, r, s) in Self.vectors {
            let digest = Array(SHA256.hash(data: Array(message.utf8)))
            let sig = key.signature(digest: digest)
            #expect(sig.hexString == r + s, "RFC 6979 A.2.3 \"\(message)\"")
            #expect(key.publicKey.isValidSignature(sig, digest: digest))
        }
    }

    @Test func verificationRejectsEveryAlteration() throws {
        let key = try P192.PrivateKey(scalar: Self.hex(Self.d))
        let digest = Array(SHA256.hash(data: Array("sample".utf8)))
        let sig = key.signature(digest: digest)
        var rng = SeededRandom(seed: testSeed())
        for _ in 0..<8 {
            var bad = sig
            bad[Int.random(in: 0..<48, using: &rng)] ^= 1 << UInt8.random(in: 0...7, using: &rng)
            #expect(!key.publicKey.isValidSignature(bad, digest: digest))
            var d2 = digest
            d2[Int.random(in: 0..<24, using: &rng)] ^= 0x01
            #expect(!key.publicKey.isValidSignature(sig, digest: d2))
        }
        // Only the leftmost 192 bits of the digest count (standard ECDSA truncation).
        var tail = digest
        tail[31] ^= 0xFF
        #expect(key.publicKey.isValidSignature(sig, digest: tail))
        // r = 0, s = 0, r = n are rejected; so is a signature of the wrong length.
        let n = try Self.hex("ffffffffffffffffffffffff99def836146bc9b1b4d22831")
        #expect(!key.publicKey.isValidSignature([UInt8](repeating: 0, count: 24) + sig.suffix(24), digest: digest))
        #expect(!key.publicKey.isValidSignature(Array(sig.prefix(24)) + [UInt8](repeating: 0, count: 24), digest: digest))
        #expect(!key.publicKey.isValidSignature(n + sig.suffix(24), digest: digest))
        #expect(!key.publicKey.isValidSignature(Array(sig.dropLast()), digest: digest))
        // Another key does not verify it.
        #expect(!P192.PrivateKey().publicKey.isValidSignature(sig, digest: digest))
    }

    @Test func freshKeysSignAndVerify() throws {
        for _ in 0..<3 {
            let key = try SigningKey.generate(.ecdsa192)
            let digest = ContentHash.sha256.digest(Array("image".utf8))
            let sig = try key.sign(contentDigest: digest)
            #expect(sig.count == 48)
            #expect(key.publicKey.isValidSignature(sig, contentDigest: digest))
        }
    }

    @Test func keyEncodings() throws {
        guard case .privateKey(.p192(let sec1)) = try KeyMaterial.load(pem: Self.sec1PEM),
              case .privateKey(.p192(let pkcs8)) = try KeyMaterial.load(pem: Self.pkcs8PEM),
              case .publicKey(.p192(let pub)) = try KeyMaterial.load(pem: Self.spkiPEM) else {
            Issue.record("expected P-192 keys"); return
        }
        #expect(sec1.scalar.hexString == Self.d && pkcs8.scalar.hexString == Self.d)
        #expect(pub == sec1.publicKey)
        // espforge writes exactly OpenSSL's traditional SEC1 form and SPKI.
        #expect(SigningKey.p192(sec1).pemRepresentation == Self.sec1PEM)
        #expect(VerifyingKey.p192(pub).pemRepresentation == Self.spkiPEM)
        // Compressed points decode to the same key (OpenSSL's compressed form of the RFC key).
        let compressed = try P192.PublicKey(x963Representation: Self.hex("03" + Self.ux))
        #expect(compressed == pub)
        // The block fields and the eFuse digest: curve id 1, X and Y little-endian, zero-filled to 64.
        let fields = try VerifyingKey.p192(pub).fields()
        let digested = fields.digestedBytes
        #expect(digested.count == 65 && digested[0] == 1)
        #expect(Array(digested[1..<25]) == Array(try Self.hex(Self.ux).reversed()))
        #expect(Array(digested[25..<49]) == Array(try Self.hex(Self.uy).reversed()))
        #expect(digested[49...].allSatisfy { $0 == 0 })
        #expect(VerifyingKey(fields: fields)?.scheme == .ecdsa192)
        // The key's description never shows the scalar.
        #expect(!"\(sec1)".contains(Self.d) && !String(reflecting: sec1).contains(Self.d))
    }

    @Test func badKeysGiveClearErrors() throws {
        // A point off the curve.
        var y = try Self.hex(Self.uy)
        y[23] ^= 1
        #expect(throws: SecureBootError.malformedKey("the P-192 public point is not on the curve")) {
            try P192.PublicKey(x: Self.hex(Self.ux), y: y)
        }
        // Scalars 0 and n are not keys.
        #expect(throws: SecureBootError.malformedKey("P-192 private scalar is out of range")) {
            try P192.PrivateKey(scalar: [UInt8](repeating: 0, count: 24))
        }
        #expect(throws: SecureBootError.malformedKey("P-192 private scalar is out of range")) {
            try P192.PrivateKey(scalar: Self.hex("ffffffffffffffffffffffff99def836146bc9b1b4d22831"))
        }
        // A SEC1 key whose stored public point belongs to another key.
        let der = try #require(PEMBlock.parseAll(Self.sec1PEM)?.first?.der)
        let other = P192.PrivateKey()
        let forged = try KeyStructure.sec1DER(scalar: Self.hex(Self.d), curve: KeyOID.p192, point: other.publicKey.x963Representation)
        #expect(forged.count == der.count)
        #expect(throws: SecureBootError.malformedKey("the public point stored with the P-192 private key does not belong to it")) {
            try KeyMaterial.load(pem: PEMBlock.encode(label: "EC PRIVATE KEY", der: forged))
        }
    }

    @Test func signedImageRoundTripAndDERSignatures() throws {
        let key = try SigningKey.generate(.ecdsa192)
        var rng = SeededRandom(seed: testSeed())
        let image = rng.bytes(5000)
        let result = try SecureBootSigner.sign(image: image, keys: [key], append: false, policy: .generic)
        let block = try #require(result.newBlocks.first)
        #expect(block.version == 3 && block.bytes[2] == 0 && block.bytes[36] == 1)
        #expect(block.bytes[149..<1196].allSatisfy { $0 == 0 })
        #expect(try SecureBootVerifier.verify(image: result.image, key: key.publicKey, policy: .generic) == 0)
        #expect(block.keyDigest == (try key.publicKey.keyDigest()))
        // P-192 is refused for the RSA-only chips.
        #expect(throws: SecureBootError.self) {
            try SecureBootSigner.sign(image: image, keys: [key], append: false, policy: .esp32c3)
        }
        // External signatures in DER (as an HSM hands them over) are normalised to r ‖ s.
        let digest = ContentHash.sha256.digest(SignedImage.padded(image).content)
        let raw = try key.sign(contentDigest: digest)
        let der = Self.derSignature(raw)
        #expect(try key.publicKey.normalizeExternalSignature(der, index: 0) == raw)
        #expect(try key.publicKey.normalizeExternalSignature(raw, index: 0) == raw)
        #expect(throws: SecureBootError.self) { try key.publicKey.normalizeExternalSignature(Array(der.dropLast()), index: 0) }
    }

    /// DER ECDSA-Sig-Value for r ‖ s (minimal INTEGERs), built by hand.
    static func derSignature(_ raw: [UInt8]) -> [UInt8] {
        func integer(_ v: ArraySlice<UInt8>) -> [UInt8] {
            var m = Array(v.drop { $0 == 0 })
            if m.isEmpty || m[0] & 0x80 != 0 { m.insert(0, at: 0) }
            return [0x02, UInt8(m.count)] + m
        }
        let body = integer(raw.prefix(24)) + integer(raw.suffix(24))
        return [0x30, UInt8(body.count)] + body
    }
}
