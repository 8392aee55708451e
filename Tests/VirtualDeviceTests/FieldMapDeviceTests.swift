import EFuse
import Loader
import ESPCore
import Foundation
import Testing
import TestSupport
import Transport
@testable import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

/// Issue 17 §2: ESP32-S3 / ESP32-C3 virtual devices: factory state and the state folder.
@Suite("S3/C3 virtual devices")
struct FieldMapDeviceTests {
    func mode(_ path: String) -> mode_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : 0
    }

    @Test(arguments: ["esp32s3", "esp32c3"])
    func factoryStateHasMACAndRevisionInBLOCK1(chip: String) throws {
        let d = try DeviceReports.description(chip: chip, flashSize: "4MB", chipRevision: nil, mac: nil, flashID: nil,
                                              statePath: "/tmp/x", minorRevision: 3)
        let device = try Device.create(d)
        let vc = try #require(VirtualChip.named(chip))
        #expect(Array(try MACAddress.parse(device.description.mac).prefix(3)) == vc.macOUI)
        let cells = try #require(device.cells)
        let summary = EFuseFieldMapSummary(words: cells, map: vc.efuseMap)
        #expect(summary.mac == device.description.mac)
        #expect(summary.revision == "v0.3")
        #expect(summary.security.writeProtectedBits.isEmpty)
        #expect(device.description.minorRevision == 3)
    }

    @Test func esp32RejectsAMinorRevisionAndUnknownChipsAreRefused() {
        #expect(throws: UsageError.self) {
            try DeviceReports.description(chip: "esp32", flashSize: "4MB", chipRevision: 3, mac: nil, flashID: nil,
                                          statePath: "x", minorRevision: 1)
        }
        #expect(throws: DeviceError.self) {
            try DeviceReports.description(chip: "esp32h2", flashSize: "4MB", chipRevision: nil, mac: nil, flashID: nil, statePath: "x")
        }
        #expect(throws: DeviceError.self) {
            try Device.create(DeviceDescription(chip: "esp32c3", chipRevision: 4, mac: "58:cf:79:00:00:01"))
        }
    }

    /// efuse.bin is what `espefuse --virt` reads: the read registers' view; a read-protected key
    /// lives only in efuse-protected.bin (0600) and comes back on load.
    @Test func stateFolderKeepsReadProtectedKeysOutOfEfuseBin() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-s3state").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = DeviceStore(directory: dir + "/dev")
        var device = try Device.create(DeviceDescription(chip: "esp32s3", chipRevision: 0, package: 0, mac: "7c:df:a1:00:00:17"))
        try store.create(device, force: false)
        let map = EFuseFieldMap.esp32s3
        #expect(try BoundedFile.read(store.efusePath, limit: .deviceState).count == map.registerSpaceSize)
        #expect(!FileManager.default.fileExists(atPath: store.protectedEFusePath))

        var cells = try #require(device.cells)
        let key = try #require(map.field(named: "BLOCK_KEY1"))
        cells.setBytes(key, [UInt8](repeating: 0xA5, count: 32))
        cells.setInteger(try #require(map.field(named: "RD_DIS")), 1 << 1)
        device.cells = cells
        try store.saveEFuses(of: device)
        #expect(mode(store.protectedEFusePath) == 0o600)
        let shown = try EFuseVirtualFile.decode(try BoundedFile.read(store.efusePath, limit: .deviceState), map: map)
        #expect(shown.bytes(of: key).allSatisfy { $0 == 0 })
        #expect(try store.load().cells == cells)
    }
}

/// The S3/C3 ROM loader in memory: detection facts, GET_SECURITY_INFO, secure download mode.
@Suite("S3/C3 ROM loader (engine)")
struct FieldMapEngineTests {
    final class Link {
        let engine: ProtocolEngine
        var decoder = SLIPDecoder()
        init(_ device: Device) {
            engine = ProtocolEngine(device: device)
            engine.beginConnection()
        }
        func command(_ op: Opcode, _ words: [UInt32] = []) throws -> ResponsePacket? {
            var d: [UInt8] = []
            for w in words { d.appendLE(w) }
            return try decoder.frames(engine.receive(SLIP.encode(CommandPacket(op, data: d).encode()))).first
                .map { try ResponsePacket.decode($0) }
        }
    }

    func device(_ chip: String, _ edit: (inout EFuseBlockWords, EFuseFieldMap) -> Void = { _, _ in }) throws -> Device {
        var d = try Device.create(DeviceDescription(chip: chip, chipRevision: 0, package: 0, mac: "7c:df:a1:01:02:03"))
        var cells = try #require(d.cells)
        edit(&cells, try #require(d.chip).efuseMap)
        d.cells = cells
        return d
    }

    @Test(arguments: ["esp32s3", "esp32c3"])
    func securityInfoIsComputedFromTheEFuses(chip: String) throws {
        let dev = try device(chip) { c, map in
            c.setInteger(map.field(named: "SECURE_BOOT_EN")!, 1)
            c.setInteger(map.field(named: "SECURE_BOOT_KEY_REVOKE1")!, 1)
            c.setInteger(map.field(named: "SOFT_DIS_JTAG")!, 0b011)   // even count: not disabled
            c.setInteger(map.field(named: "DIS_PAD_JTAG")!, 1)
            c.setInteger(map.field(named: "SPI_BOOT_CRYPT_CNT")!, 0b001)
            c.setInteger(map.field(named: "KEY_PURPOSE_0")!, 4)
            c.setInteger(map.field(named: "KEY_PURPOSE_5")!, 11)
        }
        let link = Link(dev)
        let r = try #require(try link.command(.getSecurityInfo))
        #expect(r.status(outputLength: 20)?.status == 0)
        let d = r.data
        #expect(Array(d[0..<4]).loadLE(UInt32.self) == (1 << 0) | (1 << 4) | (1 << 7))
        #expect(d[4] == 1)
        #expect(Array(d[5..<12]) == [4, 0, 0, 0, 0, 11, 0])
        #expect(Array(d[12..<16]).loadLE(UInt32.self) == (chip == "esp32s3" ? 9 : 5))
        #expect(Array(d[16..<20]).loadLE(UInt32.self) == UInt32(dev.description.minorRevision ?? -1))
        #expect(d.count == 24, "20 bytes and the ROM's 4 status bytes")
        // Chip-detect magic and the MAC as esptool reads it (BLOCK1 words 0 and 1).
        let vc = try #require(dev.chip)
        #expect(try link.command(.readReg, [0x4000_1000])?.value == vc.magicValue)
        let mac0 = try #require(try link.command(.readReg, [vc.efuseMap.controllerBase + 0x44])).value
        let mac1 = try #require(try link.command(.readReg, [vc.efuseMap.controllerBase + 0x48])).value
        #expect(mac0 == 0xA101_0203 && mac1 & 0xFFFF == 0x7CDF)
    }

    /// ESP32-S3 with Secure Boot: MEM_END does not start uploaded code; esptool's workaround
    /// (point the ROM's legacy flash read at the stub, then READ_FLASH_SLOW) does.
    @Test func s3SecureBootStubStartsThroughTheLegacyReadHook() throws {
        let link = Link(try device("esp32s3") { c, map in c.setInteger(map.field(named: "SECURE_BOOT_EN")!, 1) })
        let hook = try #require(VirtualChip.esp32s3.secureBootStubHook)
        #expect(try link.command(.memBegin, [16, 1, 0x1800, 0x4037_8000])?.status(outputLength: 0)?.status == 0)
        #expect(try link.command(.memEnd, [0, 0x4037_8000])?.status(outputLength: 0)?.status == 0)
        #expect(link.engine.mode == .rom, "MEM_END ran the stub despite Secure Boot")
        #expect(try link.command(.readReg, [hook.address])?.value == hook.romValue)
        var d: [UInt8] = []
        for w: UInt32 in [hook.address, 0x4037_8000, 0xFFFF_FFFF, 0] { d.appendLE(w) }
        _ = link.engine.receive(SLIP.encode(CommandPacket(.writeReg, data: d).encode()))
        var rd: [UInt8] = []
        for w: UInt32 in [0, 0] { rd.appendLE(w) }
        let frames = link.decoder.frames(link.engine.receive(SLIP.encode(CommandPacket(.readFlashSlow, data: rd).encode())))
        #expect(frames.last == Array("OHAI".utf8))
        #expect(link.engine.mode == .stub)
    }

    @Test func c3ROMReadsFlashSlowly() throws {
        var dev = try device("esp32c3")
        _ = dev.flash.program(0x100, [1, 2, 3, 4], timing: .w25q32jv)
        let link = Link(dev)
        let r = try #require(try link.command(.readFlashSlow, [0x100, 4]))
        #expect(r.status(outputLength: 64)?.status == 0)
        #expect(Array(r.data.prefix(4)) == [1, 2, 3, 4])
    }

    @Test func theESP32ROMDoesNotKnowGetSecurityInfo() throws {
        let link = Link(try Device.create(DeviceDescription(mac: "24:0a:c4:00:00:01")))
        let r = try #require(try link.command(.getSecurityInfo))
        #expect(r.status(outputLength: 0)?.status != 0)
    }

    @Test func secureDownloadModeKeepsOnlyItsCommandsAndDisDownloadModeSilencesTheROM() throws {
        let sdm = Link(try device("esp32c3") { c, map in c.setInteger(map.field(named: "ENABLE_SECURITY_DOWNLOAD")!, 1) })
        let info = try #require(try sdm.command(.getSecurityInfo))
        #expect(Array(info.data[0..<4]).loadLE(UInt32.self) & (1 << 2) != 0)
        let read = try #require(try sdm.command(.readReg, [0x4000_1000]))
        #expect(read.status(outputLength: 0)?.status != 0)
        #expect(try sdm.command(.spiAttach, [0, 0])?.status(outputLength: 0)?.status == 0)

        let off = Link(try device("esp32s3") { c, map in c.setInteger(map.field(named: "DIS_DOWNLOAD_MODE")!, 1) })
        #expect(try off.command(.sync) == nil)
    }
}

/// `virtual:DIR?lines=usb-jtag`: the modem lines drive the USB-Serial-JTAG peripheral's reset logic.
@Suite("USB-Serial-JTAG reset (virtual port)")
struct USBSerialJTAGResetTests {
    @Test func usbResetEntersDownloadModeAndHardResetAndClassicResetBootTheFirmware() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-usbjtag").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = dir + "/dev"
        try DeviceStore(directory: state).create(try Device.create(DeviceDescription(chip: "esp32c3", chipRevision: 0, package: 0,
                                                                                     mac: "58:cf:79:00:00:01")), force: false)
        let address = try VirtualPortAddress.parse("virtual:\(state)?lines=usb-jtag")
        #expect(address.usbSerialJTAG && address.resetLines)
        let port = try VirtualPort(name: address.name, directory: state, usbSerialJTAG: true)
        #expect(port.kind == .serial)
        let noSleep: ResetSequence.Sleep = { _ in }

        try ResetSequence.hardReset(port, sleep: noSleep)
        _ = try port.read(timeout: 0)
        #expect(port.engine.mode == .userCode, "a USB hard reset boots the firmware")

        try ResetSequence.usbJTAG(port, sleep: noSleep)
        let banner = String(decoding: try port.read(timeout: 0), as: UTF8.self)
        #expect(banner.contains("ESP-ROM:esp32c3"))
        #expect(banner.contains("waiting for download"))
        #expect(port.engine.mode == .rom)

        // The classic two-transistor sequence does not reach download mode through this peripheral.
        try ResetSequence.classic(port, attempt: 0, sleep: noSleep)
        #expect(port.engine.mode == .userCode)
        #expect(throws: TransportError.self) { try VirtualPortAddress.parse("virtual:\(state)?lines=usb") }
        port.close()
    }
}

/// `device inspect`, `dump --efuses` and `boot` on an S3/C3 folder.
@Suite("S3/C3 device reports (CLI)")
struct FieldMapDeviceCLITests {
    @Test func inspectDumpAndBootSpeakAboutTheChip() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-s3cli").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let state = dir + "/dev"
        var device = try Device.create(DeviceDescription(chip: "esp32s3", chipRevision: 0, package: 0, mac: "7c:df:a1:11:22:33"))
        // An ESP32-S3 image header at 0x0 (chip id 9 at byte 12), one segment.
        var header = [UInt8](repeating: 0, count: 24)
        (header[0], header[1], header[2], header[3], header[12]) = (0xE9, 1, 2, 0x2F, 9)
        _ = device.flash.program(0, header + [UInt8](repeating: 0x11, count: 4072), timing: .w25q32jv)
        try DeviceStore(directory: state).create(device, force: false)

        let inspect = try Espforge.run(["device", "inspect", "--state", state, "--json"])
        #expect(inspect.status == 0, "\(inspect.err)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout)) as? [String: Any])
        #expect(obj["chip"] as? String == "ESP32-S3")
        #expect(obj["revision"] as? String == "v0.2")
        let map = try #require(obj["flashMap"] as? [[String: Any]])
        #expect(map.first?["kind"] as? String == "image")
        let powerOn = try #require(obj["powerOn"] as? [String: Any])
        #expect(powerOn["bootloaderHeaderValid"] as? Bool == true)

        let dump = try Espforge.run(["device", "dump", "--state", state, "--efuses"])
        #expect(dump.status == 0)
        #expect(dump.out.contains("7c:df:a1:11:22:33"))
        #expect(dump.out.contains("KEY_PURPOSE_0"))

        let boot = try Espforge.run(["device", "boot", "--state", state])
        #expect(boot.status != 0)
        // No sdkconfig: the options are inferred from the S3's flash and field map, and said so;
        // the header-only image at 0x0 starts no app.
        #expect(boot.err.contains("the bootloader's options are inferred"), "\(boot.err)")
        #expect(boot.err.contains("the bootloader is not signed"), "\(boot.err)")
    }
}
