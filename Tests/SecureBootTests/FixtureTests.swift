import ESPCore
import Foundation
import Testing
import TestSupport
@testable import SecureBoot

/// Espressif's own signed vectors, read by espforge (no oracle needed).
@Suite("SecureBoot Espressif vectors", fixtureTrait)
struct FixtureTests {
    @Test("Every Espressif-signed bootloader verifies with its key")
    func signedFixturesVerify() throws {
        let cases: [(String, String, SecureBootPolicy, Int)] = [
            ("bootloader_signed_v2_rsa.bin", Fx.rsaKey, .esp32, 0),
            ("bootloader_signed_v2_rsa.bin", Fx.rsaPub, .esp32, 0),
            ("bootloader_signed_v2_ecdsa256.bin", Fx.ec256Key, .generic, 0),
            ("bootloader_signed_v2_ecdsa256.bin", Fx.ec256Pub, .generic, 0),
            ("bootloader_signed_v2_ecdsa384.bin", Fx.ec384Key, .generic, 0),
            ("bootloader_multi_signed_v2_rsa.bin", Fx.rsaKey, .esp32, 0),
            ("bootloader_multi_signed_v2_rsa.bin", Fx.rsaKey2, .generic, 1),
            ("bootloader_multi_signed_v2_rsa.bin", Fx.rsaKey3, .esp32s3, 2),
        ]
        for (image, key, policy, index) in cases {
            let got = try SecureBootVerifier.verify(image: Fx.bytes(image), key: Fx.key(key).verifyingKey, policy: policy)
            #expect(got == index, "\(image) with \(key)")
        }
        // Wrong pairings fail.
        #expect(throws: SecureBootError.self) {
            try SecureBootVerifier.verify(image: Fx.bytes("bootloader_signed_v2_rsa.bin"), key: Fx.key(Fx.rsaKey2).verifyingKey, policy: .generic)
        }
        #expect(throws: SecureBootError.self) { // ESP32 honours block 0 only
            try SecureBootVerifier.verify(image: Fx.bytes("bootloader_multi_signed_v2_rsa.bin"), key: Fx.key(Fx.rsaKey2).verifyingKey, policy: .esp32)
        }
        #expect(throws: SecureBootError.schemeNotAllowed(scheme: .ecdsa256, chip: "ESP32", allowed: [.rsa3072])) {
            try SecureBootVerifier.verify(image: Fx.bytes("bootloader_signed_v2_ecdsa256.bin"), key: Fx.key(Fx.ec256Key).verifyingKey, policy: .esp32)
        }
    }

    @Test("Signing bootloader_unsigned_v2.bin reproduces Espressif's signed file except the randomized PSS signature")
    func reproduceSignedBootloader() throws {
        guard case .privateKey(let key) = try Fx.key(Fx.rsaKey) else { Issue.record("not private"); return }
        let ours = try SecureBootSigner.sign(image: Fx.bytes(Fx.unsigned), keys: [key], append: false, policy: .esp32).image
        let theirs = try Fx.bytes("bootloader_signed_v2_rsa.bin")
        #expect(ours.count == theirs.count)
        let c = theirs.count - 4096
        #expect(ours[0..<(c + 812)] == theirs[0..<(c + 812)], "content, magic, digest, n, e, rinv, mdash")
        #expect(ours[(c + 1200)...] == theirs[(c + 1200)...], "padding and the rest of the sector")
        #expect(ours[(c + 812)..<(c + 1196)] != theirs[(c + 812)..<(c + 1196)], "PSS is randomized")
        // Multi-signed: the same for three keys.
        var keys: [SigningKey] = []
        for name in [Fx.rsaKey, Fx.rsaKey2, Fx.rsaKey3] {
            if case .privateKey(let k) = try Fx.key(name) { keys.append(k) }
        }
        let multi = try SecureBootSigner.sign(image: Fx.bytes(Fx.unsigned), keys: keys, append: false, policy: .generic).image
        let multiRef = try Fx.bytes("bootloader_multi_signed_v2_rsa.bin")
        #expect(multi.count == multiRef.count)
        for i in 0..<3 {
            let b = c + i * 1216
            #expect(multi[b..<(b + 812)] == multiRef[b..<(b + 812)], "block \(i) fields")
            #expect(multi[(b + 1200)..<(b + 1216)] == multiRef[(b + 1200)..<(b + 1216)])
        }
        #expect(multi[(c + 3648)...] == multiRef[(c + 3648)...])
    }

    @Test("ECDSA signed fixtures: our blocks match Espressif's in every deterministic field")
    func reproduceECDSA() throws {
        for (image, keyName, sigStart, sigLength) in [("bootloader_signed_v2_ecdsa256.bin", Fx.ec256Key, 101, 64),
                                                      ("bootloader_signed_v2_ecdsa384.bin", Fx.ec384Key, 149, 96)] {
            guard case .privateKey(let key) = try Fx.key(keyName) else { Issue.record("not private"); continue }
            let ours = try SecureBootSigner.sign(image: Fx.bytes(Fx.unsigned), keys: [key], append: false, policy: .generic).image
            let theirs = try Fx.bytes(image)
            #expect(ours.count == theirs.count)
            let c = theirs.count - 4096
            #expect(ours[0..<(c + sigStart)] == theirs[0..<(c + sigStart)], "\(image): content and block fields")
            #expect(ours[(c + sigStart + sigLength)..<(c + 1196)] == theirs[(c + sigStart + sigLength)..<(c + 1196)])
            #expect(ours[(c + 1200)...] == theirs[(c + 1200)...])
        }
    }

    @Test("secure-boot info --json reports the multi-signed fixture")
    func infoJSON() throws {
        let r = try espforgeOK(["secure-boot", "info", "--json", Fx.path("bootloader_multi_signed_v2_rsa.bin")])
        struct Block: Decodable { let index: Int; let scheme: String; let keyDigest: String; let crcValid: Bool
            let imageDigestMatches: Bool; let signatureValid: Bool? }
        struct Sector: Decodable { let offset: Int; let blocks: [Block] }
        struct Info: Decodable { let signatureSector: Sector? }
        let info = try JSONDecoder().decode(Info.self, from: Data(r.out.utf8))
        let sector = try #require(info.signatureSector)
        #expect(sector.offset == 0x8000)
        #expect(sector.blocks.count == 3)
        let digests = try [Fx.rsaKey, Fx.rsaKey2, Fx.rsaKey3].map { try Fx.key($0).verifyingKey.keyDigest().hexString }
        #expect(sector.blocks.map(\.keyDigest) == digests)
        #expect(sector.blocks.allSatisfy { $0.crcValid && $0.imageDigestMatches && $0.signatureValid == true })
        #expect(sector.blocks.allSatisfy { $0.scheme == "RSA-3072 (PSS)" })
        // An app signed with the legacy V1 scheme has no V2 sector (espsecure signature-info-v2 agrees).
        let app = try espforgeOK(["secure-boot", "info", "--json", Fx.path("hello-world-signed.bin")])
        #expect(try JSONDecoder().decode(Info.self, from: Data(app.out.utf8)).signatureSector == nil)
        // An unsigned image has no sector.
        let un = try espforgeOK(["secure-boot", "info", "--json", Fx.path(Fx.unsigned)])
        #expect(try JSONDecoder().decode(Info.self, from: Data(un.out.utf8)).signatureSector == nil)
    }

    @Test("CLI: ESP32 warns about extra blocks; info shows a modified image; verify names the reason")
    func cliReports() throws {
        let s = try Scratch(); defer { s.remove() }
        let r = try espforgeOK(["secure-boot", "sign", "--key", Fx.path(Fx.rsaKey), "--key", Fx.path(Fx.rsaKey2),
                                Fx.path(Fx.unsigned), "-o", s.path("two.bin")])
        #expect(r.err.contains("warning: ESP32 honours only 1 signature block"))
        #expect(r.out.contains("now has 2 block(s)"))
        var image = try Fx.bytes("bootloader_signed_v2_rsa.bin")
        image[0x100] ^= 0x04 // in the signed content, as the seed report's header rewrite did
        let t = try s.write(image, "t.bin")
        let info = try espforgeOK(["secure-boot", "info", t])
        #expect(info.out.contains("DOES NOT MATCH content"))
        #expect(info.out.contains("signature:    INVALID"))
        let v = try Espforge.run(["secure-boot", "verify", "--key", Fx.path(Fx.rsaPub), t])
        #expect(v.status == 1)
        #expect(v.err.contains("image modified after signing"))
    }
}
