import Foundation
import Testing
import TestSupport

/// Examples/LineDriver (product `espforge-example-line`, built with the package) provisions two
/// virtual devices through the library API and prints the registry rows.
@Suite("example program")
struct ExampleProgramTests {
    static var path: String {
        URL(fileURLWithPath: Espforge.path).deletingLastPathComponent().appendingPathComponent("espforge-example-line").path
    }

    @Test("Examples/LineDriver provisions two virtual devices", fixtures)
    func lineDriverProvisionsTwoDevices() throws {
        let work = try TestEnvironment.temporaryDirectory("espforge-example")
        defer { try? FileManager.default.removeItem(at: work) }
        let r = try ProcessRunner.run(Self.path, [TestEnvironment.sharedDir.appendingPathComponent("fixtures/espressif").path, work.path])
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        let rows = r.out.split(separator: "\n").map(String.init)
        #expect(rows.count == 2, "one registry row per device:\n\(r.out)")
        for row in rows {
            let f = row.split(separator: " ").map(String.init)
            let cryptCount = f.count == 5 ? Int(f[4].dropFirst("flash_crypt_cnt=".count)) : nil
            #expect(f.count == 5 && f[1] == "provisioned" && f[3] == "secure_boot=1", "\(row)")
            #expect(cryptCount.map { $0.nonzeroBitCount % 2 == 1 } == true, "flash encryption on: \(row)")
        }
        #expect(Set(rows.map { $0.split(separator: " ")[2] }) == ["SN-0001", "SN-0002"], "each device claimed its own identity")
        #expect(FileManager.default.fileExists(atPath: work.appendingPathComponent("registry.sqlite").path))
    }
}
