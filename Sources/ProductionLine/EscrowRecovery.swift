import Dispatch
import Foundation
import ESPCore
import KeyCustody
import NVS
import Registry

/// Offline recovery of a device's escrowed keys (`espforge registry unseal`), and the cost of
/// escrow per device (`registry escrow-bench`). Nothing here prints or writes files.
public enum EscrowRecovery {
    /// A sealed blob to recover and the file name it is written under: `MAC-KIND.bin` for the
    /// newest blob of its kind (what the device holds), `MAC-KIND-ID.bin` for older ones.
    public struct Wanted: Sendable {
        public var record: SealedKeyRecord
        public var fileName: String
    }

    /// The device's sealed blobs (oldest first); an error when there are none or the registry
    /// keeps no escrow table.
    public static func records(_ reg: any DeviceRegistry, mac: String) async throws -> [SealedKeyRecord] {
        guard let store = reg as? any EscrowStore else { throw UsageError("this registry has no escrow table") }
        let records = try await store.sealedKeys(mac: mac)
        guard !records.isEmpty else {
            throw UsageError("no escrowed keys for \(mac) in the registry",
                             hint: "escrow is on only when the manifest has [escrow] public_key or provision got --escrow-key")
        }
        return records
    }

    /// The newest blob of each kind (with `all`, every blob), in registry order, with file names.
    public static func wanted(_ records: [SealedKeyRecord], all: Bool) -> [Wanted] {
        var newest: [String: Int64?] = [:]
        for r in records { newest[r.kind] = r.id }
        let name = records.first?.mac.replacingOccurrences(of: ":", with: "") ?? ""
        return records.compactMap { r in
            let isNewest = newest[r.kind] == .some(r.id)
            guard all || isNewest else { return nil }
            return Wanted(record: r, fileName: "\(name)-\(r.kind)\(isNewest ? "" : "-\(r.id ?? 0)").bin")
        }
    }

    /// Opens one blob with the escrow private key (only for the MAC, identity and kind it was
    /// sealed for). `nvs_keys` come back as the 4096-byte nvs_keys partition image (as
    /// nvs_partition_gen --inputkey takes it); a flash encryption key as its 32 bytes.
    public static func open(_ r: SealedKeyRecord, with key: EscrowPrivateKey) throws -> [UInt8] {
        var secret = try key.unseal(r.sealed, context: EscrowContext(mac: r.mac, identity: r.identity, kind: r.kind))
        defer { for i in secret.indices { secret[i] = 0 } }
        guard r.kind == "nvs_keys" else { return secret }
        do { return try NVSKeys(raw: secret).image } catch { throw UsageError("the unsealed nvs_keys are not 64 bytes") }
    }

    /// What ``bench(recipient:registry:devices:)`` measured, per device (two blobs each).
    public struct BenchFigures: Sendable {
        public var scheme: String
        public var devices: Int
        public var sealMilliseconds: Double
        public var storeMilliseconds: Double
    }

    /// Seals a 32-byte flash key and 64 bytes of NVS keys for each of `devices` simulated devices
    /// and stores both blobs in `registry`.
    public static func bench(recipient: EscrowRecipient, registry: any DeviceRegistry, devices count: Int) async throws -> BenchFigures {
        guard let store = registry as? any EscrowStore else { throw UsageError("this registry has no escrow table") }
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        var records: [SealedKeyRecord] = []
        let t0 = now()
        for i in 0..<count {
            let mac = String(format: "02:00:00:%02x:%02x:%02x", (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
            for (kind, size) in [("flash_encryption_key", 32), ("nvs_keys", 64)] {
                let secret = (0..<size).map { _ in UInt8.random(in: 0...255) }
                let blob = try recipient.seal(secret, context: EscrowContext(mac: mac, identity: "BENCH-\(i)", kind: kind))
                records.append(SealedKeyRecord(mac: mac, kind: kind, identity: "BENCH-\(i)", scheme: recipient.schemeName,
                                               recipient: recipient.recipientFingerprint, sealed: blob))
            }
        }
        let t1 = now()
        for r in records { try await store.storeSealedKey(r) }
        let t2 = now()
        return BenchFigures(scheme: recipient.schemeName, devices: count,
                            sealMilliseconds: Double(t1 - t0) / 1e6 / Double(count),
                            storeMilliseconds: Double(t2 - t1) / 1e6 / Double(count))
    }
}
