import ESPCore
import Foundation
import Registry
import Testing
import TestSupport

/// The registry's reports through the library (what `espforge registry list/show/export/pool` print).
@Suite("RegistryReports: list, show, CSV, pools")
struct RegistryReportsTests {
    @Test func reportsOfARegistryAsTextAndCSV() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-reports")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("r.sqlite").path
        // Reading never creates a registry.
        await #expect(throws: UsageError.self) { _ = try await RegistryReports.open(path) }
        let reg = try await RegistryReports.open(path, create: true)
        let hash = String(repeating: "ab", count: 32)
        try await reg.register(DeviceFacts(mac: "24:0a:c4:00:00:01", chip: "esp32", chipRevision: 3, flashSize: 4 << 20,
                                           station: "st,1", imageHashes: ["app": hash]))
        try await reg.register(DeviceFacts(mac: "24:0a:c4:00:00:02", chip: "esp32"))
        try await reg.recordStep(mac: "24:0a:c4:00:00:01", step: "write") { }
        try await reg.finish(mac: "24:0a:c4:00:00:02", status: .failed, efuseSummary: nil, failure: "no \"sync\"")

        let all = try await RegistryReports.list(reg)
        #expect(all.map(\.mac) == ["24:0a:c4:00:00:01", "24:0a:c4:00:00:02"])
        #expect(all[0].lastSafeStep == "write" && all[1].lastSafeStep == nil)
        #expect(try await RegistryReports.list(reg, status: .failed).map(\.mac) == ["24:0a:c4:00:00:02"])
        let text = RegistryReports.listText(all).split(separator: "\n").map(String.init)
        #expect(text[0].hasPrefix("MAC                STATUS       IDENTITY  STATION  LAST SAFE STEP  UPDATED"))
        #expect(text.last == "2 device(s): 1 in_progress, 0 provisioned, 1 failed, 0 rma")

        // CSV: one row per device; commas and quotes quoted, maps as JSON objects in a cell.
        let csv = RegistryReports.csv(try await RegistryReports.export(reg, withSteps: false)).split(separator: "\n").map(String.init)
        #expect(csv.count == 3 && csv[0] == RegistryReports.csvHeader)
        #expect(csv[1].hasPrefix("24:0a:c4:00:00:01,in_progress,esp32,3,,4194304,\"st,1\",,,,\"{\"\"app\"\":\"\"\(hash)\"\"}\",{},{},,"))
        #expect(csv[2].contains(",\"no \"\"sync\"\"\","))

        let shown = try await RegistryReports.show(reg, mac: "24:0a:c4:00:00:01")
        #expect(shown.steps?.map(\.step) == ["write"])
        let show = RegistryReports.showText(shown)
        #expect(show.contains("Chip      esp32 rev 3") && show.contains("Flash     4 MB"))
        #expect(show.contains("Images (SHA-256):\n  app = \(hash)") && show.contains("Steps:\n  #  STEP   OUTCOME"))
        await #expect(throws: RegistryError.self) { _ = try await RegistryReports.show(reg, mac: "24:0a:c4:00:00:09") }

        let pool = try await RegistryReports.pool(reg, pool: "p", load: [IdentityRow(id: "A", ordinal: 1), IdentityRow(id: "B", ordinal: 2)])
        #expect(pool.pool == "p" && pool.added == 2 && pool.total == 2 && pool.claimed == 0)
        _ = try await reg.claimIdentity(pool: "p", mac: "24:0a:c4:00:00:01")
        let again = try await RegistryReports.pool(reg, pool: "p", load: [])
        #expect(again.text(loaded: false) == "pool p: 2 identities, 1 claimed, 1 free")
        #expect(pool.text(loaded: true) == "pool p: 2 identities added\npool p: 2 identities, 0 claimed, 2 free")
        try await reg.close()
    }

    @Test func consecutiveMACsAndStatusNames() throws {
        #expect(try RegistryReports.consecutiveMACs(from: "02:00:00:00:00:ff", count: 3) == ["0200000000ff", "020000000100", "020000000101"])
        #expect(try RegistryReports.consecutiveMACs(from: "ff:ff:ff:ff:ff:ff", count: 2) == ["ffffffffffff", "000000000000"])
        #expect(throws: UsageError.self) { try RegistryReports.consecutiveMACs(from: "02:00", count: 1) }
        #expect(try RegistryReports.status("rma") == .rma)
        #expect(throws: UsageError.self) { try RegistryReports.status("done") }
    }
}
