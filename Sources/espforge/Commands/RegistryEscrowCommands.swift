import ArgumentParser
import ESPCore
import Foundation
import KeyCustody
import ProductionLine
import Registry

/// `registry unseal`: offline recovery of a device's escrowed keys.
struct RegistryUnseal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unseal", abstract: "Recover a device's escrowed keys with the escrow private key (offline, for RMA and field recovery).",
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
        let records = try await withRegistry(try await options.open()) { try await EscrowRecovery.records($0, mac: mac) }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        for w in EscrowRecovery.wanted(records, all: all) {
            let path = (output as NSString).appendingPathComponent(w.fileName)
            try FileIO.write(try EscrowRecovery.open(w.record, with: key), to: path, secret: true)
            let r = w.record
            print("wrote \(path) (mode 0600; \(r.kind), identity \(r.identity ?? "-"), sealed \(r.createdAt ?? "?"))")
        }
    }
}

/// `registry escrow-keygen`: a fresh X25519 escrow key pair.
struct RegistryEscrowKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escrow-keygen", abstract: "Generate an X25519 escrow key pair (PEM, as openssl genpkey -algorithm X25519 writes).",
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
        let f = try await withRegistry(try await options.open(create: true)) {
            try await EscrowRecovery.bench(recipient: recipient, registry: $0, devices: count)
        }
        print(String(format: "%@ escrow, %d devices: sealing %.3f ms per device, storing %.3f ms per device (2 blobs each)",
                     f.scheme, f.devices, f.sealMilliseconds, f.storeMilliseconds))
    }
}
