import KeyCustody
import Registry

/// Escrow of the per-device secrets the pipeline generates: each is sealed to the line's escrow
/// public key and stored in the registry's `escrow` table *before* it is burned or written. If
/// sealing or storing fails the step fails, so a key that could not be recovered is never used.
extension Provisioner {
    public enum EscrowKind {
        public static let flashEncryptionKey = "flash_encryption_key"
        public static let nvsKeys = "nvs_keys"
    }

    /// Seals and stores `secret` for the device of `run` (no-op without an escrow key).
    func escrow(_ secret: [UInt8], kind: String, _ run: Run, step: ProvisionStep) async throws {
        guard let sealer = job.escrow else { return }
        guard let store = registry as? any EscrowStore else {
            throw ProvisioningError(step, "escrow is configured but this registry cannot store sealed keys")
        }
        let context = EscrowContext(mac: run.mac, identity: run.identity?.id, kind: kind)
        let blob: [UInt8]
        do { blob = try sealer.seal(secret, context: context) } catch {
            throw ProvisioningError(step, "escrow: \(Self.message(error))",
                                    hint: "the \(kind) was not burned or written; fix the escrow key and resume")
        }
        do {
            try await store.storeSealedKey(SealedKeyRecord(mac: run.mac, kind: kind, identity: run.identity?.id,
                                                           scheme: sealer.schemeName, recipient: sealer.recipientFingerprint, sealed: blob))
        } catch {
            throw ProvisioningError(step, "escrow: the sealed \(kind) could not be stored: \(Self.message(error))",
                                    hint: "the \(kind) was not burned or written; resume once the registry accepts writes")
        }
    }

    /// Host-mode flash encryption: the device's fresh key, escrowed, made before the write step
    /// burns it (nil when the key is already in eFuse from an interrupted run: readable, or
    /// read-protected — BLOCK1 then reads as zeros, and a new key would be escrowed but never used).
    func prepareFlashKey(_ run: Run) async throws {
        guard job.mode == .host, !run.flow.hostKeyBurned(run) else { return }
        var key = [UInt8](repeating: 0, count: run.flow.hostKeyLength(self))
        var rng = SystemRandomNumberGenerator()
        for i in key.indices { key[i] = UInt8.random(in: 0...255, using: &rng) }
        try await escrow(key, kind: EscrowKind.flashEncryptionKey, run, step: .write)
        run.flashKey = key
    }
}
