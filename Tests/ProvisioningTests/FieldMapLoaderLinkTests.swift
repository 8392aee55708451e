import BootSimulator
import EFuse
import ESPCore
import Flasher
import Foundation
import SecureBoot
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// Issue 17 §2: ``LoaderLink`` on ESP32-S3 / ESP32-C3 devices served by `espforge device serve`
/// over socket://, as a line drives real boards: identity, field-map eFuse burns with read-back,
/// writes checked against the chip's own facts, and the first boot of the ESP-IDF v5.2.2
/// hello-world builds (../shared/fixtures/espressif/chips) with on-chip Secure Boot V2 and flash
/// encryption, compared with the same device booted in this process.
@Suite("S3/C3 loader link (served devices)", .serialized)
struct FieldMapLoaderLinkTests {
    static let chips = ["esp32s3", "esp32c3"]
    static let folders = ["esp32s3": "ESP32_S3", "esp32c3": "ESP32_C3"]
    static let macs = ["esp32s3": "7c:df:a1:00:17:53", "esp32c3": "58:cf:79:00:17:c3"]
    static let enabled = Oracle.availableOrCI && TestEnvironment.fixturesOrCI

    struct Served {
        let dir: URL
        let server: DeviceServerProcess
        let target: LoaderTarget
        func stopAndLoad() throws -> Device {
            server.stop()
            return try DeviceStore(directory: dir.path).load()
        }
        func cleanup() {
            server.stop()
            try? FileManager.default.removeItem(at: dir)
        }
    }

    static func description(_ chip: String) throws -> DeviceDescription {
        DeviceDescription(chip: chip, chipRevision: 0, mac: try #require(macs[chip]), flashSize: 4 << 20)
    }

    /// A fresh device folder for `chip` (the sdkconfig remembered when given), served over TCP.
    /// The line's options: the ESP32 stub given (the link finds the chip's own), 921600 baud.
    static func serve(_ chip: String, sdkconfig: SDKConfig? = nil, extra: [String] = [], timeout: Double = 2) throws -> Served {
        let dir = try TestEnvironment.temporaryDirectory("espforge-fmlink")
        try DeviceStore(directory: dir.path).create(try Device.create(try description(chip)), force: true)
        if let sdkconfig { try sdkconfig.text.write(toFile: dir.path + "/sdkconfig", atomically: true, encoding: .utf8) }
        let server = try DeviceServerProcess(state: dir.path, extra: extra)
        var options = LoaderLinkOptions()
        options.session.baud = 921_600
        options.session.timeout = timeout
        let esp32Stub = try #require(StubImage.locate(), "esptool's stubs not found (install the oracle: ./scripts/test)")
        options.session.stub = try StubImage.parse(json: Array(try Data(contentsOf: URL(fileURLWithPath: esp32Stub))), source: esp32Stub)
        options.quietSeconds = 1
        return Served(dir: dir, server: server, target: LoaderTarget(port: server.url, options: options))
    }

    static func summary(_ words: EFuseBlockWords, _ chip: String) throws -> EFuseFieldMapSummary {
        EFuseFieldMapSummary(words: words, map: try #require(EFuseFieldMap.named(chip)))
    }

    @Test("identify: the chip's name, MAC, revision, flash and field-map eFuses; the ESP32 eFuse calls do not apply",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func identify(chip: String) throws {
        let served = try Self.serve(chip)
        defer { served.cleanup() }
        let link = try served.target.connect()
        defer { link.close() }
        let facts = try link.identify()
        #expect(facts.chip == chip)
        #expect(facts.mac == Self.macs[chip])
        #expect(facts.chipRevision == 0)
        #expect(facts.flashSize == 4 << 20 && facts.flashID == 0x1640EF)
        #expect(facts.fieldMap?.chip == chip)
        let words = try #require(facts.fieldMapEFuses)
        #expect(try Self.summary(words, chip).mac == Self.macs[chip])
        #expect(facts.efuses == EFuseArray(layout: .esp32), "an empty ESP32 array on an S3/C3")
        #expect(try link.readEFuses() == EFuseArray(layout: .esp32))
        #expect(throws: ProvisioningError.self) { try link.burn([.field(name: "JTAG_DISABLE", value: "1")]) }
    }

    @Test("burnFieldMap: a field and a key with its purpose, read back through the link and in the device's fuses",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func burnFieldAndKey(chip: String) throws {
        let served = try Self.serve(chip)
        defer { served.cleanup() }
        let link = try served.target.connect()
        let key = (0..<32).map { UInt8($0 * 7 + 3) }
        try link.burnFieldMap(.burn([(name: "DIS_PAD_JTAG", value: "1")]))
        try link.burnFieldMap(.burnKeys([FieldMapBurnPlanner.KeyRequest(block: "BLOCK_KEY2", data: key, purpose: "XTS_AES_128_KEY")],
                                        noReadProtect: false, noWriteProtect: false))
        let s = try Self.summary(try link.readFieldMapEFuses(), chip)
        #expect(s.field("DIS_PAD_JTAG")?.integer == 1)
        let k2 = try #require(s.keyBlocks.first { $0.index == 2 })
        #expect(k2.purposeName == "XTS_AES_128_KEY" && k2.readProtected && k2.writeProtected)
        // A burn the planner refuses (the block holds a key now) is refused before anything is sent.
        #expect(throws: FieldMapBurnError.self) {
            try link.burnFieldMap(.burnKeys([FieldMapBurnPlanner.KeyRequest(block: "BLOCK_KEY2", data: key, purpose: "XTS_AES_128_KEY")],
                                            noReadProtect: false, noWriteProtect: false))
        }
        link.close()
        // The chip holds the key as espefuse burns it (byte-reversed), though it reads as zero.
        let device = try served.stopAndLoad()
        let cells = try #require(device.cells)
        let map = try #require(EFuseFieldMap.named(chip))
        let block = try #require(FieldMapBurnPlanner.block(named: "BLOCK_KEY2", map: map))
        var bytes: [UInt8] = []
        for w in 0..<8 { bytes.appendLE(cells.word(block, w)) }
        #expect(bytes == key.reversed())
    }

    @Test("writes go to flash exactly as given, checked against the chip's own facts",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func writeRegions(chip: String) throws {
        let served = try Self.serve(chip)
        defer { served.cleanup() }
        let link = try served.target.connect()
        let folder = try #require(Self.folders[chip])
        let regions: [(name: String, offset: Int, bytes: [UInt8])] = [
            ("bootloader", 0, try TestEnvironment.fixtureBytes("chips/\(folder)/bootloader.bin")),
            ("partition-table", 0x8000, try TestEnvironment.fixtureBytes("chips/\(folder)/partition-table.bin")),
            ("app", 0x10000, try TestEnvironment.fixtureBytes("chips/\(folder)/hello_world.bin")),
        ]
        try link.write(regions)
        // A region past the end of the flash is refused by the rules, nothing written.
        #expect(throws: ProvisioningError.self) { try link.write([("too-far", (4 << 20) - 0x1000, [UInt8](repeating: 0, count: 0x2000))]) }
        link.close()
        let flash = try served.stopAndLoad().flash
        for r in regions { #expect(flash.read(r.offset, r.bytes.count) == r.bytes, "\(r.name)") }
        #expect(flash.read(0x7000, 0x1000) == [UInt8](repeating: 0xFF, count: 0x1000), "nothing between the regions")
    }

    /// Bootloader and app signed with key A (Secure Boot V2, one signature block), plus the table.
    static func signedRegions(_ chip: String) throws -> [(name: String, offset: Int, bytes: [UInt8])] {
        let folder = try #require(folders[chip])
        let key = try Scenarios.keyA()
        let boot = try SecureBootSigner.sign(image: try Scenarios.trimmed(try TestEnvironment.fixtureBytes("chips/\(folder)/bootloader.bin")),
                                             keys: [key], append: false, policy: .esp32s3).image
        let app = try SecureBootSigner.sign(image: try TestEnvironment.fixtureBytes("chips/\(folder)/hello_world.bin"),
                                            keys: [key], append: false, policy: .esp32s3).image
        return [("bootloader", 0, boot), ("partition-table", 0x8000, try TestEnvironment.fixtureBytes("chips/\(folder)/partition-table.bin")),
                ("app", 0x10000, app)]
    }

    @Test("first boot of the v5.2.2 hello world: on-chip Secure Boot and flash encryption, as in process with the same seed",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func firstBootOnChip(chip: String) throws {
        let sdk = SDKConfig.secure(release: false)
        let seed: UInt64 = 42
        let served = try Self.serve(chip, sdkconfig: sdk, extra: ["--rng-seed", String(seed)])
        defer { served.cleanup() }
        let regions = try Self.signedRegions(chip)
        let link = try served.target.connect()
        try link.write(regions)
        let report = try link.firstBoot(FirstBootRequest(readyLine: nil, timeout: 60, simulator: BootConfig()))
        #expect(report.booted, "\(report.reason ?? "")\n\(report.console)")
        #expect(report.bootedOffset == 0x10000)
        #expect(report.console.contains("secure boot verification succeeded"))
        #expect(report.console.contains("Resetting with flash encryption enabled"))
        // The link talks to the loader again afterwards (an S3 with Secure Boot on starts its stub
        // through the ROM's flash-read hook).
        let s = try Self.summary(try link.readFieldMapEFuses(), chip)
        #expect(s.security.secureBootEnabled)
        let crypt = try #require(s.field("SPI_BOOT_CRYPT_CNT")?.integer)
        #expect(crypt.nonzeroBitCount % 2 == 1)
        #expect(try link.identify().mac == Self.macs[chip])
        link.close()
        let served_ = try served.stopAndLoad()

        // The same device, flashed and booted in this process with the same seed.
        var local = try Device.create(try Self.description(chip))
        for r in regions {
            _ = local.flash.eraseSectors(r.offset, r.bytes.count, timing: .w25q32jv)
            _ = local.flash.program(r.offset, r.bytes, timing: .w25q32jv)
        }
        var config = BootConfig(sdkconfig: try SDKConfig.parse(sdk.text))
        config.rngSeed = seed
        let outcome = BootSimulator(config: config).boot(device: &local)
        #expect(outcome.booted)
        let servedCells = try #require(served_.cells), localCells = try #require(local.cells)
        #expect(servedCells == localCells, "the served device's eFuse words equal the in-process run's")
        #expect(served_.flash.bytes == local.flash.bytes, "and its flash (encrypted in place) too")
    }

    @Test("a burn whose bits do not stick (a stuck fuse on the served chip) is reported, naming the block",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func stuckFuseReported(chip: String) throws {
        let map = try #require(EFuseFieldMap.named(chip))
        let f = try #require(map.field(named: "DIS_PAD_JTAG"))
        let stuck = "efuse-stuck=\(f.block):\(f.startBit / 32):0x\(String(1 << (f.startBit % 32), radix: 16))"
        let served = try Self.serve(chip, extra: ["--faults", stuck])
        defer { served.cleanup() }
        let link = try served.target.connect()
        defer { link.close() }
        do {
            try link.burnFieldMap(.burn([(name: "DIS_PAD_JTAG", value: "1")]))
            Issue.record("the burn of a stuck fuse was not reported")
        } catch LinkError.burnDidNotStick(let blocks) {
            #expect(blocks == ["BLOCK0 (1 of 1 bits not set)"])
        }
        // What did stick is read back as it is (nothing), and other fuses still burn.
        #expect(try Self.summary(try link.readFieldMapEFuses(), chip).field("DIS_PAD_JTAG")?.integer == 0)
        try link.burnFieldMap(.burn([(name: "DIS_USB_JTAG", value: "1")]))
        #expect(try Self.summary(try link.readFieldMapEFuses(), chip).field("DIS_USB_JTAG")?.integer == 1)
    }

    @Test("flipped bits on the link do not make a burn look failed or succeed (readings must agree)",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func noisyLinkBurn(chip: String) throws {
        let served = try Self.serve(chip, extra: ["--faults", "flip=0.0005", "--seed", "7"], timeout: 0.5)
        defer { served.cleanup() }
        let link = try served.target.connect()
        let key = (0..<32).map { UInt8(0xA0 ^ $0) }
        try link.burnFieldMap(.burnKeys([FieldMapBurnPlanner.KeyRequest(block: "BLOCK_KEY1", data: key, purpose: "XTS_AES_128_KEY")],
                                        noReadProtect: true, noWriteProtect: false))
        let s = try Self.summary(try link.readFieldMapEFuses(), chip)
        #expect(s.keyBlocks.first { $0.index == 1 }?.purposeName == "XTS_AES_128_KEY")
        link.close()
        let device = try served.stopAndLoad()
        #expect(device.stats.faults.flippedBits > 0, "the link did flip bits")
        let map = try #require(EFuseFieldMap.named(chip))
        let block = try #require(FieldMapBurnPlanner.block(named: "BLOCK_KEY1", map: map))
        let cells = try #require(device.cells)
        var bytes: [UInt8] = []
        for w in 0..<8 { bytes.appendLE(cells.word(block, w)) }
        #expect(bytes == key.reversed())
    }

    @Test("on a serial line through the chip's USB-Serial-JTAG: the first boot follows the EN pulse, the loader comes back",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func firstBootOverUSBSerialJTAG(chip: String) throws {
        let sdk = SDKConfig.secure(release: false)
        let dir = try TestEnvironment.temporaryDirectory("espforge-fmlink-usb")
        defer { try? FileManager.default.removeItem(at: dir) }
        try DeviceStore(directory: dir.path).create(try Device.create(try Self.description(chip)), force: true)
        var options = LoaderLinkOptions()
        options.session.before = .usbReset
        options.session.timeout = 2
        options.quietSeconds = 1
        options.session.ports = VirtualPorts.opener(firmware: { _ in
            var c = BootConfig(sdkconfig: sdk)
            c.rngSeed = 9
            return VirtualFirmware.hook(config: c)
        })
        let link = try LoaderTarget(port: "virtual:\(dir.path)?lines=usb-jtag", options: options).connect()
        defer { link.close() }
        try link.write(try Self.signedRegions(chip))
        let report = try link.firstBoot(FirstBootRequest(readyLine: "main_task: Calling app_main()", timeout: 60, simulator: BootConfig()))
        #expect(report.booted, "\(report.reason ?? "")\n\(report.console)")
        #expect(report.console.contains("rst:0x1 (POWERON)"))
        let s = try Self.summary(try link.readFieldMapEFuses(), chip)
        #expect(s.security.secureBootEnabled && s.security.flashEncryptionEnabled)
    }

    @Test("a served S3/C3 without a remembered sdkconfig boots under the options its flash and eFuses show",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func noSDKConfigInferred(chip: String) throws {
        let served = try Self.serve(chip, extra: ["--rng-seed", "3"])
        defer { served.cleanup() }
        let link = try served.target.connect()
        defer { link.close() }
        try link.write(try Self.signedRegions(chip))
        let report = try link.firstBoot(FirstBootRequest(readyLine: nil, timeout: 60, simulator: BootConfig()))
        #expect(report.booted, "\(report.reason ?? "")\n\(report.console)")
        // A signed bootloader means Secure Boot V2; flash encryption is not inferred from flash alone.
        let s = try Self.summary(try link.readFieldMapEFuses(), chip)
        #expect(s.security.secureBootEnabled && !s.security.flashEncryptionEnabled)
    }

    @Test("another board put in its place between two connections gets nothing more (its MAC differs)", arguments: chips)
    func anotherBoardBetweenConnections(chip: String) throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-fmlink-swap")
        defer { try? FileManager.default.removeItem(at: dir) }
        try DeviceStore(directory: dir.path).create(try Device.create(try Self.description(chip)), force: true)
        var options = LoaderLinkOptions()
        options.session.before = .noReset
        let link = try LoaderTarget(port: "virtual:" + dir.path, options: options).connect()
        defer { link.close() }
        #expect(try link.identify().mac == Self.macs[chip])
        try link.burnFieldMap(.burn([(name: "DIS_PAD_JTAG", value: "1")]))   // the link reconnects after a burn
        let other = DeviceDescription(chip: chip, chipRevision: 0, mac: chip == "esp32s3" ? "7c:df:a1:99:99:99" : "58:cf:79:99:99:99")
        try DeviceStore(directory: dir.path).create(try Device.create(other), force: true)
        #expect(throws: FlasherError.self) { try link.write([("app", 0x10000, [UInt8](repeating: 0x5A, count: 0x1000))]) }
        #expect(try DeviceStore(directory: dir.path).load().flash.read(0x10000, 4) == [0xFF, 0xFF, 0xFF, 0xFF], "nothing written")
    }

    @Test("release first boot with Secure Download Mode: the eFuses can no longer be read; GET_SECURITY_INFO still tells the state",
          .enabled(if: enabled, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func secureDownloadModeAfterReleaseBoot(chip: String) throws {
        var sdk = SDKConfig.secure(release: true)
        sdk.secureROMDownload = true
        let served = try Self.serve(chip, sdkconfig: sdk, extra: ["--rng-seed", "5"])
        defer { served.cleanup() }
        let link = try #require(try served.target.connect() as? LoaderLink)
        defer { link.close() }
        #expect(try link.securityInfo()?.secureDownloadMode == false)
        try link.write(try Self.signedRegions(chip))
        let report = try link.firstBoot(FirstBootRequest(readyLine: nil, timeout: 60, simulator: BootConfig()))
        #expect(report.booted, "\(report.reason ?? "")\n\(report.console)")
        do {
            _ = try link.readFieldMapEFuses()
            Issue.record("register reads answered in Secure Download Mode")
        } catch {
            let message = (error as? any DiagnosticConvertible)?.diagnostic.message ?? "\(error)"
            #expect(message.contains("Secure Download Mode"), "\(message)")
        }
        let info = try #require(try link.securityInfo())
        #expect(info.chip?.name == chip)
        #expect(info.secureBootEnabled && info.secureDownloadMode && info.flashEncryptionEnabled)
        #expect(info.cryptCount == 0b111)
        #expect(info.revokedDigestSlots == [1, 2])
        #expect(info.keyPurposes.prefix(2) == [9, 4], "SECURE_BOOT_DIGEST0 in KEY0, XTS_AES_128_KEY in KEY1")
        link.close()
        // What the chip holds, read from its folder: the same state.
        let device = try served.stopAndLoad()
        let s = EFuseFieldMapSummary(words: try #require(device.cells), map: try #require(EFuseFieldMap.named(chip)))
        #expect(s.security.secureBootEnabled && s.security.spiBootCryptCnt == 0b111)
        #expect(s.security.revokedDigestSlots == info.revokedDigestSlots)
        #expect(s.keyBlocks.map(\.purpose).prefix(6) == info.keyPurposes.prefix(6))
    }
}
