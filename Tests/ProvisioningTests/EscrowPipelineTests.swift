import FlashEncryption
import Foundation
import KeyCustody
import NVS
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// A sealer that always fails (an escrow key that cannot be used).
struct FailingSealer: KeySealer {
    var schemeName: String { "hpke-x25519-hkdf-sha256-aes256gcm" }
    var recipientFingerprint: String { String(repeating: "0", count: 64) }
    func seal(_ secret: [UInt8], context: EscrowContext) throws -> [UInt8] {
        throw KeyCustodyError.sealFailed(why: "test sealer refuses")
    }
}

@Suite("Escrow in the provisioning pipeline")
struct EscrowPipelineTests {
    @Test("host mode with escrow: flash key and NVS keys sealed per device; unsealed they equal the burned key and the written keys",
          fixtures, arguments: Backend.enabled)
    func escrowed(backend: Backend) async throws {
        let line = try Line(count: 2, mode: .host)
        defer { line.cleanup() }
        let pair = EscrowPrivateKey.generateX25519()
        let escrowPrivate = try EscrowPrivateKey.load(pem: pair.privatePEM)
        var job = line.job
        job.escrow = try EscrowRecipient.load(pem: pair.publicPEM)
        let registry = try await backend.open(line.dir)
        defer { Task { try? await registry.close() } }
        let results = try await line.provision(registry, job: job)
        #expect(results.allSatisfy { $0.ok }, "\(results)")
        let store = try #require(registry as? any EscrowStore)
        for (target, result) in zip(line.targets, results.sorted { $0.port < $1.port }) {
            let mac = try #require(result.mac)
            let device = try target.store.load()
            let records = try await store.sealedKeys(mac: mac)
            #expect(Set(records.map(\.kind)) == ["flash_encryption_key", "nvs_keys"])
            let record = try #require(await registry.device(mac: mac))
            #expect(record.facts.keyDigests["escrow_recipient"] == escrowPrivate.fingerprint.map { String(format: "%02x", $0) }.joined())
            for r in records {
                #expect(r.identity == result.identity && r.recipient == record.facts.keyDigests["escrow_recipient"])
                let secret = try escrowPrivate.unseal(r.sealed, context: EscrowContext(mac: mac, identity: r.identity, kind: r.kind))
                // Bound to this device: another MAC or identity does not open it.
                #expect(throws: KeyCustodyError.self) {
                    _ = try escrowPrivate.unseal(r.sealed, context: EscrowContext(mac: "02:00:00:00:00:99", identity: r.identity, kind: r.kind))
                }
                #expect(throws: KeyCustodyError.self) {
                    _ = try escrowPrivate.unseal(r.sealed, context: EscrowContext(mac: mac, identity: "someone-else", kind: r.kind))
                }
                // The raw secret is in no registry field.
                #expect(!r.sealed.containsSubsequence(secret))
                if r.kind == "flash_encryption_key" {
                    #expect(secret == Provisioner.keyBytes(device.efuses), "the unsealed key is the key in BLOCK1")
                } else {
                    // nvs_key partition (encrypted in flash): decrypt it with the unsealed flash key.
                    let fe = try escrowPrivate.unseal(try #require(records.last { $0.kind == "flash_encryption_key" }).sealed,
                                                      context: EscrowContext(mac: mac, identity: r.identity, kind: "flash_encryption_key"))
                    let part = try #require(job.partition(named: "nvs_key"))
                    let cipher = try FlashCipher(chip: .esp32, key: fe, flashCryptConfig: 0xF)
                    let plain = try cipher.decrypt(try #require(device.flash.read(Int(part.offset), 4096)), at: Int(part.offset))
                    #expect(Array(plain.prefix(64)) == secret, "the unsealed NVS keys are the ones written")
                }
            }
        }
    }

    @Test("sealing fails: the device stops before its flash key is burned or anything is written", fixtures)
    func sealingFails() async throws {
        let line = try Line(count: 1, mode: .host)
        defer { line.cleanup() }
        var job = line.job
        job.encryptNVS = false   // the first secret is then the flash-encryption key, at the write step
        job.escrow = FailingSealer()
        let registry = try await Backend.sqlite.open(line.dir)
        defer { Task { try? await registry.close() } }
        let results = try await line.provision(registry, job: job)
        let r = try #require(results.first)
        #expect(!r.ok && r.failedStep == "write" && (r.reason ?? "").contains("escrow"), "\(r)")
        let device = try line.targets[0].store.load()
        #expect(device.efuses.blocks[1].allSatisfy { $0 == 0 }, "no flash-encryption key burned")
        #expect(device.flash.read(0x1000, 16)?.allSatisfy { $0 == 0xFF } == true, "nothing written")

        // With NVS encryption the NVS keys are the first secret: the device stops at build-nvs.
        let line2 = try Line(count: 1, mode: .host)
        defer { line2.cleanup() }
        var job2 = line2.job
        job2.escrow = FailingSealer()
        let r2 = try #require(try await line2.provision(registry, job: job2).first)
        #expect(!r2.ok && r2.failedStep == "build-nvs", "\(r2)")
        #expect(try line2.targets[0].store.load().efuses.blocks[1].allSatisfy { $0 == 0 })
    }

    @Test("the registry refuses a plaintext key presented as a sealed blob")
    func guardRefusesPlaintext() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-escrow-guard")
        defer { try? FileManager.default.removeItem(at: dir) }
        let registry = try await Backend.sqlite.open(dir)
        defer { Task { try? await registry.close() } }
        let store = try #require(registry as? any EscrowStore)
        let raw = [UInt8](repeating: 0x42, count: 32)
        await #expect(throws: RegistryError.self) {
            try await store.storeSealedKey(SealedKeyRecord(mac: "02:00:00:00:00:01", kind: "flash_encryption_key", identity: nil,
                                                           scheme: "hpke-x25519-hkdf-sha256-aes256gcm",
                                                           recipient: String(repeating: "0", count: 64), sealed: raw))
        }
        // A real blob is accepted and read back unchanged.
        let pair = EscrowPrivateKey.generateX25519()
        let recipient = try EscrowRecipient.load(pem: pair.publicPEM)
        let blob = try recipient.seal(raw, context: EscrowContext(mac: "02:00:00:00:00:01", identity: "SN-1", kind: "flash_encryption_key"))
        try await store.storeSealedKey(SealedKeyRecord(mac: "02:00:00:00:00:01", kind: "flash_encryption_key", identity: "SN-1",
                                                       scheme: recipient.schemeName, recipient: recipient.recipientFingerprint, sealed: blob))
        #expect(try await store.sealedKeys(mac: "020000000001").map(\.sealed) == [blob])
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        for i in 0...(count - needle.count) where self[i] == needle[0] && Array(self[i..<(i + needle.count)]) == needle { return true }
        return false
    }
}
