import ArgumentParser
import ESPCore
import Foundation
import KeyCustody
import ProductionLine
import Provisioning
import Registry

/// `soak-audit` (hidden): the end-of-drill audit of `scripts/soak-provision` (``SoakAudit``).
struct SoakAuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak-audit", abstract: "Audit a soak drill: virtual devices against the plan and the registry, the identity pool, key bytes in files.",
        discussion: """
            Reads every virtual device folder given (flash and eFuses, as files; nothing is changed), \
            compares each device recorded provisioned with the manifest's plan (flash decrypted with \
            the chip's key, NVS rebuilt from the claimed identity's row with the device's NVS keys, \
            signatures checked against BLOCK2, nothing written outside the plan, eFuses as the \
            manifest asks), checks the registry's records and the identity pool, and searches every \
            file under --scan for the devices' keys (raw, hex, base64; the chips' flash.bin and \
            efuse.bin excepted). Prints the figures; exit 1 when a must-be-zero figure is not zero.
            """,
        shouldDisplay: false
    )

    @Option(help: "The production manifest the drill provisioned with.") var manifest: String
    @Option(help: "Registry: a SQLite file, sqlite:PATH or postgres://… (default: the manifest's).") var registry: String?
    @Option(name: .customLong("devices"), help: "A folder holding one virtual device folder per device (repeatable).") var deviceRoots: [String] = []
    @Option(name: .customLong("scan"), help: "A file or folder to search for key bytes (repeatable).") var scan: [String] = []
    @Option(name: .customLong("pool-rows"), help: "Identities in the values CSV (rows missing from the pool count as lost).") var poolRows: Int?
    @Option(name: .customLong("escrow-private"), help: "The line's escrow private key PEM: check that escrow recovers every provisioned device's keys.")
    var escrowPrivate: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let loaded = try ProvisionSetup.load(manifestPath: manifest)
        let folders = SoakAudit.deviceFolders(under: deviceRoots)
        guard !folders.isEmpty else { throw UsageError("no virtual device folders under --devices", hint: "give the folder holding the drill's device folders") }
        let reg = try await openRegistry(url: registry ?? loaded.registryURL)
        var audit = SoakAudit(job: loaded.job, registry: reg, secureBoot: loaded.sdkconfig.secureBootV2)
        if let escrowPrivate {
            audit.escrowKey = try EscrowPrivateKey.load(pem: try FileIO.readText(escrowPrivate, limit: .key))
        }
        let figures = try await audit.run(deviceFolders: folders, scanPaths: scan, poolRows: poolRows)
        try? await reg.close()
        if json {
            print(try Output.jsonLine(figures))
        } else {
            print(figures.text)
        }
        if !figures.mustBeZeroHold { throw ExitCode(1) }
    }
}
