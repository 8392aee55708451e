import BootSimulator
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import Testing
import TestSupport
import VirtualDevice

/// Plans that are right must be predicted to boot even when no sdkconfig is given: the boot then
/// runs under the options the plan shows (table offset, Secure Boot V2 from a signed bootloader,
/// flash encryption from encrypted entries). Each plan is checked twice: `preflight --simulate`
/// with no sdkconfig, and the firmware a served device runs when it leaves its loader
/// (`VirtualFirmware.hook(config: nil)`, what `device serve` installs for a folder without one).
@Suite("Known-good plans boot without an sdkconfig (no false alarms)")
struct KnownGoodPlansTests {
    enum Plan: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// ESP-IDF v5.2.2 hello world as built (golden inputs): table at 0x8000, factory app.
        case idfDefaultLayout
        /// The seed's board: signed bootloader, table at 0x10000, signed app in two OTA slots.
        case seedBoardSigned
        /// The seed's layout, nothing signed.
        case seedBoardUnsigned
        /// Unsigned bootloader, table at 0x9000 (CONFIG_PARTITION_TABLE_OFFSET=0x9000).
        case customOffsetUnsigned
        /// Signed bootloader, table at 0xA000 (right behind the signature sector).
        case customOffsetSigned
        /// Host mode: the key burned and FLASH_CRYPT_CNT set first, the plan written encrypted.
        case hostEncrypted
        var testDescription: String { rawValue }

        var encrypted: Bool { self == .hostEncrypted }
    }

    static let defaultCSV = """
        nvs,      data, nvs,     0x9000,  0x6000
        phy_init, data, phy,     0xf000,  0x1000
        factory,  app,  factory, 0x10000, 0x100000
        """
    static let offset9000CSV = """
        nvs,      data, nvs,     0xa000,  0x5000
        phy_init, data, phy,     0xf000,  0x1000
        factory,  app,  factory, 0x10000, 0x100000
        """
    static let offsetA000CSV = """
        nvs,      data, nvs,     0xb000,  0x4000
        phy_init, data, phy,     0xf000,  0x1000
        factory,  app,  factory, 0x20000, 0x100000
        """

    /// The plan's (address, bytes) entries and the app partition expected to start.
    static func entries(_ plan: Plan) throws -> (entries: [(Int, [UInt8])], boots: String) {
        let key = try Scenarios.keyA()
        switch plan {
        case .idfDefaultLayout:
            func golden(_ name: String) throws -> [UInt8] {
                let url = TestEnvironment.sharedDir.appendingPathComponent("golden/qemu-esp32/inputs/" + name)
                guard let data = FileManager.default.contents(atPath: url.path) else {
                    throw TestSupportError.missing("golden input \(url.path)")
                }
                return [UInt8](data)
            }
            return ([(0x1000, try golden("sf-bootloader.bin")), (0x8000, try golden("sf-partition-table.bin")),
                     (0x10000, try golden("sf-hello_world.bin"))], "factory")
        case .seedBoardSigned, .hostEncrypted:
            let app = try Scenarios.app(key: key)
            return ([(0x1000, try Scenarios.signedBootloader(size: "4MB", key: key)), (0x10000, try Scenarios.table()),
                     (0x60000, app), (0x210000, app)], "ota_0")
        case .seedBoardUnsigned:
            let app = try Scenarios.app(key: nil)
            return ([(0x1000, try Scenarios.trimmed(try Scenarios.unsignedBootloader())), (0x10000, try Scenarios.table()),
                     (0x60000, app), (0x210000, app)], "ota_0")
        case .customOffsetUnsigned:
            return ([(0x1000, try Scenarios.trimmed(try Scenarios.unsignedBootloader())),
                     (0x9000, try Scenarios.table(csv: defaultOrCustom(plan), offset: 0x9000)),
                     (0x10000, try Scenarios.app(key: nil))], "factory")
        case .customOffsetSigned:
            return ([(0x1000, try Scenarios.signedBootloader(size: "4MB", key: key)),
                     (0xA000, try Scenarios.table(csv: defaultOrCustom(plan), offset: 0xA000)),
                     (0x20000, try Scenarios.app(key: key))], "factory")
        }
    }

    static func defaultOrCustom(_ plan: Plan) -> String {
        switch plan {
        case .customOffsetUnsigned: return offset9000CSV
        case .customOffsetSigned: return offsetA000CSV
        default: return defaultCSV
        }
    }

    /// A fixed test key for the host-encrypted plan (never a production key).
    static let hostKey: [UInt8] = (0..<32).map { UInt8(0xA0 &+ $0) }

    /// A blank rev 3 device; for the host-encrypted plan with its key burned and encryption armed.
    static func device(_ ws: Workspace, _ plan: Plan) throws -> String {
        let state = try ws.device("dev")
        if plan == .hostEncrypted {
            let keyFile = try ws.file("fe-key.bin", hostKey)
            for args in [["efuse", "burn-key", "flash_encryption", keyFile], ["efuse", "burn", "FLASH_CRYPT_CONFIG=0xF", "FLASH_CRYPT_CNT=1"]] {
                let r = try Espforge.run(args + ["--port", "virtual:" + state, "--yes"])
                guard r.status == 0 else { throw TestSupportError.missing("\(args): \(r.out) \(r.err)") }
            }
        }
        return state
    }

    @Test("preflight --simulate predicts the app runs", .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared"),
          arguments: Plan.allCases)
    func preflightSimulate(_ plan: Plan) throws {
        let ws = try Workspace("espforge-good-\(plan.rawValue)")
        let (entries, boots) = try Self.entries(plan)
        var pairs: [String] = []
        for (i, (address, bytes)) in entries.enumerated() {
            pairs += [NumberParsing.hex(address), try ws.file("part\(i).bin", bytes)]
        }
        let state = try Self.device(ws, plan)
        let r = try Espforge.run(["preflight", "--simulate", "--state", state, "--json"] + (plan.encrypted ? ["--encrypt"] : []) + pairs)
        let out = try JSONDecoder().decode(PreflightOutput.self, from: Data(r.stdout))
        let sim = try #require(out.simulation, "\(r.err)")
        #expect(sim.bootedPartition == boots, "\(sim.result ?? "") \(sim.reason ?? "")\n\(sim.bootLogs.joined())")
        #expect(r.status == 0, "exit \(r.status): \(out.findings.map { "\($0.code) \($0.message)" })")
        #expect(!sim.assumptions.isEmpty, "the inferred options are reported")
        let tableAddress = entries.first { $0.1.first == 0xAA }?.0 ?? -1
        #expect(sim.assumptions.contains { $0.contains("partition table found at \(NumberParsing.hex(tableAddress))") }, "\(sim.assumptions)")
        let signed = plan != .idfDefaultLayout && plan != .seedBoardUnsigned && plan != .customOffsetUnsigned
        #expect(sim.assumptions.contains { $0.contains("CONFIG_SECURE_BOOT_V2_ENABLED=y") } == signed, "\(sim.assumptions)")
        if plan == .hostEncrypted {
            #expect(sim.assumptions.contains { $0.contains("CONFIG_SECURE_FLASH_ENC_ENABLED=y") }, "\(sim.assumptions)")
            #expect(sim.encryptedRegions.isEmpty, "ciphertext written by the host: nothing left to encrypt")
        }
    }

    @Test("a served device without a remembered sdkconfig boots the same flash",
          .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared"), arguments: Plan.allCases)
    func servedDeviceFirmware(_ plan: Plan) throws {
        let ws = try Workspace("espforge-good-served-\(plan.rawValue)")
        let (entries, boots) = try Self.entries(plan)
        let state = try Self.device(ws, plan)
        var device = try DeviceStore(directory: state).load()
        let cipher = plan == .hostEncrypted ? try FlashCipher(chip: .esp32, key: Self.hostKey, flashCryptConfig: 0xF) : nil
        for (address, bytes) in entries {
            var data = bytes
            if let cipher {
                while data.count % 32 != 0 { data.append(0xFF) }
                data = try cipher.encrypt(data, at: address)
            }
            _ = device.flash.eraseSectors(address, data.count, timing: .w25q32jv)
            _ = device.flash.program(address, data, timing: .w25q32jv)
        }
        let notes = AssumptionLog()
        let run = VirtualFirmware.hook(config: nil, onInferred: { notes.add($0) })(&device)
        let console = String(decoding: run.console, as: UTF8.self)
        #expect(console.contains(VirtualFirmware.appStartLines[0]), "\(console)")
        let appOffset: Int
        switch plan {
        case .idfDefaultLayout, .customOffsetUnsigned: appOffset = 0x10000
        case .customOffsetSigned: appOffset = 0x20000
        default: appOffset = 0x60000
        }
        #expect(console.contains("Loaded app from partition at offset 0x\(String(appOffset, radix: 16))"), "\(boots): \(console)")
        #expect(!notes.all.isEmpty)
    }
}

final class AssumptionLog: @unchecked Sendable {
    private let lock = NSLock()
    private var notes: [String] = []
    func add(_ n: [String]) { lock.lock(); notes += n; lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return notes }
}
