import BootSimulator
import Crypto
import EFuse
import ESPCore
import Foundation
import ImageFormat
import Manifest
import Partitions
import SecureBoot
import Testing
import TestSupport
import VirtualDevice
@testable import ProductionLine

/// `espforge demo --chip`: the firmware synthesized per chip (``DemoChip``) is what an ESP-IDF
/// build for the chip looks like to esptool, and it boots on a virtual device of the chip with
/// Secure Boot V2 and flash encryption enabled on chip.
@Suite("Demo firmware per chip")
struct DemoChipTests {
    static func sha(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    /// The ESP32 demo's files as they were before the chip choice (espforge e978218).
    @Test func esp32DemoIsUnchanged() throws {
        #expect(Self.sha(try DemoFirmware.bootloader()) == "b41ace29f939efcc52862d2886563f45a3d19249a97f5972af60ef970594d756")
        #expect(Self.sha(try DemoFirmware.app()) == "a9854abb12c07139d156c0447f16253388d3b02e48fb15dff2e17bab7cd1ab64")
        #expect(Self.sha(try DemoLine.partitionTable(.esp32)) == "5561270d3316e872853e46bc869f44ad3b97ea4dfa3c061f08c966892f169263")
        #expect(Self.sha(Array(DemoFirmware.sdkconfig.utf8)) == "229aa62780054a76d96f5c031aa43a86f6df117a58b53331d61d7faf947bbf89")
        let toml = DemoLine.manifest(mode: .host).toml(header: [DemoFolder.generatedManifestMarker])
        #expect(Self.sha(Array(toml.utf8)) == "c804cdc325661e3daefb8fd40125f407609f31beabe5d3e7405238464b729c10")
        let options = try DemoLine.Options(devices: 4, dir: "demo-out")
        #expect(DemoLine.headline(options) == "4 virtual ESP32 rev 3 (4MB)")
        #expect(try DemoLine.deviceDescription(.esp32, index: 0, state: "x") == DeviceDescription(mac: Device.defaultMAC(seed: 7919)))
    }

    static let chips: [DemoChip] = [.esp32s3, .esp32c3]

    @Test func chipOptionAndTable() throws {
        #expect(DemoChip.all.map(\.spec.name) == ["esp32", "esp32s3", "esp32c3"])
        #expect(DemoChip.named("ESP32-C3")?.spec.name == "esp32c3")
        #expect(throws: UsageError.self) { try DemoLine.Options(devices: 1, dir: "x", chip: "esp32c6") }
        let s3 = try DemoLine.Options(devices: 2, dir: "x", chip: "esp32s3")
        #expect(DemoLine.headline(s3) == "2 virtual ESP32-S3 rev v0.2 (4MB)")
        let c3 = try DemoLine.Options(devices: 1, dir: "x", chip: "esp32c3")
        #expect(DemoLine.headline(c3) == "1 virtual ESP32-C3 rev v0.4 (4MB)")
        #expect(DemoFirmware.sdkconfig(for: .esp32c3).hasPrefix("CONFIG_IDF_TARGET=\"esp32c3\"\nCONFIG_SECURE_BOOT=y\n"))
    }

    /// Segments where an ESP-IDF build for the chip has them; the table fits 4 MB behind the
    /// bootloader at 0x0; the manifest names the chip, its bootloader offset and eFuse names.
    @Test(arguments: chips) func imagesHaveTheChipsLayout(_ chip: DemoChip) throws {
        let boot = try ESPImage(try DemoFirmware.bootloader(chip))
        let app = try ESPImage(try DemoFirmware.app(chip, codeSize: 200 * 1024))
        #expect(boot.chipID == chip.spec.imageChipID && app.chipID == chip.spec.imageChipID)
        #expect(boot.entryPoint == chip.bootloaderEntry && app.entryPoint == chip.appEntry)
        #expect(boot.minRevisionFull == chip.imageMinRevisionFull && boot.maxRevisionFull == chip.imageMaxRevisionFull)
        func types(_ image: ESPImage) -> [String] { image.segments.map { $0.memoryTypes.joined(separator: ",") } }
        #expect(types(boot).allSatisfy { $0.contains("DRAM") || $0.contains("IRAM") }, "\(types(boot))")
        #expect(boot.bootloaderDescriptor?.idfVersion == "v5.2-demo" && app.appDescriptor != nil)
        let appTypes = types(app)
        #expect(appTypes.contains("DROM") && appTypes.contains("IROM") && appTypes.contains { $0.contains("IRAM") })
        // 200 KiB of code take four 64 KiB pages from 0x42000000: the read-only data follows them.
        #expect(app.segments.contains { $0.loadAddress == 0x3C04_0020 })
        #expect(app.segments.contains { $0.loadAddress == 0x4200_0020 })
        let elf = try ELFFile(DemoFirmware.appELF(chip))
        #expect(elf.machine == chip.elfMachine)

        let table = try PartitionTable.parse(binary: try DemoLine.partitionTable(chip, bootloaderSize: 0x10000 - chip.spec.bootloaderOffset)).table
        #expect(table.entries.allSatisfy { Int($0.offset) + Int($0.size) <= 4 << 20 })
        let m = DemoLine.manifest(mode: .onChip, chip: chip)
        #expect(m.chip.type == chip.spec.name && m.images.bootloader?.offset == 0 && m.chip.minRevision == 0)
        #expect(m.chip.flashFreq == "80m")
        let map = try #require(VirtualChip.named(chip.spec.name)?.efuseMap)
        #expect(m.efuse.burn.allSatisfy { map.field(named: $0) != nil }, "\(m.efuse.burn)")
        // The manifest as written parses back.
        let parsed = try Manifest.parse(m.toml(header: [DemoFolder.generatedManifestMarker]))
        #expect(parsed.chip.type == chip.spec.name && parsed.efuse.burn == chip.finalBurn)
    }

    /// esptool 5.6.0 builds the same images from the demo's ELF files, and `image-info` accepts
    /// them (checksum and SHA-256 valid, the chip's name, the descriptors), as `espforge image info` does.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func esptoolBuildsAndAcceptsTheImages(_ chip: DemoChip) throws {
        let dir = try TestEnvironment.temporaryDirectory("demo-\(chip.spec.name)")
        defer { try? FileManager.default.removeItem(at: dir) }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let cases: [(name: String, elf: [UInt8], image: [UInt8], extra: [String], info: String)] = [
            ("bootloader", DemoFirmware.bootloaderELF(chip), try DemoFirmware.bootloader(chip), [], "Bootloader Information"),
            ("app", DemoFirmware.appELF(chip, codeSize: 64 * 1024), try DemoFirmware.app(chip, codeSize: 64 * 1024),
             ["--secure-pad-v2"], "Application Information"),
        ]
        for c in cases {
            try Data(c.elf).write(to: URL(fileURLWithPath: path(c.name + ".elf")))
            try Data(c.image).write(to: URL(fileURLWithPath: path(c.name + ".bin")))
            let built = try Oracle.run("esptool", ["--chip", chip.spec.name, "elf2image", "--flash-mode", chip.flashMode,
                                                   "--flash-freq", chip.flashFrequency, "--flash-size", "4MB",
                                                   "--min-rev-full", String(chip.imageMinRevisionFull),
                                                   "--max-rev-full", String(chip.imageMaxRevisionFull),
                                                   "--min-rev", String(chip.imageMinRevision),
                                                   "-o", path(c.name + "-esptool.bin"), path(c.name + ".elf")] + c.extra)
            #expect(built.status == 0, "\(built.out)\(built.err)")
            #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path(c.name + "-esptool.bin")))) == c.image, "\(c.name)")

            let info = try Oracle.run("esptool", ["image-info", path(c.name + ".bin")])
            #expect(info.status == 0, "\(info.err)")
            #expect(info.out.contains("Chip ID: \(chip.spec.imageChipID) (\(chip.spec.displayName))"), "\(info.out)")
            #expect(info.out.contains("(valid)") && !info.out.contains("invalid"), "\(info.out)")
            #expect(info.out.contains(c.info) && info.out.contains("v5.2-demo"), "\(info.out)")
            let ours = try Espforge.run(["image", "info", path(c.name + ".bin")])
            #expect(ours.status == 0 && ours.out.contains(chip.spec.displayName) && ours.out.contains("v5.2-demo"), "\(ours.out)\(ours.err)")
        }
    }

    /// The demo's images signed with a demo key, flashed as the manifest places them, boot on a
    /// virtual device of the chip: the ROM and the ESP-IDF v5.x bootloader enable Secure Boot V2
    /// and flash encryption (development and release mode) and start the app from ota_0.
    @Test(arguments: chips, [false, true]) func bootsWithSecureBootAndFlashEncryption(_ chip: DemoChip, release: Bool) throws {
        let key = try Scenarios.keyA()
        let policy = try #require(SecureBootPolicy.named(chip.spec.name))
        let boot = try SecureBootSigner.sign(image: try DemoFirmware.bootloader(chip), keys: [key], append: false, policy: policy).image
        let app = try SecureBootSigner.sign(image: try DemoFirmware.app(chip, codeSize: 32 * 1024), keys: [key], append: false, policy: policy).image
        let state = try TestEnvironment.temporaryDirectory("demo-boot").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        var d = try Device.create(try DemoLine.deviceDescription(chip, index: 0, state: state))
        #expect(d.chip?.name == chip.spec.name)
        for (offset, bytes) in [(chip.spec.bootloaderOffset, boot), (DemoLine.tableOffset, try DemoLine.partitionTable(chip)), (0x60000, app)] {
            _ = d.flash.eraseSectors(offset, bytes.count, timing: .w25q32jv)
            _ = d.flash.program(offset, bytes, timing: .w25q32jv)
        }
        var sdk = try SDKConfig.parse(DemoFirmware.sdkconfig(for: chip))
        #expect(sdk.secureBootV2 && sdk.flashEncryption && !sdk.releaseMode && sdk.partitionTableOffset == 0x10000)
        sdk.releaseMode = release
        var config = BootConfig(sdkconfig: sdk)
        config.rngSeed = 7
        let o = BootSimulator(config: config).boot(device: &d)
        #expect(o.result == .appStarted, "\(o.reason ?? "")\n\(o.consoleText)")
        #expect(o.bootedOffset == 0x60000 && o.bootedPartition == "ota_0")
        #expect(o.secureBootEnabled && o.flashEncryptionEnabled)
        #expect(o.log.contains { $0.text.contains("ESP-IDF v5.2-demo 2nd stage bootloader") }, "\(o.consoleText)")
        // The manifest's final eFuses can still be burned after the bootloader's own burns and locks.
        let map = try #require(d.chip?.efuseMap)
        let burnedCells = try #require(d.cells)
        for name in chip.finalBurn {
            let field = try #require(map.field(named: name))
            #expect(burnedCells.integer(field) == 0 && !(field.writeProtect.map { burnedCells.isWriteProtected(bit: $0) } ?? true), "\(name)")
        }
        // Powered on again: the ROM verifies the bootloader against the burned digest, nothing is burned.
        let cells = d.cells
        let again = BootSimulator(config: config).boot(device: &d)
        #expect(again.result == .appStarted && again.bootedOffset == 0x60000 && d.cells == cells)
    }

    /// The folder `demo --chip` writes is one consistent line: its devices are of the chip, its
    /// manifest names the chip and offsets, and the images signed with its own key, written where
    /// the manifest says, boot through `device boot` under the sdkconfig remembered in the device
    /// folder (what provisioning checks after its write).
    @Test(arguments: chips) func demoFolderIsOneLineForTheChip(_ chip: DemoChip) throws {
        let root = try TestEnvironment.temporaryDirectory("demo-folder-\(chip.spec.name)")
        defer { try? FileManager.default.removeItem(at: root) }
        let options = try DemoLine.Options(devices: 2, dir: root.path + "/line", mode: "on-chip", appSize: "24K", chip: chip.spec.name)
        try DemoLine.prepare(options)
        let line = try DemoLine.create(options)
        let manifest = try Manifest.parse(try String(contentsOfFile: line.manifestPath, encoding: .utf8))
        #expect(manifest.chip.type == chip.spec.name && manifest.flashEncryption.mode == .onChip)
        let dir = root.path + "/line/"
        guard case let .privateKey(key) = try KeyMaterial.load(pem: try String(contentsOfFile: dir + "signing_key.pem", encoding: .utf8)) else {
            Issue.record("no private key in signing_key.pem"); return
        }
        let policy = try #require(SecureBootPolicy.named(chip.spec.name))
        func file(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: dir + name))) }
        let boot = try #require(manifest.images.bootloader), table = try #require(manifest.images.partitionTable)
        let app = try #require(manifest.images.app)
        let plan: [(Int, [UInt8])] = [
            (boot.offset, try SecureBootSigner.sign(image: try file(boot.path), keys: [key], append: false, policy: policy).image),
            (table.offset, try file(table.path)),
            (app.offset, try SecureBootSigner.sign(image: try file(app.path), keys: [key], append: false, policy: policy).image),
        ]
        #expect(plan.map(\.0) == [0, 0x10000, 0x60000])
        for state in line.deviceFolders {
            let store = DeviceStore(directory: state)
            var d = try store.load()
            #expect(d.chip?.name == chip.spec.name)
            for (offset, bytes) in plan {
                _ = d.flash.eraseSectors(offset, bytes.count, timing: .w25q32jv)
                _ = d.flash.program(offset, bytes, timing: .w25q32jv)
            }
            try store.saveWholeFlash(d.flash)
            let r = try Espforge.run(["device", "boot", "--state", state, "--json"])
            #expect(r.status == 0, "\(r.err)")
            let o = try JSONDecoder().decode(BootOutcome.self, from: Data(r.stdout))
            #expect(o.result == .appStarted && o.bootedOffset == 0x60000 && o.secureBootEnabled && o.flashEncryptionEnabled,
                    "\(o.consoleText)")
        }
        let macs = try line.deviceFolders.map { try DeviceStore(directory: $0).load().description.mac }
        #expect(Set(macs).count == 2 && macs.allSatisfy { $0.hasPrefix(VirtualChip.named(chip.spec.name)?.macOUI.map { String(format: "%02x", $0) }.joined(separator: ":") ?? "?") })
    }
}
