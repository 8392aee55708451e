import Foundation
import Partitions
import Testing
import TestSupport

@Suite struct PartitionsCLITests {
    func tempDir() throws -> URL { try TestEnvironment.temporaryDirectory("espforge-partitions") }

    @Test func buildShowRoundTripSeedTable() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("seed.csv").path
        let bin = dir.appendingPathComponent("seed.bin").path
        try seedCSV.write(toFile: csv, atomically: true, encoding: .utf8)
        let r = try Espforge.run(["partitions", "build", csv, "-o", bin, "--flash-size", "4MB"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err.isEmpty, "\(r.err)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: bin)))
        #expect(bytes.count == 0xC00)
        #expect(md5Hex(bytes) == "ecf189d79ae916cf505df02f6da7df10")

        let show = try Espforge.run(["partitions", "show", bin])
        #expect(show.status == 0, "\(show.err)")
        #expect(show.out.contains("ota_1,app,ota_1,0x210000,1664K,\n"))
        #expect(show.out.contains("nvs_key,data,nvs_keys,0x11000,4K,encrypted\n"))

        // The shown CSV builds the same binary.
        let csv2 = dir.appendingPathComponent("again.csv").path
        let bin2 = dir.appendingPathComponent("again.bin").path
        try show.out.write(toFile: csv2, atomically: true, encoding: .utf8)
        #expect(try Espforge.run(["partitions", "build", csv2, "-o", bin2]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: bin2)) == Data(bytes))

        let json = try Espforge.run(["partitions", "show", bin, "--json"])
        #expect(json.status == 0)
        let decoded = try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any]
        #expect(decoded?["md5"] as? String == "valid")
        let parts = decoded?["partitions"] as? [[String: Any]]
        #expect(parts?.count == 7)
        #expect(parts?[5]["offsetHex"] as? String == "0x00060000")
        #expect(parts?[0]["encrypted"] as? Bool == true)

        let check = try Espforge.run(["partitions", "check", csv, "--flash-size", "4MB"])
        #expect(check.status == 0 && check.out.contains("7 partitions"))
    }

    @Test func errorsNameFileAndLine() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("bad.csv").path
        try "# t\nnvs,data,nvs,0x9000,0x6000\nfactory,app,factory,0x18000,1M\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let r = try Espforge.run(["partitions", "build", csv, "-o", dir.appendingPathComponent("x.bin").path])
        #expect(r.status == 1)
        #expect(r.err.contains("bad.csv: line 3: partition 'factory' offset 0x18000 is not aligned to 0x10000"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("x.bin").path))

        let fits = try Espforge.run(["partitions", "check", csv, "--flash-size", "nonsense"])
        #expect(fits.status != 0)
    }

    @Test func warningsGoToStderr() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("warn.csv").path
        try "nvs,data,nvs,,0x6000,encrypted\nfactory,app,factory,,1M\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let r = try Espforge.run(["partitions", "build", csv, "-o", dir.appendingPathComponent("w.bin").path])
        #expect(r.status == 0)
        #expect(r.err.contains("warning: \(csv): line 1: nvs partition 'nvs' is flagged encrypted"), "\(r.err)")
    }

    @Test func showReportsCorruption() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var bytes = try build(seedCSV).binary
        bytes[0x45] ^= 0x10
        let bin = dir.appendingPathComponent("corrupt.bin").path
        try Data(bytes).write(to: URL(fileURLWithPath: bin))
        let r = try Espforge.run(["partitions", "show", bin])
        #expect(r.status == 1)
        #expect(r.err.contains("byte offset 224 (0xe0): MD5 of the entries does not match"), "\(r.err)")

        // The same table inside a flash dump, read with --at: error offsets are file offsets.
        let dump = dir.appendingPathComponent("dump.bin").path
        try Data([UInt8](repeating: 0xFF, count: 0x8000) + bytes + [UInt8](repeating: 0xFF, count: 0x2000))
            .write(to: URL(fileURLWithPath: dump))
        let d = try Espforge.run(["partitions", "show", dump, "--at", "0x8000"])
        #expect(d.status == 1 && d.err.contains("byte offset 32992 (0x80e0)"), "\(d.err)")
        var fixed = bytes
        fixed[0x45] ^= 0x10
        try Data([UInt8](repeating: 0xFF, count: 0x8000) + fixed).write(to: URL(fileURLWithPath: dump))
        let ok = try Espforge.run(["partitions", "show", dump, "--at", "0x8000"])
        #expect(ok.status == 0 && ok.out.contains("ota_0,app,ota_0,0x60000,1664K,"), "\(ok.err)")

        let noise = dir.appendingPathComponent("noise.bin").path
        try Data([0xAA, 0x50, 1, 2, 3]).write(to: URL(fileURLWithPath: noise))
        let t = try Espforge.run(["partitions", "show", noise])
        #expect(t.status == 1 && t.err.contains("ends inside an entry"), "\(t.err)")
    }

    @Test func otadataBuildAndShow() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ota = dir.appendingPathComponent("otadata.bin").path
        let r = try Espforge.run(["otadata", "build", "--boot", "ota_1", "-o", ota])
        #expect(r.status == 0, "\(r.err)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: ota)))
        #expect(bytes == Otadata.build(bootSlot: 1))

        let table = dir.appendingPathComponent("seed.bin").path
        try Data(try build(seedCSV).binary).write(to: URL(fileURLWithPath: table))
        let show = try Espforge.run(["otadata", "show", ota, "--table", table])
        #expect(show.status == 0, "\(show.err)")
        #expect(show.out.contains("copy 0 @0x0000: seq 2, state undefined, crc ok"), "\(show.out)")
        #expect(show.out.contains("boots: ota_1 (2 OTA app partition(s))"), "\(show.out)")

        let json = try Espforge.run(["otadata", "show", ota, "--ota-apps", "1", "--json"])
        let obj = try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any]
        #expect(obj?["boots"] as? String == "ota_0")
        #expect(obj?["activeCopy"] as? Int == 0)

        let blank = dir.appendingPathComponent("blank.bin").path
        #expect(try Espforge.run(["otadata", "build", "-o", blank]).status == 0)
        let s2 = try Espforge.run(["otadata", "show", blank, "--factory"])
        #expect(s2.out.contains("boots: factory"), "\(s2.out)")

        let missing = try Espforge.run(["otadata", "build", "--boot", "ota_2", "--table", table, "-o", blank])
        #expect(missing.status == 1 && missing.err.contains("no ota_2 partition"), "\(missing.err)")
        #expect(try Espforge.run(["otadata", "build", "--boot", "ota_1", "--table", table, "-o", blank]).status == 0)

        let bad = try Espforge.run(["otadata", "build", "--boot", "ota_16", "-o", blank])
        #expect(bad.status == 1 && bad.err.contains("not an OTA slot"))
        let short = dir.appendingPathComponent("short.bin").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: short))
        let s3 = try Espforge.run(["otadata", "show", short])
        #expect(s3.status == 1 && s3.err.contains("short.bin"), "\(s3.err)")
    }

    @Test(.enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures not found"))
    func bootloaderFitCheck() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("t.csv").path
        try "factory,app,factory,,1M\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let bl = TestEnvironment.fixture("images/bootloader_esp32_v5_2.bin").path // 0x6890 bytes
        #expect(try Espforge.run(["partitions", "check", csv, "--bootloader", bl]).status == 0)
        let r = try Espforge.run(["partitions", "check", csv, "--bootloader", bl, "--offset", "0x7000"])
        #expect(r.status == 1)
        #expect(r.err.contains("ends at 0x7890, past the partition table at 0x7000"), "\(r.err)")
    }

    @Test func helpHasExamples() throws {
        for cmd in [["partitions", "build"], ["partitions", "show"], ["partitions", "check"],
                    ["otadata", "build"], ["otadata", "show"]] {
            let r = try Espforge.run(cmd + ["--help"])
            #expect(r.out.contains("Example:"), "\(cmd)")
        }
    }
}
