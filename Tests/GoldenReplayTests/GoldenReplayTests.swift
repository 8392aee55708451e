import BootSimulator
import EFuse
import ESPCore
import Foundation
import Testing
import TestSupport
import VirtualDevice

/// Every boot scenario of the golden corpus replayed on the simulator: the same flash image
/// (built from the README's regions and inputs, checked against its sha256) and eFuse words,
/// `device boot --strapping 0x12`; espforge's console must equal the real ROM/bootloader console
/// line by line after the corpus normalisation, the outcome must be the real one, and eFuses and
/// flash must end as the real chip left them (unchanged, per every README).
@Suite("Golden replay: real ESP32 ECO3 ROM and ESP-IDF v5.2.2 bootloader (QEMU recordings)",
       .enabled(if: GoldenCorpus.availableOrCI, "golden corpus ../shared/golden/qemu-esp32 not found"))
struct GoldenReplayTests {
    enum Expected: Equatable, CustomStringConvertible {
        case app(offset: Int)
        case ramImage(entry: Int)
        case romHalted

        var description: String {
            switch self {
            case .app(let o): return "app at 0x\(String(o, radix: 16))"
            case .ramImage(let e): return "RAM image at 0x\(String(e, radix: 16))"
            case .romHalted: return "ROM stopped"
            }
        }
    }

    struct Scenario: Sendable {
        var name: String
        /// Address and corpus-relative path of each region (0xFF elsewhere).
        var regions: [(Int, String)]
    }

    /// One row per B* folder; the regions are what each README says was flashed.
    static let scenarios: [Scenario] = [
        Scenario(name: "B1-plain-hello", regions: [
            (0x1000, "inputs/sf-bootloader.bin"), (0x8000, "inputs/sf-partition-table.bin"), (0x10000, "inputs/sf-hello_world.bin"),
        ]),
        Scenario(name: "B2-fe-preencrypted", regions: [
            (0x1000, "B2-fe-preencrypted/inputs/bootloader.enc"), (0x8000, "B2-fe-preencrypted/inputs/partition-table.enc"),
            (0x10000, "B2-fe-preencrypted/inputs/hello_world.enc"),
        ]),
        Scenario(name: "B3-nosb-ramhello", regions: [(0x1000, "B3-nosb-ramhello/inputs/ramhello-unsigned.bin")]),
        Scenario(name: "B3-sbv2-rom-signed", regions: [(0x1000, "B3-sbv2-rom-signed/inputs/ramhello-signed.bin")]),
        Scenario(name: "B3-sbv2-rom-tampered", regions: [(0x1000, "B3-sbv2-rom-tampered/inputs/ramhello-tampered.bin")]),
        Scenario(name: "B3-sbv2-rom-unsigned", regions: [(0x1000, "B3-sbv2-rom-unsigned/inputs/ramhello-unsigned.bin")]),
        Scenario(name: "B3-sbv2-rom-untrusted", regions: [(0x1000, "B3-sbv2-rom-untrusted/inputs/ramhello-untrusted.bin")]),
        Scenario(name: "B4-seed-signed-rewritten", regions: [(0x1000, "B4-seed-signed-rewritten/inputs/bl8-signed-rewritten.bin")]),
    ]

    @Test("every B* folder of the corpus has a replay row")
    func everyScenarioIsReplayed() throws {
        let folders = try GoldenCorpus.scenarioFolders()
        #expect(!folders.isEmpty)
        #expect(folders == Self.scenarios.map(\.name).sorted(), "corpus folders \(folders)")
    }

    /// What the real log shows happened: an app loaded, a RAM image entered, or a ROM stop.
    static func realOutcome(_ lines: [String]) -> Expected? {
        if let loaded = lines.first(where: { $0.hasPrefix("I (T) boot: Loaded app from partition at offset 0x") }),
           let off = Int(loaded.split(separator: "x").last ?? "", radix: 16) {
            return .app(offset: off)
        }
        if lines.contains("secure boot verification failed") || lines.contains(where: { $0.hasPrefix("invalid header") }) {
            return .romHalted
        }
        if !lines.contains(where: { $0.contains("2nd stage bootloader") }),
           let entry = lines.first(where: { $0.hasPrefix("entry 0x") }), let e = Int(entry.dropFirst("entry 0x".count), radix: 16) {
            return .ramImage(entry: e)
        }
        return nil
    }

    static func outcome(_ o: BootOutcome) -> Expected? {
        switch o.result {
        case .appStarted: return o.bootedOffset.map { .app(offset: $0) }
        case .ramImageStarted: return o.ramImageEntry.map { .ramImage(entry: $0) }
        case .romHalted: return .romHalted
        default: return nil
        }
    }

    /// The scenario's device: 4 MiB flash (the image, sha256 checked against the README), rev 3,
    /// MAC 0, JEDEC id 0x1640c8, eFuse words from the README.
    static func device(_ s: Scenario) throws -> (Device, ScenarioReadme) {
        let readme = try ScenarioReadme(try GoldenCorpus.text("\(s.name)/README.md"))
        let image = GoldenCorpus.flashImage(try s.regions.map { ($0.0, try GoldenCorpus.bytes($0.1)) })
        #expect(GoldenCorpus.sha256(image) == readme.flashSHA256, "\(s.name): the flash image built from the inputs is not the recorded one")
        let efuses = try EFuseArray(layout: .esp32, bytes: readme.efuseBytes)
        let description = DeviceDescription(chipRevision: 3, mac: "00:00:00:00:00:00", flashSize: 4 << 20, flashID: 0x1640C8)
        return (Device(description: description, flash: NORFlash(contents: image), efuses: efuses), readme)
    }

    @Test("Espressif's bootloader fixtures are recognised as ESP-IDF bootloaders (not RAM images)",
          .enabled(if: TestEnvironment.fixturesOrCI, "Espressif fixtures not found"))
    func fixturesAreIDFBootloaders() throws {
        for path in ["images/bootloader_esp32.bin", "images/bootloader_esp32_v5_2.bin", "secure/bootloader_unsigned_v2.bin",
                     "secure/bootloader.bin", "chips/ESP32/bootloader.bin"] {
            let image = GoldenCorpus.flashImage([(0x1000, try TestEnvironment.fixtureBytes(path))])
            var device = Device(description: DeviceDescription(mac: "00:00:00:00:00:00"), flash: NORFlash(contents: image),
                                efuses: EFuseArray(layout: .esp32))
            let outcome = BootSimulator(config: BootConfig()).boot(device: &device)
            #expect(outcome.result != .ramImageStarted, "\(path)")
            #expect(outcome.log.contains { $0.text.contains("2nd stage bootloader") }, "\(path)")
        }
    }

    @Test("console, outcome, eFuses and flash equal the real chip's", arguments: scenarios.map(\.name))
    func replay(_ name: String) throws {
        let s = try #require(Self.scenarios.first { $0.name == name })
        var (device, readme) = try Self.device(s)
        let efusesBefore = device.efuses
        var config = BootConfig()
        config.strapping = BootConfig.qemuStrapping
        let outcome = BootSimulator(config: config).boot(device: &device)

        let real = LogNormaliser.lines(try GoldenCorpus.text("\(name)/real.normalised.log"))
        let mine = LogNormaliser.lines(outcome.consoleText)
        #expect(!real.isEmpty)
        for i in 0..<max(real.count, mine.count) {
            let r = i < real.count ? real[i] : "<none>"
            let m = i < mine.count ? mine[i] : "<none>"
            #expect(r == m, "\(name) line \(i + 1): real '\(r)', espforge '\(m)'")
            if r != m { break }
        }
        #expect(real.count == mine.count, "\(name): real \(real.count) lines, espforge \(mine.count)")

        let expected = try #require(Self.realOutcome(real), "\(name): the real log shows no outcome")
        #expect(Self.outcome(outcome) == expected, "\(name): espforge \(outcome.result.rawValue) \(outcome.reason ?? ""), real \(expected)")
        if case .ramImage(let entry) = expected {
            #expect(outcome.reason == "the ROM started a RAM image at 0x\(String(format: "%08x", entry)) (not an ESP-IDF bootloader)")
        }
        // Every README: "QEMU eFuse file unchanged", "Flash after boot: QEMU unchanged".
        #expect(readme.efuseWords.count == 31)
        #expect(device.efuses == efusesBefore, "\(name): eFuses changed, the real chip left them as they were")
        #expect(outcome.efusesBurned.isEmpty)
        #expect(GoldenCorpus.sha256(device.flash.bytes) == readme.flashSHA256, "\(name): flash changed, the real chip left it as it was")
    }
}
