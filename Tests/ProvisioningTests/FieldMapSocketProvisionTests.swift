import BootSimulator
import EFuse
import ESPCore
import FlashEncryption
import Flasher
import Foundation
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// Issue 17 §2: `provision` of ESP32-S3 / ESP32-C3 boards through the loader link, as real boards
/// on serial ports are: each device served by its own `espforge device serve` over socket://
/// (the sdkconfig remembered in its folder, so leaving the loader runs the first-boot simulator),
/// the ESP-IDF v5.2.2 hello world signed for Secure Boot V2, a SQLite registry.
@Suite("Provisioning ESP32-S3 / ESP32-C3 over socket:// (served devices)", .serialized)
struct FieldMapSocketProvisionTests {
    static let cases: [FieldMapCase] = [
        .init(chip: "esp32s3", mode: .onChip, release: false), .init(chip: "esp32s3", mode: .host, release: false),
        .init(chip: "esp32c3", mode: .onChip, release: false), .init(chip: "esp32c3", mode: .host, release: false),
        // Release with Secure Download Mode: after the first boot the ROM refuses register reads.
        .init(chip: "esp32s3", mode: .host, release: true), .init(chip: "esp32c3", mode: .onChip, release: true),
    ]

    @Test("provisioned end to end through LoaderTarget: eFuses, ciphertext, first boot on the console, registry record",
          .enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: cases)
    func endToEnd(c: FieldMapCase) async throws {
        var line = try FieldMapLine(chip: c.chip, mode: c.mode, release: c.release)
        defer { line.cleanup() }
        // Release: the chip takes no burn after its first boot (Secure Download Mode).
        if c.release { line.job.finalBurn = ["DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE"] }
        var options = LoaderLinkOptions()
        options.session.baud = 921_600
        options.session.timeout = 2
        // The line's stub option (the ESP32's): the link finds the chip's own.
        let esp32Stub = try #require(StubImage.locate(), "esptool's stubs not found (install the oracle: ./scripts/test)")
        options.session.stub = try StubImage.parse(json: Array(try Data(contentsOf: URL(fileURLWithPath: esp32Stub))), source: esp32Stub)
        options.quietSeconds = 1
        var servers: [DeviceServerProcess] = []
        var targets: [any ProvisioningTarget] = []
        for t in line.targets {
            try line.sdk.text.write(toFile: t.store.directory + "/sdkconfig", atomically: true, encoding: .utf8)
            let server = try DeviceServerProcess(state: t.store.directory, extra: ["--rng-seed", "11"])
            servers.append(server)
            targets.append(LoaderTarget(port: server.url, options: options))
        }
        defer { servers.forEach { $0.stop() } }
        let registry = try await line.registry()
        let r = try #require(await line.provision(registry, targets: targets).first)
        #expect(r.ok && r.state == .provisioned, "\(r.failedStep ?? "") \(r.reason ?? "") \(r.diagnosis ?? "")")
        #expect(r.bootedPartition == "factory", "\(r.bootedPartition ?? "-")")
        servers.forEach { $0.stop() }

        let device = try line.targets[0].load()
        let mac = device.description.mac
        let s = try FieldMapLine.summary(device)
        #expect(s.security.secureBootEnabled)
        let slot = try #require(s.keyBlocks.first { $0.purposeName.hasPrefix("SECURE_BOOT_DIGEST") && !$0.empty })
        #expect(slot.digest == line.keyDigest.hexString)
        let xts = s.keyBlocks.filter { $0.purposeName.hasPrefix("XTS_AES_") }
        #expect(xts.count == 1 && xts.allSatisfy { $0.readProtected && $0.writeProtected }, "\(xts)")
        #expect(s.security.spiBootCryptCnt.nonzeroBitCount % 2 == 1)
        #expect(device.stats.total.firmwareRuns == 1, "one first boot, started over the loader")
        // The flash is ciphertext of the plan under the device's own key, in both modes.
        let cipher = try FlashCipher(chip: try #require(ChipSpec.named(c.chip)), key: try FieldMapLine.xtsKey(device))
        for image in line.job.images {
            let raw = try #require(device.flash.read(image.offset, (image.bytes.count + 31) & ~31))
            #expect(Array(try cipher.decrypt(raw, at: image.offset).prefix(image.bytes.count)) == image.bytes, "\(image.name)")
        }
        let record = try #require(try await registry.device(mac: mac))
        #expect(record.status == .provisioned)
        #expect(record.facts.chip == c.chip)
        #expect(record.efuseSummary?["SECURE_BOOT_EN"] == "1")
        let steps = try await registry.steps(mac: mac)
        #expect(steps.filter { $0.outcome == .ok }.map(\.step) == ["identify", "preflight", "write", "first-boot", "verify",
                                                                  "final-efuses", "record"])
        if c.release {
            // Secure Download Mode after the first boot: verified and recorded through
            // GET_SECURITY_INFO (a register read is refused, so the recorded "1" can only come
            // from there), the final eFuses burned before the boot.
            #expect(s.field("ENABLE_SECURITY_DOWNLOAD")?.integer == 1)
            #expect(record.efuseSummary?["ENABLE_SECURITY_DOWNLOAD"] == "1")
            #expect(record.efuseSummary?["SPI_BOOT_CRYPT_CNT"] == "7")
            #expect(s.field("DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE")?.integer == 1, "the final eFuse, burned before the boot")
        }
        try await registry.close()
    }
}
