import ESPCore
import Foundation

extension SoakAudit {
    /// The virtual device folders (those holding a device.json) directly under each of `roots`,
    /// sorted by name within a root; unreadable roots give none.
    public static func deviceFolders(under roots: [String]) -> [String] {
        var folders: [String] = []
        for root in roots {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            for name in names.sorted() where FileManager.default.fileExists(atPath: root + "/" + name + "/device.json") {
                folders.append(root + "/" + name)
            }
        }
        return folders
    }
}

extension SoakAudit.Figures {
    /// The figures as `espforge soak-audit` prints them: one per line, the must-be-zero ones
    /// marked, failure reasons by count, then the problems found (terminal-safe).
    public var text: String {
        var lines = [
            "devices                                  \(devices)",
            "provisioned                              \(provisioned)",
            "failed cleanly                           \(failedCleanly)",
        ]
        for (reason, n) in failureReasons.sorted(by: { $0.value > $1.value }) { lines.append("  \(n) × \(Diagnostic.terminalSafe(reason))") }
        lines += [
            "silent wrong writes (must be 0)          \(silentWrongWrites)",
            "identities claimed twice (must be 0)     \(identitiesClaimedTwice)",
            "identities lost (must be 0)              \(identitiesLost)",
            "  pool \(poolRows): \(identitiesFree) free, \(identitiesHeldByFailed) held by cleanly failed devices",
            "inconsistent records (must be 0)         \(inconsistentRecords)",
            "key bytes outside chip/escrow (must be 0) \(keyBytesOutside)",
            "escrow not recovering the keys (must be 0) \(escrowNotRecovering) of \(escrowChecked) checked",
            "boards refused by the line (must be 0)   \(refusedBoards)",
            "  \(keysSearched) keys searched in \(filesScanned) files, \(bytesScanned) bytes",
        ]
        for p in problems { lines.append("problem: " + Diagnostic.terminalSafe(p)) }
        return lines.joined(separator: "\n")
    }
}
