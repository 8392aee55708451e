import Diagnostics
import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

/// The doctor with build artifacts, and both commands end to end.
@Suite(.enabled(if: TestEnvironment.fixturesOrCI && seedAvailable, "fixtures or seed log missing"))
struct CorrelationTests {
    @Test(arguments: [false, true])
    func rewrittenSignedBootloaderIsTracedToItsBuildHeader(rehash: Bool) throws {
        let s = try Scenario.get()
        let rewritten = try Scenario.rewriteHeader(s.bootloader8MB, size: "4MB", rehash: rehash)
        let result = HeaderForensics.analyzeSigned(rewritten)
        guard case let .headerRewritten(built, found, rehashed) = result.verdict else {
            Issue.record("expected a header rewrite, got \(result.verdict)")
            return
        }
        #expect(built.size == "8MB" && found.size == "4MB" && built.mode == "DIO" && built.frequency == "40m")
        #expect(rehashed == rehash)
        let report = Doctor.diagnose(logBytes: try seedLog(),
                                     artifacts: DoctorArtifacts(files: [PlanEntry(address: 0x1000, name: "bootloader.bin", bytes: rewritten)]))
        let p = try #require(report.primary)
        #expect(p.cause == "header rewritten after signing: built as DIO 40m 8MB, found as DIO 40m 4MB")
        #expect(p.correlation.contains { $0.contains("changed: size 8MB → 4MB") })
        #expect(HeaderForensics.analyzeSigned(s.bootloader8MB).verdict == .intact)
    }

    @Test func signedFileFromTheBuildIsComparedWithTheHeaderTheChipReports() throws {
        let s = try Scenario.get()
        // The build folder holds the bootloader as signed (8MB); the board printed 4MB.
        let report = Doctor.diagnose(logBytes: try seedLog(),
                                     artifacts: DoctorArtifacts(files: [PlanEntry(address: 0x1000, name: "bootloader.bin", bytes: s.bootloader8MB)]))
        let p = try #require(report.primary)
        #expect(p.cause == "header rewritten after signing: built as DIO 40m 8MB, found as DIO 40m 4MB")
        #expect(p.correlation.contains { $0.contains("reproduces the failure") })
        // A bootloader signed for 4MB matches what the chip reports: the header is not the story.
        let other = Doctor.diagnose(logBytes: try seedLog(),
                                    artifacts: DoctorArtifacts(files: [PlanEntry(address: 0x1000, name: "bootloader.bin", bytes: s.bootloader4MB)]))
        #expect(other.primary?.cause.contains("not the signed file") == true)
    }

    @Test func romSecureBootCheckFailIsCorrelatedToo() throws {
        let s = try Scenario.get()
        let log = "ets Jul 29 2019 12:21:46\nrst:0x10 (RTCWDT_RTC_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\nsecure boot check fail\nets_main.c 371\n"
        let rewritten = try Scenario.rewriteHeader(s.bootloader8MB, size: "4MB", rehash: true)
        let r = Doctor.diagnose(logBytes: Array(log.utf8), artifacts: DoctorArtifacts(files: [PlanEntry(address: 0x1000, name: "bl.bin", bytes: rewritten)]))
        #expect(r.primary?.rule == "DR004")
        #expect(r.primary?.cause == "header rewritten after signing: built as DIO 40m 8MB, found as DIO 40m 4MB")
        let intact = Doctor.diagnose(logBytes: Array(log.utf8), artifacts: DoctorArtifacts(files: [PlanEntry(address: 0x1000, name: "bl.bin", bytes: s.bootloader8MB)]))
        #expect(intact.primary?.cause == "Secure Boot is enabled and the ROM rejects the bootloader on flash")
        #expect(intact.primary?.correlation.contains { $0.contains("BLK2") } == true)
    }

    @Test func appAndKeyFindingsUseTheArtifacts() throws {
        let s = try Scenario.get()
        let appLog = "Sig block 0 invalid: Image digest does not match\nE (465) esp_image: Secure boot signature verification failed\nE (500) boot: OTA app partition slot 0 is not bootable\n"
        var tampered = s.appSignedA
        tampered[0x200] ^= 1
        let r = Doctor.diagnose(logBytes: Array(appLog.utf8), artifacts: DoctorArtifacts(files: [
            PlanEntry(address: 0x60000, name: "good.bin", bytes: s.appSignedA), PlanEntry(address: 0x210000, name: "bad.bin", bytes: tampered)]))
        #expect(r.primary?.rule == "DR002")
        #expect(r.primary?.correlation.contains { $0.hasPrefix("good.bin at 0x60000 is correctly signed") } == true)
        #expect(r.primary?.correlation.contains { $0.hasPrefix("bad.bin at 0x210000 fails its own signature check") } == true)
        let keyLog = "E (432) secure_boot_v2: No application key digest matches the bootloader key digest.\n"
        let k = Doctor.diagnose(logBytes: Array(keyLog.utf8), artifacts: DoctorArtifacts(files: [
            PlanEntry(address: 0x1000, name: "bl.bin", bytes: s.bootloader4MB), PlanEntry(address: 0x60000, name: "app.bin", bytes: s.appSignedB)]))
        #expect(k.primary?.correlation == ["bl.bin at 0x1000: block 0 key digest \(Scenario.keyDigest(s.bootloader4MB).hexString)",
                                           "app.bin at 0x60000: block 0 key digest \(Scenario.keyDigest(s.appSignedB).hexString)"])
    }

    @Test func otherSignedBytesChangedIsNotCalledAHeaderRewrite() throws {
        let s = try Scenario.get()
        var tampered = s.bootloader8MB
        tampered[0x100] ^= 0xFF
        #expect(HeaderForensics.analyzeSigned(tampered).verdict == .contentChanged)
        #expect(HeaderForensics.analyzeSigned(s.bootloaderUnsigned).verdict == .unsigned)
    }

    /// esptool itself rewrites the signed bootloader (merge-bin performs the write-flash header
    /// rewrite offline); the search must find the header it was signed with.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func esptoolRewriteIsFound() throws {
        let s = try Scenario.get()
        let dir = try TestEnvironment.temporaryDirectory("espforge-doctor")
        defer { try? FileManager.default.removeItem(at: dir) }
        let signed = dir.appendingPathComponent("bl8.bin").path
        let merged = dir.appendingPathComponent("merged.bin").path
        try Data(s.bootloader8MB).write(to: URL(fileURLWithPath: signed))
        let r = try Oracle.run("esptool", ["--chip", "esp32", "merge-bin", "--flash-size", "4MB", "-t", "0x1000", "-o", merged, "0x1000", signed])
        #expect(r.status == 0, "\(r.err)")
        let out = try [UInt8](Data(contentsOf: URL(fileURLWithPath: merged)))
        #expect(out[3] & 0xF0 == 0x20, "esptool rewrote the size nibble to 4MB")
        guard case let .headerRewritten(built, found, rehashed) = HeaderForensics.analyzeSigned(Array(out.prefix(s.bootloader8MB.count))).verdict else {
            Issue.record("esptool's rewrite not recognised")
            return
        }
        #expect(built.size == "8MB" && found.size == "4MB")
        #expect(rehashed, "esptool 5 recomputes the appended SHA-256")
    }

    // MARK: CLI

    func writeBuildDir(bootloader: [UInt8], flashSize: String) throws -> URL {
        let s = try Scenario.get()
        let dir = try TestEnvironment.temporaryDirectory("espforge-build")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("bootloader"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("partition_table"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("config"), withIntermediateDirectories: true)
        try Data(bootloader).write(to: dir.appendingPathComponent("bootloader/bootloader.bin"))
        try Data(s.table).write(to: dir.appendingPathComponent("partition_table/partition-table.bin"))
        try Data(s.appSignedA).write(to: dir.appendingPathComponent("app.bin"))
        let args = """
            {
                "write_flash_args" : [ "--flash_mode", "dio", "--flash_size", "\(flashSize)", "--flash_freq", "40m" ],
                "flash_settings" : { "flash_mode": "dio", "flash_size": "\(flashSize)", "flash_freq": "40m" },
                "flash_files" : { "0x1000" : "bootloader/bootloader.bin", "0x10000" : "partition_table/partition-table.bin", "0x60000" : "app.bin" },
                "bootloader" : { "offset" : "0x1000", "file" : "bootloader/bootloader.bin", "encrypted" : "false" },
                "extra_esptool_args" : { "after" : "hard_reset", "before" : "default_reset", "stub" : true, "chip" : "esp32" }
            }
            """
        try Data(args.utf8).write(to: dir.appendingPathComponent("flasher_args.json"))
        let sdk = "CONFIG_IDF_TARGET=\"esp32\"\nCONFIG_SECURE_BOOT_V2_ENABLED=y\n# CONFIG_SECURE_FLASH_ENC_ENABLED is not set\nCONFIG_PARTITION_TABLE_OFFSET=0x10000\nCONFIG_ESPTOOLPY_FLASHSIZE=\"8MB\"\n"
        try Data(sdk.utf8).write(to: dir.appendingPathComponent("config/sdkconfig"))
        return dir
    }

    @Test func buildDirectoryIsRead() throws {
        let s = try Scenario.get()
        let dir = try writeBuildDir(bootloader: s.bootloader8MB, flashSize: "4MB")
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try BuildDirectory.load(dir.path) { FileManager.default.contents(atPath: $0).map { [UInt8]($0) } }
        #expect(c.plan.entries.map(\.address) == [0x1000, 0x10000, 0x60000])
        #expect(c.plan.options == FlashOptions(mode: "dio", frequency: "40m", size: "4MB"))
        #expect(c.plan.partitionTableOffset == 0x10000)
        #expect(c.plan.sdkconfig?.secureBootV2 == true && c.plan.sdkconfig?.flashEncryption == false)
        #expect(c.chip == "esp32")
        #expect(throws: PreflightInputError.self) {
            try BuildDirectory.load(dir.path + "/nope") { FileManager.default.contents(atPath: $0).map { [UInt8]($0) } }
        }
    }

    @Test func preflightCommandStopsTheSeedAndPassesTheFix() throws {
        let s = try Scenario.get()
        let seedDir = try writeBuildDir(bootloader: s.bootloader8MB, flashSize: "4MB")
        defer { try? FileManager.default.removeItem(at: seedDir) }
        let bad = try Espforge.run(["preflight", "--build-dir", seedDir.path, "--chip", "esp32", "--flash-size", "4MB", "--chip-rev", "3", "--json"])
        #expect(bad.status == 1, "\(bad.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bad.stdout)) as? [String: Any])
        let findings = try #require(json["findings"] as? [[String: Any]])
        #expect(findings.contains { $0["code"] as? String == "PF001" && $0["severity"] as? String == "error" })
        #expect(json["passed"] as? Bool == false)

        let fixedDir = try writeBuildDir(bootloader: s.bootloader4MB, flashSize: "keep")
        defer { try? FileManager.default.removeItem(at: fixedDir) }
        let good = try Espforge.run(["preflight", "--build-dir", fixedDir.path, "--flash-size", "4MB", "--chip-rev", "3"])
        #expect(good.status == 0, "\(good.out)\(good.err)")
        #expect(good.out.contains("no findings"))
    }

    @Test func preflightAgainstAVirtualDeviceState() throws {
        let s = try Scenario.get()
        let dir = try TestEnvironment.temporaryDirectory("espforge-pf-state")
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("dev").path
        let created = try Espforge.run(["device", "create", "--state", state, "--chip-rev", "1", "--flash-size", "4MB"])
        #expect(created.status == 0, "\(created.err)")
        for (name, bytes) in [("bl.bin", s.bootloader4MB), ("pt.bin", s.table), ("app.bin", s.appSignedA)] {
            try Data(bytes).write(to: dir.appendingPathComponent(name))
        }
        let r = try Espforge.run(["preflight", "--state", state, "--partition-table-offset", "0x10000",
                                  "0x1000", dir.appendingPathComponent("bl.bin").path,
                                  "0x10000", dir.appendingPathComponent("pt.bin").path,
                                  "0x60000", dir.appendingPathComponent("app.bin").path])
        #expect(r.status == 1)
        #expect(r.out.contains("PF010") && r.out.contains("PF011"), "\(r.out)")
        #expect(r.out.contains("rev v1.0"))
        // --simulate: the static errors still decide the exit status; the state folder is not changed.
        let flashBefore = FileManager.default.contents(atPath: state + "/flash.bin")
        let simulate = try Espforge.run(["preflight", "--state", state, "--simulate", "0x1000", dir.appendingPathComponent("bl.bin").path])
        #expect(simulate.status == 1 && simulate.out.contains("simulated first power-on"), "\(simulate.out) \(simulate.err)")
        #expect(FileManager.default.contents(atPath: state + "/flash.bin") == flashBefore)
    }

    @Test func doctorCommandOnTheSeed() throws {
        let s = try Scenario.get()
        let dir = try TestEnvironment.temporaryDirectory("espforge-doctor-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("boot.log").path
        let bl = dir.appendingPathComponent("bootloader.bin").path
        try Data(try seedLog()).write(to: URL(fileURLWithPath: log))
        try Data(s.bootloader8MB).write(to: URL(fileURLWithPath: bl))
        let plain = try Espforge.run(["doctor", log])
        #expect(plain.status == 0)
        #expect(plain.out.contains("DR001") && plain.out.contains("--flash-size") && plain.out.contains("line 57: Sig block 0 invalid"), "\(plain.out)")
        let correlated = try Espforge.run(["doctor", log, "0x1000", bl, "--json"])
        #expect(correlated.status == 0, "\(correlated.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(correlated.stdout)) as? [String: Any])
        let primary = try #require(json["primary"] as? [String: Any])
        #expect(primary["cause"] as? String == "header rewritten after signing: built as DIO 40m 8MB, found as DIO 40m 4MB")
        let stdin = try Espforge.run(["doctor", "-"], stdin: try seedLog())
        #expect(stdin.status == 0 && stdin.out.contains("DR001"))
        let missing = try Espforge.run(["doctor", dir.appendingPathComponent("nope.log").path])
        #expect(missing.status == 1 && missing.err.contains("no such file"))
    }
}
