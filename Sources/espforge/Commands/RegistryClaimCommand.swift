import ArgumentParser
import Foundation
import Provisioning
import Registry

/// Hidden: claim identities from a pool for a run of MACs (loads the pool first if asked).
/// Used by the tests to run several claiming processes against one registry at once.
struct RegistryClaim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "claim", abstract: "Claim identities for devices (testing and recovery).",
        discussion: """
            Claims the next free identity of POOL for each MAC, atomically; a MAC that already \
            holds one gets it back. Prints one JSON object per claim.

            Example:
              espforge registry claim --pool line1 --mac 02:00:00:00:00:01 --count 10
            """,
        shouldDisplay: false
    )

    @OptionGroup var options: RegistryOptions
    @Option(help: "Identity pool.") var pool: String
    @Option(help: "First MAC; the next ones count up from it.") var mac: String
    @Option(help: "How many devices (consecutive MACs).") var count: Int = 1
    @Option(help: "Load this values CSV into the pool first.") var load: String?

    func run() async throws {
        guard count >= 1, count <= 100_000 else { throw ValidationError("--count must be 1…100000") }
        let macs = try RegistryReports.consecutiveMACs(from: mac, count: count)
        var rows: [IdentityRow]?
        if let load { rows = try IdentityPoolFile.rows(valuesCSV: try FileIO.readText(load, limit: .identityCSV), file: load) }
        let (pool, loadRows) = (self.pool, rows)
        try await withRegistry(try await options.open(create: true)) { reg in
            if let loadRows {
                let added = try await reg.loadIdentities(pool: pool, loadRows)
                FileHandle.standardError.write(Data("pool \(pool): \(added) identities added\n".utf8))
            }
            for m in macs {
                let claimed = try await reg.claimIdentity(pool: pool, mac: m)
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                print(String(decoding: try e.encode(claimed), as: UTF8.self))
            }
        }
    }
}
