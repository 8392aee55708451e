import Foundation
import Testing
import TestSupport
@testable import KeyCustody
import Registry

@Suite("Escrow sealing")
struct EscrowTests {
    static let context = EscrowContext(mac: "24:0A:C4:12:34:56", identity: "SN-0001", kind: "flash_encryption_key")

    /// X25519 (espforge's own pair) and RSA-3072 (openssl, when installed) escrow keys.
    static func pairs() throws -> [(String, String, String)] {
        let x = EscrowPrivateKey.generateX25519()
        var out = [("x25519", x.privatePEM, x.publicPEM)]
        if let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            let dir = try TestEnvironment.temporaryDirectory("espforge-escrow")
            for (name, args) in [("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"]), ("openssl-x25519", ["-algorithm", "X25519"])] {
                let priv = dir.appendingPathComponent("\(name).pem").path, pub = dir.appendingPathComponent("\(name)_pub.pem").path
                _ = try ProcessRunner.run(openssl, ["genpkey"] + args + ["-out", priv])
                _ = try ProcessRunner.run(openssl, ["pkey", "-in", priv, "-pubout", "-out", pub])
                out.append((name, try String(contentsOfFile: priv, encoding: .utf8), try String(contentsOfFile: pub, encoding: .utf8)))
            }
        }
        return out
    }

    @Test("seal → unseal round trip; bound to MAC, identity and kind; tampering and the wrong key are detected")
    func roundTrip() throws {
        for (name, privPEM, pubPEM) in try Self.pairs() {
            let recipient = try EscrowRecipient.load(pem: pubPEM)
            let key = try EscrowPrivateKey.load(pem: privPEM)
            #expect(recipient.fingerprint == key.fingerprint, "\(name): both halves name the same key")
            #expect(recipient.scheme == (name == "rsa" ? .rsaOAEP : .hpkeX25519))
            let secret: [UInt8] = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let blob = try recipient.seal(secret, context: Self.context)
            #expect(try key.unseal(blob, context: Self.context) == secret, "\(name)")
            // Two seals of one secret differ (fresh ephemeral key / data key each time).
            #expect(try recipient.seal(secret, context: Self.context) != blob)
            // The registry accepts it as a sealed blob.
            try SecretGuard.checkSealed(SealedKeyRecord(mac: Self.context.mac, kind: Self.context.kind, identity: Self.context.identity,
                                                        scheme: recipient.schemeName, recipient: recipient.recipientFingerprint, sealed: blob))
            for other in [EscrowContext(mac: "24:0a:c4:12:34:57", identity: "SN-0001", kind: "flash_encryption_key"),
                          EscrowContext(mac: "24:0a:c4:12:34:56", identity: "SN-0002", kind: "flash_encryption_key"),
                          EscrowContext(mac: "24:0a:c4:12:34:56", identity: "SN-0001", kind: "nvs_keys")] {
                #expect(throws: KeyCustodyError.self, "\(name): \(other)") { _ = try key.unseal(blob, context: other) }
            }
            for i in [6, 40, blob.count - 1] {
                var bad = blob
                bad[i] ^= 0x01
                #expect(throws: KeyCustodyError.self, "\(name): flipped byte \(i)") { _ = try key.unseal(bad, context: Self.context) }
            }
            let stranger = try EscrowPrivateKey.load(pem: EscrowPrivateKey.generateX25519().privatePEM)
            #expect {
                _ = try stranger.unseal(blob, context: Self.context)
            } throws: { e in
                if case KeyCustodyError.wrongEscrowKey = e { return true }
                return false
            }
        }
    }

    @Test("the line refuses an escrow PRIVATE key as recipient, and garbage")
    func refusals() {
        let pair = EscrowPrivateKey.generateX25519()
        #expect(throws: KeyCustodyError.self) { _ = try EscrowRecipient.load(pem: pair.privatePEM) }
        #expect(throws: KeyCustodyError.self) { _ = try EscrowRecipient.load(pem: "not a key") }
        #expect(throws: KeyCustodyError.self) { _ = try EscrowPrivateKey.load(pem: pair.publicPEM) }
    }
}
