import ArgumentParser
import ESPCore
import Foundation
import KeyCustody
import NVS
import Registry

/// `registry unseal`: offline recovery of a device's escrowed keys.
struct RegistryUnseal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unseal",
        abstract: "Recover a device's escrowed keys with the escrow private key (offline, for RMA and field recovery).",
        discussion: """
            Reads the sealed blobs of one device from the registry and opens them with the escrow \
            private key: the newest blob of each kind is what the device holds (older ones are from \
            interrupted runs and are kept; --all writes them too). Each blob opens only for the MAC \
            and identity it was sealed for. Files are written with mode 0600 into -o DIR (default: \
            the current folder), named MAC-KIND.bin: flash_encryption_key (32 bytes, as espsecure \
            and espefuse take it) and nvs_keys (the 4096-byte nvs_keys partition image, as \
            nvs_partition_gen --inputkey takes it). Nothing is printed but file names and digests' prefixes.

            Example:
              espforge registry unseal 24:0a:c4:12:34:56 --escrow-key escrow_private.pem -o recovered/
            """
    )

    @OptionGroup var options: RegistryOptions
    @Argument(help: "MAC address of the device.") var mac: String
    @Option(name: .customLong("escrow-key"), help: "Escrow private key PEM (X25519 PKCS#8 or RSA).") var escrowKey: String
    @Option(name: .shortAndLong, help: "Folder for the recovered key files (created if missing).") var output: String = "."
    @Flag(help: "Also write superseded blobs (suffix -N).") var all = false

    func run() async throws {
        let key: EscrowPrivateKey
        do { key = try EscrowPrivateKey.load(pem: try FileIO.readText(escrowKey, limit: .key)) } catch let e as KeyCustodyError {
            throw FileContextError(file: escrowKey, underlying: e)
        }
        let mac = self.mac
        let records: [SealedKeyRecord] = try await withRegistry(try await options.open()) { reg in
            guard let store = reg as? any EscrowStore else { throw UsageError("this registry has no escrow table") }
            return try await store.sealedKeys(mac: mac)
        }
        guard !records.isEmpty else {
            throw UsageError("no escrowed keys for \(mac) in the registry",
                             hint: "escrow is on only when the manifest has [escrow] public_key or provision got --escrow-key")
        }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let newest = Dictionary(grouping: records, by: \.kind).mapValues { $0.last! }
        let name = records[0].mac.replacingOccurrences(of: ":", with: "")
        for r in records where all || newest[r.kind]?.id == r.id {
            var secret = try key.unseal(r.sealed, context: EscrowContext(mac: r.mac, identity: r.identity, kind: r.kind))
            defer { for i in secret.indices { secret[i] = 0 } }
            var bytes = secret
            if r.kind == "nvs_keys" {
                do { bytes = try NVSKeys(raw: secret).image } catch { throw UsageError("the unsealed nvs_keys are not 64 bytes") }
            }
            let suffix = newest[r.kind]?.id == r.id ? "" : "-\(r.id ?? 0)"
            let path = (output as NSString).appendingPathComponent("\(name)-\(r.kind)\(suffix).bin")
            try FileIO.write(bytes, to: path, secret: true)
            print("wrote \(path) (mode 0600; \(r.kind), identity \(r.identity ?? "-"), sealed \(r.createdAt ?? "?"))")
        }
    }
}

/// `registry escrow-keygen`: a fresh X25519 escrow key pair.
struct RegistryEscrowKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escrow-keygen",
        abstract: "Generate an X25519 escrow key pair (PEM, as openssl genpkey -algorithm X25519 writes).",
        discussion: """
            The public key goes to the line ([escrow] public_key = "escrow_pub.pem"); the private \
            key (mode 0600) belongs offline with whoever is allowed to recover devices. An RSA key \
            (≥ 2048 bits, RSA-OAEP-SHA256) works as well, e.g. one kept on an offline HSM.

            Example:
              espforge registry escrow-keygen -o escrow_private.pem --pub-out escrow_pub.pem
            """
    )

    @Option(name: .shortAndLong, help: "Private key file to write (mode 0600).") var output: String
    @Option(name: .customLong("pub-out"), help: "Public key file to write.") var pubOut: String
    @Flag(help: "Overwrite existing files.") var force = false

    func run() throws {
        for p in [output, pubOut] where !force && FileManager.default.fileExists(atPath: p) {
            throw UsageError(Diagnostic("already exists; not overwriting it", file: p, hint: "choose another name, or pass --force"))
        }
        let pair = EscrowPrivateKey.generateX25519()
        try FileIO.write(Array(pair.privatePEM.utf8), to: output, secret: true)
        try FileIO.write(pair.publicPEM, to: pubOut)
        let fp = try EscrowRecipient.load(pem: pair.publicPEM).recipientFingerprint
        print("wrote escrow private key \(output) (mode 0600) and public key \(pubOut)")
        print("escrow key fingerprint: \(fp)")
    }
}

/// A sealed key as exports show it: the blob stays sealed.
struct EscrowReport: Codable {
    var kind: String
    var identity: String?
    var scheme: String
    var recipient: String
    var sealed: String
    var createdAt: String?

    init(_ r: SealedKeyRecord) {
        kind = r.kind; identity = r.identity; scheme = r.scheme; recipient = r.recipient
        sealed = Data(r.sealed).base64EncodedString(); createdAt = r.createdAt
    }

    static func of(_ reg: any DeviceRegistry, mac: String) async throws -> [EscrowReport]? {
        guard let store = reg as? any EscrowStore else { return nil }
        let records = try await store.sealedKeys(mac: mac)
        return records.isEmpty ? nil : records.map(EscrowReport.init)
    }
}

/// Hidden: the cost of escrow per device, for scripts/bench-custody (seal two keys — a 32-byte
/// flash key and 64 bytes of NVS keys — and store both blobs in the given registry).
struct RegistryEscrowBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escrow-bench", abstract: "Measure sealing and storing escrow blobs (benchmarks).", shouldDisplay: false)

    @OptionGroup var options: RegistryOptions
    @Option(name: .customLong("escrow-key"), help: "Escrow public key PEM.") var escrowKey: String
    @Option(help: "Simulated devices.") var count = 200

    func run() async throws {
        guard (1...100_000).contains(count) else { throw ValidationError("--count must be 1…100000") }
        let recipient: EscrowRecipient
        do { recipient = try EscrowRecipient.load(pem: try FileIO.readText(escrowKey, limit: .key)) } catch let e as KeyCustodyError {
            throw FileContextError(file: escrowKey, underlying: e)
        }
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
        let batch = records
        try await withRegistry(try await options.open(create: true)) { reg in
            guard let store = reg as? any EscrowStore else { throw UsageError("this registry has no escrow table") }
            for r in batch { try await store.storeSealedKey(r) }
        }
        let t2 = now()
        let sealMs = Double(t1 - t0) / 1e6 / Double(count), storeMs = Double(t2 - t1) / 1e6 / Double(count)
        print(String(format: "%@ escrow, %d devices: sealing %.3f ms per device, storing %.3f ms per device (2 blobs each)",
                     recipient.schemeName, count, sealMs, storeMs))
    }
}
