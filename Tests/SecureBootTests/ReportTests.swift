import ESPCore
import Foundation
@testable import SecureBoot
import Testing
import TestSupport

/// The reports and file operations behind `secure-boot info|sign|keygen`, through the library.
@Suite("Secure Boot reports and key files (library)")
struct SecureBootReportTests {
    @Test("info of an image signed with two keys: both blocks, their digests, text and JSON")
    func infoOfSignedImage() throws {
        let keys = [try SigningKey.generate(.ecdsa256), try SigningKey.generate(.ecdsa256)]
        let image = [UInt8](repeating: 0x5A, count: 5000)
        let signed = try SecureBootSigner.sign(image: image, keys: keys, append: false, policy: .generic)
        #expect(signed.padding == 8192 - 5000 && signed.totalBlocks == 2)
        let report = try SecureBootInfoReport.inspect(image: signed.image, name: "app.bin")
        #expect(report.sectorOffset == 8192 && report.length == 8192 + 4096 && report.problems.isEmpty)
        let sector = try #require(report.signatureSector)
        #expect(sector.blocks.map(\.keyDigest) == (try keys.map { try $0.publicKey.keyDigest().hexString }))
        #expect(sector.blocks.allSatisfy { $0.crcValid && $0.imageDigestMatches && $0.signatureValid == true })
        #expect(report.text.hasPrefix("app.bin: 12288 bytes, signature sector at 0x2000\n  block 0: ECDSA P-256\n"))
        #expect(report.text.contains("  block 1: ECDSA P-256\n"))
        let json = try JSONSerialization.jsonObject(with: Data(try report.json().utf8)) as? [String: Any]
        #expect(Set(json?.keys.map { $0 } ?? []) == ["file", "length", "signatureSector", "problems"])
        // What `sign` prints about it.
        let summary = signed.summary(output: "out.bin")
        #expect(summary.first == "signed 8192 bytes (padded with 3192 bytes of 0xFF); signature sector at 0x2000 now has 2 block(s)")
        #expect(summary.last == "verified and wrote out.bin" && summary.count == 4)
    }

    @Test("info of an unsigned image: no sector, one problem; a content change breaks the digest")
    func infoOfUnsignedAndTampered() throws {
        let unsigned = [UInt8](repeating: 0xFF, count: 8192)
        let report = try SecureBootInfoReport.inspect(image: unsigned, name: "u.bin")
        #expect(report.signatureSector == nil && report.problems == ["no signature block at offset 0x1000 (unsigned image?)"])
        #expect(report.text == "u.bin: 8192 bytes, signature sector at 0x1000\n  no signature block (unsigned image?)\n")

        var signed = try SecureBootSigner.sign(image: [UInt8](repeating: 1, count: 4096), keys: [try SigningKey.generate(.ecdsa256)],
                                               append: false, policy: .generic).image
        signed[10] ^= 1
        let tampered = try #require(SignatureSectorReport.inspect(file: signed, sectorOffset: 4096))
        #expect(tampered.blocks.count == 1 && tampered.blocks[0].crcValid && !tampered.blocks[0].imageDigestMatches)
    }

    @Test("keygen to files: a 0600 private key whose digest is returned; an existing file is kept unless overwrite")
    func keygenFiles() throws {
        let dir = try TestEnvironment.temporaryDirectory("sb-keyfiles")
        defer { try? FileManager.default.removeItem(at: dir) }
        let priv = dir.appendingPathComponent("k.pem").path, pub = dir.appendingPathComponent("p.pem").path
        let scheme = try SecureBootKeyFiles.scheme(named: "ECDSA256")
        let digest = try SecureBootKeyFiles.generate(scheme, privateKeyPath: priv, publicKeyPath: pub, overwrite: false)
        let mode = try FileManager.default.attributesOfItem(atPath: priv)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try KeyMaterial.load(file: priv).verifyingKey.keyDigest() == digest)
        #expect(try KeyMaterial.load(file: pub).verifyingKey.keyDigest() == digest)
        let before = try Data(contentsOf: URL(fileURLWithPath: priv))
        #expect(throws: UsageError.self) { try SecureBootKeyFiles.generate(scheme, privateKeyPath: priv, publicKeyPath: nil, overwrite: false) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: priv)) == before)
        #expect(try SecureBootKeyFiles.scheme(named: "ecdsa192") == .ecdsa192, "P-192 keys can be generated (espsecure's ecdsa192)")
        #expect(throws: UsageError.self) { try SecureBootKeyFiles.scheme(named: "ecdsa521") }
        // The ESP32 BLOCK2 digest needs RSA-3072.
        do {
            _ = try SecureBootKeyFiles.esp32KeyDigest(file: priv)
            Issue.record("an ECDSA key was accepted for the ESP32")
        } catch let e as UsageError {
            #expect(e.diagnostic.file == priv && e.diagnostic.message.contains("RSA-3072"))
        }
        #expect(try SecureBootPolicy.forChip("esp32s3").chip == "esp32s3")
        #expect(throws: UsageError.self) { try SecureBootPolicy.forChip("esp8266") }
    }

    @Test("external signing from files gives the same image as signing with the key")
    func externalFromFiles() throws {
        let dir = try TestEnvironment.temporaryDirectory("sb-external")
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try SigningKey.generate(.ecdsa256)
        let image = [UInt8](repeating: 0x33, count: 4096)
        let pubPath = dir.appendingPathComponent("pub.pem").path, sigPath = dir.appendingPathComponent("sig.bin").path
        try AtomicFile.write(Array(key.publicKey.pemRepresentation.utf8), to: pubPath)
        let digest = SecureBootSigner.digestToSign(image: image, hash: .sha256).digest
        try AtomicFile.write(try key.sign(contentDigest: digest), to: sigPath)
        let r = try SecureBootSigner.signExternal(image: image, publicKeyFiles: [pubPath], signatureFiles: [sigPath],
                                                  append: false, policy: .generic)
        let report = try #require(SignatureSectorReport.inspect(file: r.image, sectorOffset: 4096))
        #expect(report.blocks.count == 1 && report.blocks[0].signatureValid == true)
        #expect(report.blocks[0].keyDigest == (try key.publicKey.keyDigest().hexString))
    }
}
