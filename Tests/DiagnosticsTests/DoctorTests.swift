import Diagnostics
import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

func seedLog() throws -> [UInt8] {
    let dir = TestEnvironment.sharedDir.appendingPathComponent("seed")
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".txt") }.sorted()
    guard let first = files.first, let d = FileManager.default.contents(atPath: dir.appendingPathComponent(first).path) else {
        throw TestSupportError.missing("seed log in \(dir.path)")
    }
    return [UInt8](d)
}

var seedAvailable: Bool {
    FileManager.default.fileExists(atPath: TestEnvironment.sharedDir.appendingPathComponent("seed").path) || TestEnvironment.isCI
}

@Suite struct BootLogTests {
    @Test func cleansMonitorNoise() {
        let raw = "\u{1B}[0;32mI (31) boot: ESP-IDF v4.4 2nd stage bootloader\u{1B}[0m\r\n"
            + "rst:0x1 (POWERON_RESET),boot:0x1e (SPets Jul 29 2019 12:21:46\r\n"
            + "0x40080400: _init at ??:?\r\n"
            + "E (459) secure_boot_v2: Secure Boot V2 verification failed.\rnext\n"
        let log = BootLog(text: raw)
        let texts = log.lines.map(\.text)
        #expect(texts == ["I (31) boot: ESP-IDF v4.4 2nd stage bootloader", "rst:0x1 (POWERON_RESET),boot:0x1e (SP",
                          "ets Jul 29 2019 12:21:46", "0x40080400: _init at ??:?",
                          "E (459) secure_boot_v2: Secure Boot V2 verification failed.", "next"])
        #expect(log.lines[0].level == "I" && log.lines[0].timeMs == 31 && log.lines[0].tag == "boot")
        #expect(log.lines[0].message == "ESP-IDF v4.4 2nd stage bootloader")
        #expect(log.lines[3].isAnnotation)
        #expect(log.lines[4].level == "E" && log.lines[4].tag == "secure_boot_v2")
        #expect(log.lines[1].number == 2 && log.lines[2].number == 2)
    }

    @Test func randomBytesNeverCrash() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for n in 0..<40 {
            var bytes = rng.bytes(Int.random(in: 0...4000, using: &rng))
            // Sprinkle fragments that steer the parser into its interesting paths.
            let fragments = ["E (", "\u{1B}[", "ets Jul ", "0x4008: x at ", "rst:0x", "Image digest does not match",
                             "bootloader image appears invalid", "SPI Flash Size : ", "\r", "I (99) boot: SPI Mode : "]
            for _ in 0..<Int.random(in: 0...20, using: &rng) {
                let f = Array(fragments[Int.random(in: 0..<fragments.count, using: &rng)].utf8)
                let at = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
                bytes.insert(contentsOf: f, at: at)
            }
            let report = Doctor.diagnose(logBytes: bytes)
            #expect(report.linesRead >= 0, "seed \(seed) case \(n)")
        }
    }
}

@Suite(.enabled(if: seedAvailable, "seed log (../shared/seed) missing"))
struct SeedDiagnosisTests {
    @Test func seedAloneNamesHeaderRewriteAndTheToolOptions() throws {
        let report = Doctor.diagnose(logBytes: try seedLog())
        let p = try #require(report.primary)
        #expect(p.rule == "DR001")
        #expect(p.cause.contains("header was rewritten after signing"))
        #expect(p.explanation.contains("--flash-size") && p.explanation.contains("--flash-mode") && p.explanation.contains("--flash-freq"))
        #expect(p.explanation.contains("`keep`") && p.explanation.contains("0x1000"))
        #expect(p.explanation.contains("DIO, 40m, 4MB"))
        #expect(p.fix.contains { $0.contains("--flash-size keep") })
        #expect(p.fix.contains { $0.contains("one bootloader per flash size") })
        #expect(p.fix.contains { $0.contains("no eFuse was burned") })
        let quoted = p.evidence.map(\.text)
        #expect(quoted.contains("Sig block 0 invalid: Image digest does not match"))
        #expect(quoted.contains("E (486) secure_boot_v2: bootloader image appears invalid! error 8194"))
        #expect(quoted.contains("I (38) boot.esp32: SPI Flash Size : 4MB"))
        // The consequence is listed, ranked below.
        #expect(report.findings.contains { $0.rule == "DR018" })
        #expect(!report.findings.contains { $0.rule == "DR002" })
        // The interleaved double ROM banner of one power-on is not a boot loop.
        #expect(!report.findings.contains { $0.rule == "DR019" })
    }

    @Test func seedSurvivesMonitorNoise() throws {
        let text = String(decoding: try seedLog(), as: UTF8.self)
        var noisy = ""
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let colour = line.hasPrefix("E ") ? "\u{1B}[0;31m" : line.hasPrefix("W ") ? "\u{1B}[0;33m" : "\u{1B}[0;32m"
            noisy += colour + line + "\u{1B}[0m\r\n"
            if i % 17 == 0 { noisy += "0x400d1234: app_main at /project/main/main.c:42\r\n" }
        }
        let report = Doctor.diagnose(logBytes: Array(noisy.utf8))
        #expect(report.primary?.rule == "DR001")
        #expect(report.primary?.evidence.contains { $0.text == "Sig block 0 invalid: Image digest does not match" } == true)
    }

    @Test func truncatedSeedNeverCrashes() throws {
        let bytes = try seedLog()
        var rng = SeededRandom(seed: testSeed())
        for _ in 0..<30 {
            let cut = Int.random(in: 0...bytes.count, using: &rng)
            _ = Doctor.diagnose(logBytes: Array(bytes.prefix(cut)))
        }
    }
}

/// Hand-written logs in ESP-IDF's and the ROM's exact wording, one per rule.
@Suite struct DoctorRuleTests {
    static let cases: [(rule: String, log: String)] = [
        ("DR002", """
            I (341) esp_image: Verifying image signature...
            I (343) secure_boot_v2: Verifying with RSA-PSS...
            Sig block 0 invalid: Image digest does not match
            E (459) secure_boot_v2: Secure Boot V2 verification failed.
            E (465) esp_image: Secure boot signature verification failed
            I (470) esp_image: Calculating simple hash to check for corruption...
            W (486) esp_image: image valid, signature bad
            E (500) boot: OTA app partition slot 0 is not bootable
            E (898) boot: No bootable app partitions in the partition table
            """),
        ("DR003", """
            I (432) secure_boot_v2: enabling secure boot v2...
            E (432) secure_boot_v2: No application key digest matches the bootloader key digest.
            I (434) efuse: Batch mode of writing fields is cancelled
            E (435) boot: Secure Boot v2 failed (-1)
            E (435) boot: Factory app partition is not bootable
            E (436) boot: No bootable app partitions in the partition table
            """),
        ("DR004", """
            ets Jul 29 2019 12:21:46

            rst:0x10 (RTCWDT_RTC_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)
            secure boot check fail
            ets_main.c 371
            """),
        ("DR005", """
            I (414) secure_boot_v2: enabling secure boot v2...
            I (414) efuse: Batch mode of writing fields is enabled
            I (491) efuse: Batch mode of writing fields is cancelled
            E (496) boot: Secure Boot v2 failed (262)
            E (500) boot: OTA app partition slot 0 is not bootable
            """),
        ("DR006", """
            I (31) boot: chip revision: 1
            E (74) boot_comm: Image requires chip rev >= v3.0, but chip is v1.0
            E (80) boot: Factory app partition is not bootable
            E (86) boot: No bootable app partitions in the partition table
            """),
        ("DR007", """
            E (123) boot_comm: mismatch chip ID, expected 0, found 9
            E (130) boot: Factory app partition is not bootable
            """),
        ("DR008", """
            E (345) esp_image: Image length 1900544 doesn't fit in partition length 1703936
            E (350) boot: OTA app partition slot 0 is not bootable
            """),
        ("DR009", """
            I (76) boot: SPI Flash Size : 4MB
            E (80) flash_parts: partition 0 invalid magic number 0x94f6
            E (86) boot: Failed to verify partition table
            E (91) boot: load partition table error!
            """),
        ("DR010", """
            rst:0x3 (SW_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)
            flash read err, 1000
            ets_main.c 371
            ets Jun  8 2016 00:22:57
            """),
        ("DR011", """
            rst:0x3 (SW_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)
            invalid header: 0xb414f76b
            invalid header: 0xb414f76b
            """),
        ("DR012", """
            rst:0x10 (RTCWDT_RTC_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)
            invalid header: 0xffffffff
            invalid header: 0xffffffff
            """),
        ("DR013", """
            I (109) boot: End of partition table
            E (113) esp_image: image at 0x20000 has invalid magic byte
            W (120) esp_image: image at 0x20000 has invalid SPI mode 108
            W (126) esp_image: image at 0x20000 has invalid SPI size 11
            E (132) boot: Factory app partition is not bootable
            E (138) boot: No bootable app partitions in the partition table
            """),
        ("DR014", """
            I (512) cpu_start: Starting scheduler on PRO CPU.
            W (530) nvs: Failed to read NVS security cfg: [0x1116] (ESP_ERR_NVS_KEYS_NOT_INITIALIZED)
            I (531) nvs: Generating NVS encr-keys...
            """),
        ("DR015", """
            E (345) esp_image: Checksum failed. Calculated 0x3c read 0xfc
            E (350) boot: Factory app partition is not bootable
            """),
        ("DR016", """
            E (486) esp_image: Image hash failed - image is corrupt
            E (500) boot: Factory app partition is not bootable
            """),
        ("DR017", """
            I (700) wifi:mode : sta (24:0a:c4:12:34:56)

            Brownout detector was triggered

            ets Jul 29 2019 12:21:46
            """),
        ("DR018", """
            I (109) boot: End of partition table
            E (138) boot: No bootable app partitions in the partition table
            """),
        ("DR019", """
            ets Jul 29 2019 12:21:46
            rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)
            Guru Meditation Error: Core  0 panic'ed (LoadProhibited)
            ets Jul 29 2019 12:21:46
            rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)
            Guru Meditation Error: Core  0 panic'ed (LoadProhibited)
            ets Jul 29 2019 12:21:46
            rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)
            """),
    ]

    @Test(arguments: cases.map(\.rule))
    func ruleFiresAsPrimaryOnItsLog(rule: String) throws {
        let log = try #require(Self.cases.first { $0.rule == rule }).log
        let report = Doctor.diagnose(logBytes: Array(log.utf8))
        #expect(report.primary?.rule == rule, "got \(report.findings.map(\.rule))")
        #expect(report.primary?.evidence.isEmpty == false)
        #expect(report.primary?.fix.isEmpty == false)
    }

    @Test func everyRuleHasATestLogAndAUniqueID() {
        let ids = DoctorRules.all.map(\.id)
        #expect(Set(ids).count == ids.count)
        #expect(Set(ids).subtracting(Self.cases.map(\.rule)) == ["DR001"]) // DR001: the seed tests
    }

    @Test func emptySlotIsNotAnEncryptionMixUp() throws {
        let log = """
            E (338) esp_image: image at 0x150000 has invalid magic byte (nothing flashed here?)
            E (344) boot: OTA app partition slot 1 is not bootable
            """
        let f = try #require(Doctor.diagnose(logBytes: Array(log.utf8)).findings.first { $0.rule == "DR013" })
        #expect(f.cause == "an app partition does not hold an image")
        #expect(f.priority < 55)
    }

    /// Older (IDF v4.x) and OTA wordings of the same failures.
    @Test func alternativeWordings() {
        let v4 = "E (766) boot_comm: can't run on lower chip revision, expected 1, found 0\n"
        #expect(Doctor.diagnose(logBytes: Array(v4.utf8)).primary?.rule == "DR006")
        let ota = "E (5123) esp_https_ota: Mismatch chip id, expected 0, found 9\n"
        #expect(Doctor.diagnose(logBytes: Array(ota.utf8)).primary?.rule == "DR007")
        let bod = "E BOD: Brownout detector was triggered\n"
        #expect(Doctor.diagnose(logBytes: Array(bod.utf8)).primary?.rule == "DR017")
    }

    @Test func quietLogHasNoFindings() {
        let log = "I (31) boot: ESP-IDF v4.4 2nd stage bootloader\nI (357) boot: Loaded app from partition at offset 0x10000\n"
        #expect(Doctor.diagnose(logBytes: Array(log.utf8)).findings.isEmpty)
    }

    @Test func extendingTheTableIsData() {
        let custom = DoctorRule(id: "X001", name: "custom", priority: 1000, required: [[.logged(level: "E", contains: "my failure")]],
                                cause: "custom cause", explanation: "…", fix: ["…"])
        let report = Doctor.diagnose(log: BootLog(text: "E (1) app: my failure here\n"), rules: DoctorRules.all + [custom])
        #expect(report.primary?.rule == "X001")
    }
}
