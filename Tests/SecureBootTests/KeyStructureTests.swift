import Crypto
import Foundation
import Testing
@testable import SecureBoot

/// Key DER through swift-asn1 (KeyStructures.swift): the SEC1 form espforge writes, and clear
/// errors for structures it cannot use.
@Suite("key DER structures (swift-asn1)")
struct KeyStructureTests {
    @Test func sec1PrivateKeyLayoutAndRoundTrip() throws {
        let p256 = P256.Signing.PrivateKey()
        let pem = SigningKey.p256(p256).pemRepresentation
        #expect(pem.hasPrefix("-----BEGIN EC PRIVATE KEY-----\n") && pem.hasSuffix("-----END EC PRIVATE KEY-----\n"))
        let der = try #require(PEMBlock.parseAll(pem)?.first?.der)
        // SEQUENCE { INTEGER 1, OCTET STRING (32), [0] { OID prime256v1 }, [1] { BIT STRING 04 || X || Y } }
        let expected: [UInt8] = [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20] + Array(p256.rawRepresentation)
            + [0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0xA1, 0x44, 0x03, 0x42, 0x00]
            + Array(p256.publicKey.x963Representation)
        #expect(der == expected)
        guard case .privateKey(.p256(let back)) = try KeyMaterial.load(pem: pem) else {
            Issue.record("expected a P-256 private key"); return
        }
        #expect(back.rawRepresentation == p256.rawRepresentation)
    }

    @Test func unusableStructuresGiveClearErrors() throws {
        // Truncated PKCS#8 / SPKI / SEC1.
        let pkcs8 = try #require(PEMBlock.parseAll(P256.Signing.PrivateKey().pemRepresentation)?.first?.der)
        #expect(throws: SecureBootError.malformedKey("PRIVATE KEY is not a PKCS#8 structure (truncated DER)")) {
            try KeyMaterial.load(pem: PEMBlock.encode(label: "PRIVATE KEY", der: Array(pkcs8.prefix(30))))
        }
        let spki = try #require(PEMBlock.parseAll(P256.Signing.PrivateKey().publicKey.pemRepresentation)?.first?.der)
        #expect(throws: SecureBootError.malformedKey("PUBLIC KEY is not a SubjectPublicKeyInfo structure (truncated DER)")) {
            try KeyMaterial.load(pem: PEMBlock.encode(label: "PUBLIC KEY", der: Array(spki.dropLast(3))))
        }
        #expect(throws: SecureBootError.malformedKey("EC PRIVATE KEY is not a SEC1 structure (unexpected DER field)")) {
            try KeyMaterial.load(pem: PEMBlock.encode(label: "EC PRIVATE KEY", der: [0x04, 0x00]))
        }
        // An Ed25519 PKCS#8 key: a valid structure of an algorithm Secure Boot does not use.
        let ed: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
            + [UInt8](repeating: 7, count: 32)
        #expect(throws: SecureBootError.unsupportedKeyType("Ed25519 key")) {
            try KeyMaterial.load(pem: PEMBlock.encode(label: "PRIVATE KEY", der: ed))
        }
        // SEC1 without parameters: the curve comes from the scalar's size.
        let bare: [UInt8] = [0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20] + [UInt8](repeating: 0, count: 31) + [1]
        do { _ = try KeyMaterial.load(pem: PEMBlock.encode(label: "EC PRIVATE KEY", der: bare)) } catch let e as SecureBootError {
            #expect(!"\(e)".contains("SEC1") && !"\(e)".contains("named curve"), "the structure itself is valid: \(e)")
        }
    }
}
