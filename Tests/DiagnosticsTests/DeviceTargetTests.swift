import Diagnostics
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Preflight against a virtual device whose BLK2 was burned by Espressif's own espefuse
/// (`burn-key-digest` over the served device): the target facts read from `--state` and from
/// `espefuse summary --format json` must agree, and PF005 must follow the burned digest.
@Suite(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)))
struct DeviceTargetTests {
    /// Serves `state` on a free port while `body` runs.
    func served(_ state: String, _ body: (Int) throws -> Void) throws {
        let server = try DeviceServerProcess(state: state)
        defer { server.stop() }
        try body(server.port)
    }

    @Test func burnedDigestDrivesPF005ViaStateAndSummary() throws {
        let s = try Scenario.get()
        let root = try TestEnvironment.temporaryDirectory("espforge-pf-device")
        defer { try? FileManager.default.removeItem(at: root) }
        let state = root.appendingPathComponent("dev").path
        let created = try Espforge.run(["device", "create", "--state", state, "--flash-size", "4MB"])
        #expect(created.status == 0, "\(created.err)")
        let summary = root.appendingPathComponent("summary.json").path
        try served(state) { port in
            let base = ["--chip", "esp32", "--port", "socket://127.0.0.1:\(port)", "--before", "no-reset"]
            let burn = try Oracle.run("espefuse", base + ["--do-not-confirm", "burn-key-digest",
                                                          TestEnvironment.fixture("secure/rsa_secure_boot_signing_key.pem").path])
            #expect(burn.status == 0, "\(burn.out)\(burn.err)")
            let sum = try Oracle.run("espefuse", base + ["summary", "--format", "json", "--file", summary])
            #expect(sum.status == 0, "\(sum.err)")
        }
        let files: [(Int, String, [UInt8])] = [(0x1000, "bl.bin", s.bootloader4MB), (0x10000, "pt.bin", s.table),
                                                (0x60000, "a.bin", s.appSignedA), (0x210000, "b.bin", s.appSignedB)]
        var pairs: [String] = []
        for (addr, name, bytes) in files {
            let path = root.appendingPathComponent(name).path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            pairs += [String(format: "0x%x", addr), path]
        }
        for target in [["--state", state], ["--flash-size", "4MB", "--chip-rev", "3", "--efuse-summary", summary]] {
            let r = try Espforge.run(["preflight", "--json", "--partition-table-offset", "0x10000"] + target + pairs)
            #expect(r.status == 1, "\(r.err)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [String: Any])
            let findings = try #require(json["findings"] as? [[String: Any]])
            let pf005 = findings.filter { $0["code"] as? String == "PF005" }
            // Only the app signed with key 2 is refused; bootloader and key-1 app match BLK2.
            #expect(pf005.map { $0["address"] as? Int } == [0x210000], "\(target): \(findings)")
            let efuses = try #require((json["target"] as? [String: Any])?["efuses"] as? [String: Any])
            #expect(efuses["block2WriteProtected"] as? Bool == true)
            #expect((efuses["block2"] as? [Int])?.map { UInt8($0) } == Scenario.keyDigest(s.bootloader4MB))
        }
    }
}
