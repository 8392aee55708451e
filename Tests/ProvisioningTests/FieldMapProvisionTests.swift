import BootSimulator
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import KeyCustody
import Partitions
import Registry
import SecureBoot
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// A line of blank ESP32-S3 or ESP32-C3 virtual devices and a job made of the ESP-IDF v5.2.2
/// hello-world build of ../shared/fixtures/espressif/chips (bootloader at 0x0, table at 0x8000,
/// app at 0x10000), bootloader and app signed for Secure Boot V2 with the chip's policy.
struct FieldMapLine {
    let chip: String
    let dir: URL
    var job: ProvisioningJob
    var sdk: SDKConfig
    let targets: [VirtualTarget]
    let keyDigest: [UInt8]

    static func folder(_ chip: String) -> String { chip == "esp32s3" ? "ESP32_S3" : "ESP32_C3" }
    static func fixture(_ chip: String, _ name: String) throws -> [UInt8] {
        try TestEnvironment.fixtureBytes("chips/\(folder(chip))/\(name)")
    }

    init(chip: String, count: Int = 1, mode: ProvisioningJob.EncryptionMode, release: Bool = false,
         deviceChip: String? = nil) throws {
        self.chip = chip
        dir = try TestEnvironment.temporaryDirectory("espforge-provision-\(chip)")
        let key = try Scenarios.keyA()
        keyDigest = try key.publicKey.keyDigest()
        let policy = try #require(SecureBootPolicy.named(chip))
        let boot = try SecureBootSigner.sign(image: try Scenarios.trimmed(try Self.fixture(chip, "bootloader.bin")),
                                             keys: [key], append: false, policy: policy).image
        let app = try SecureBootSigner.sign(image: try Self.fixture(chip, "hello_world.bin"), keys: [key], append: false,
                                            policy: policy).image
        let table = try Self.fixture(chip, "partition-table.bin")
        let parsed = try PartitionTable.parse(binary: table)
        job = ProvisioningJob(
            images: [.init(name: "bootloader", offset: 0, bytes: boot), .init(name: "partition_table", offset: 0x8000, bytes: table),
                     .init(name: "app", offset: 0x10000, bytes: app)],
            partitionTableOffset: 0x8000, partitions: parsed.table.entries, mode: mode, release: release,
            manifestHash: String(repeating: "cd", count: 32), secureBootDigest: keyDigest,
            identityPool: "pool-\(UUID().uuidString.prefix(8))", identities: [], flashSize: 4 << 20, station: "test")
        job.chip = chip
        var sdk = SDKConfig.secure(release: release, partitionTableOffset: 0x8000)
        sdk.flashEncryption = mode != .none
        sdk.secureROMDownload = release
        self.sdk = sdk
        var targets: [VirtualTarget] = []
        for i in 0..<count {
            let path = dir.appendingPathComponent("dev\(i)").path
            let mac = Device.defaultMAC(seed: UInt64.random(in: 0...UInt64.max) &+ UInt64(i), oui: [0x7C, 0xDF, 0xA1])
            let c = deviceChip ?? chip
            let description = DeviceDescription(chip: c, chipRevision: c == "esp32" ? 3 : 0, mac: mac, flashSize: 4 << 20)
            try DeviceStore(directory: path).create(try Device.create(description), force: false)
            targets.append(VirtualTarget(directory: path))
        }
        self.targets = targets
    }

    func provisioner(_ registry: any DeviceRegistry, job: ProvisioningJob? = nil, resume: Bool = false) -> Provisioner {
        var p = Provisioner(job: job ?? self.job, registry: registry, sdkconfig: sdk, resume: resume)
        p.rngSeed = 11
        return p
    }

    func provision(_ registry: any DeviceRegistry, targets: [any ProvisioningTarget]? = nil, job: ProvisioningJob? = nil,
                   resume: Bool = false) async -> [ProvisionResult] {
        let p = provisioner(registry, job: job, resume: resume)
        var out: [ProvisionResult] = []
        for t in targets ?? self.targets { out.append(await p.provision(t)) }
        return out
    }

    func registry() async throws -> any DeviceRegistry {
        try await openRegistry(url: dir.appendingPathComponent("registry.sqlite").path)
    }

    func cleanup() { try? FileManager.default.removeItem(at: dir) }

    static func summary(_ d: Device) throws -> EFuseFieldMapSummary {
        let cells = try #require(d.cells)
        let map = try #require(d.chip?.efuseMap)
        return EFuseFieldMapSummary(words: cells, map: map)
    }

    /// The flash-encryption key as the chip's XTS engine sees it (test access to the raw cells).
    static func xtsKey(_ d: Device) throws -> [UInt8] {
        let cells = try #require(d.cells)
        return try #require(d.chip?.flashEncryptionKey(cells))
    }
}

/// The flows a line of S3/C3 devices goes through: chip × encryption mode × release.
struct FieldMapCase: Sendable, CustomTestStringConvertible {
    var chip: String
    var mode: ProvisioningJob.EncryptionMode
    var release: Bool
    var testDescription: String { "\(chip) \(mode.rawValue) \(release ? "release" : "development")" }
    static let all: [FieldMapCase] = [
        .init(chip: "esp32s3", mode: .onChip, release: false), .init(chip: "esp32s3", mode: .host, release: false),
        .init(chip: "esp32s3", mode: .host, release: true), .init(chip: "esp32c3", mode: .onChip, release: false),
        .init(chip: "esp32c3", mode: .onChip, release: true), .init(chip: "esp32c3", mode: .host, release: false),
    ]
}

/// A link that is lost at a chosen point of the host-mode write (as when the process is killed
/// there): after the ciphertext, after SPI_BOOT_CRYPT_CNT, or after the key's protection.
final class FieldMapLostLink: DeviceLink {
    enum Point: String, Sendable, CaseIterable { case afterCiphertext, afterCount, afterArming }
    let inner: any DeviceLink
    let point: Point
    var lost = false
    init(_ inner: any DeviceLink, point: Point) { self.inner = inner; self.point = point }
    var port: String { inner.port }
    func check() throws { if lost { throw ProvisioningError(.write, "link lost (test)") } }
    func identify() throws -> LinkFacts { try inner.identify() }
    func readEFuses() throws -> EFuseArray { try check(); return try inner.readEFuses() }
    func burn(_ requests: [EFuseBurnRequest]) throws { try check(); try inner.burn(requests) }
    func readFieldMapEFuses() throws -> EFuseBlockWords { try check(); return try inner.readFieldMapEFuses() }
    func burnFieldMap(_ operation: FieldMapBurnOperation) throws {
        try check()
        try inner.burnFieldMap(operation)
        switch (point, operation) {
        case (.afterCount, .burn): lost = true
        case (.afterArming, .writeProtect): lost = true
        default: break
        }
        try check()
    }
    func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])]) throws {
        try check()
        try inner.write(regions)
        if point == .afterCiphertext { lost = true }
        try check()
    }
    func firstBoot(_ request: FirstBootRequest) throws -> FirstBootReport { try check(); return try inner.firstBoot(request) }
    var virtualMilliseconds: Int { inner.virtualMilliseconds }
    func close() { inner.close() }
}

struct FieldMapLostTarget: ProvisioningTarget {
    let inner: VirtualTarget
    let point: FieldMapLostLink.Point
    var port: String { inner.port }
    func connect() throws -> any DeviceLink { FieldMapLostLink(try inner.connect(), point: point) }
}

@Suite("Provisioning ESP32-S3 / ESP32-C3 devices")
struct FieldMapProvisionTests {
    @Test("virtual S3/C3 devices provisioned end to end: eFuses, flash, first boot, registry record", fixtures,
          arguments: FieldMapCase.all)
    func endToEnd(c: FieldMapCase) async throws {
        let line = try FieldMapLine(chip: c.chip, mode: c.mode, release: c.release)
        defer { line.cleanup() }
        let registry = try await line.registry()
        let r = try #require(await line.provision(registry).first)
        #expect(r.ok && r.state == .provisioned, "\(r.failedStep ?? "") \(r.reason ?? "") \(r.diagnosis ?? "")")

        var device = try line.targets[0].load()
        let mac = device.description.mac
        #expect(r.identity == mac, "no per-device values: the identity is the MAC")
        let s = try FieldMapLine.summary(device)
        // Secure Boot: enabled by the bootloader, the digest of the signing key in a digest slot.
        #expect(s.security.secureBootEnabled)
        let slot = try #require(s.keyBlocks.first { $0.purposeName.hasPrefix("SECURE_BOOT_DIGEST") && !$0.empty })
        #expect(slot.digest == hex(line.keyDigest))
        // Flash encryption: the XTS key read- and write-protected, the count 1 or 0b111.
        let xts = s.keyBlocks.filter { $0.purposeName.hasPrefix("XTS_AES_") }
        #expect(xts.count == 1 && xts.allSatisfy { $0.readProtected && $0.writeProtected }, "\(xts)")
        #expect(xts.first?.purposeName == "XTS_AES_128_KEY")
        #expect(s.security.spiBootCryptCnt == (c.release ? 0b111 : 0b001))
        if c.mode == .host {
            // The host burned its key first (BLOCK_KEY0); the bootloader put the digest after it.
            #expect(xts.first?.index == 0 && slot.index == 1)
        }
        // The flash is ciphertext of the plan under the device's key, in both modes.
        let cipher = try FlashCipher(chip: try #require(ChipSpec.named(c.chip)), key: try FieldMapLine.xtsKey(device))
        for image in line.job.images {
            let length = (image.bytes.count + 31) & ~31
            let raw = try #require(device.flash.read(image.offset, length))
            #expect(Array(raw.prefix(16)) != Array(image.bytes.prefix(16)), "\(image.name) is stored encrypted")
            #expect(Array(try cipher.decrypt(raw, at: image.offset).prefix(image.bytes.count)) == image.bytes, "\(image.name)")
        }
        // It boots again, in one power cycle, without burning anything.
        let before = device.cells
        let again = BootSimulator(config: BootConfig(sdkconfig: line.sdk)).boot(device: &device)
        #expect(again.result == .appStarted && again.resets == 1, "\(again.reason ?? "")\n\(again.consoleText)")
        #expect(device.cells == before)

        // Registry: the chip's name and its eFuse summary, every step ok, no key material.
        let record = try #require(try await registry.device(mac: mac))
        #expect(record.status == .provisioned)
        #expect(record.facts.chip == c.chip)
        #expect(record.facts.keyDigests["secure_boot_v2"] == hex(line.keyDigest))
        let summary = try #require(record.efuseSummary)
        #expect(summary["SECURE_BOOT_EN"] == "1")
        #expect(summary["SPI_BOOT_CRYPT_CNT"] == (c.release ? "7" : "1"))
        #expect(summary["DIS_DOWNLOAD_MANUAL_ENCRYPT"] == (c.release ? "1" : "0"), "\(summary)")
        let xtsBlock = try #require(xts.first).block
        let xtsName = try #require(device.chip?.efuseMap.blockNames[xtsBlock])
        #expect(summary[xtsName] == "XTS_AES_128_KEY, burned, read-protected, write-protected")
        let slotName = try #require(device.chip?.efuseMap.blockNames[slot.block])
        #expect(summary[slotName] == "SECURE_BOOT_DIGEST\(slot.purpose - 9), burned, write-protected")
        #expect(summary.values.filter { $0 == "empty" }.count == 4, "four key blocks left unused: \(summary)")
        let steps = try await registry.steps(mac: mac)
        #expect(steps.filter { $0.outcome == .ok }.map(\.step) == ["identify", "preflight", "write", "first-boot", "verify",
                                                                  "final-efuses", "record"])
        let key = try FieldMapLine.xtsKey(device)
        let dump = (String(decoding: try JSONEncoder().encode(record), as: UTF8.self)
            + String(decoding: try JSONEncoder().encode(steps), as: UTF8.self)).lowercased()
        #expect(!dump.contains(hex(key)) && !dump.contains(hex(key.reversed())))

        // Plugged in again: recognised from the record (digest slot and summary agree), left alone.
        let second = try #require(await line.provision(registry).first)
        #expect(second.ok && second.state == .skipped, "\(second.failedStep ?? "") \(second.reason ?? "")")
        try await registry.close()
    }

    @Test("host mode, link lost during the write (after the ciphertext, the count, the protection): --resume ends provisioned with the same key",
          fixtures, arguments: [("esp32s3", FieldMapLostLink.Point.afterCiphertext), ("esp32c3", .afterCount), ("esp32s3", .afterArming)])
    func resumeAfterLostWrite(chip: String, point: FieldMapLostLink.Point) async throws {
        let line = try FieldMapLine(chip: chip, mode: .host)
        defer { line.cleanup() }
        let registry = try await line.registry()
        let first = try #require(await line.provision(registry, targets: [FieldMapLostTarget(inner: line.targets[0], point: point)]).first)
        #expect(!first.ok && first.failedStep == "write", "\(first.failedStep ?? "") \(first.reason ?? "")")
        let killed = try line.targets[0].load()
        let key = try FieldMapLine.xtsKey(killed)
        let s = try FieldMapLine.summary(killed)
        #expect(s.security.spiBootCryptCnt == (point == .afterCiphertext ? 0 : 1))
        #expect(s.keyBlocks[0].readProtected == (point == .afterArming))

        let second = try #require(await line.provision(registry, resume: true).first)
        #expect(second.ok, "\(second.failedStep ?? "") \(second.reason ?? "")")
        let device = try line.targets[0].load()
        #expect(try FieldMapLine.xtsKey(device) == key, "the key burned by the killed run is the device's key")
        let after = try FieldMapLine.summary(device)
        #expect(after.keyBlocks.filter { $0.purposeName.hasPrefix("XTS_AES_") }.count == 1)
        #expect(after.keyBlocks[0].readProtected && after.keyBlocks[0].writeProtected)
        let app = try #require(line.job.images.last)
        let raw = try #require(device.flash.read(app.offset, (app.bytes.count + 31) & ~31))
        let cipher = try FlashCipher(chip: try #require(ChipSpec.named(chip)), key: key)
        #expect(Array(try cipher.decrypt(raw, at: app.offset).prefix(app.bytes.count)) == app.bytes)
        try await registry.close()
    }

    @Test("a secured ESP32-S3 is refused before anything changes: unknown to the registry at identify, known at preflight", fixtures)
    func alreadySecuredRefused() async throws {
        let line = try FieldMapLine(chip: "esp32s3", mode: .onChip)
        defer { line.cleanup() }
        let link = try line.targets[0].connect()
        try link.burnFieldMap(.burn([(name: "SPI_BOOT_CRYPT_CNT", value: "1")]))
        link.close()
        let before = try line.targets[0].load()
        let registry = try await line.registry()
        let unknown = try #require(await line.provision(registry).first)
        #expect(!unknown.ok && unknown.failedStep == "identify", "\(unknown.reason ?? "")")
        #expect(unknown.reason?.contains("already secured") == true)

        // Known to the registry under this line's manifest (an earlier run of this line): preflight.
        let mac = before.description.mac
        var facts = DeviceFacts(mac: mac, chip: "esp32s3", chipRevision: 0, flashID: "0x1640ef", flashSize: 4 << 20,
                                station: "test", manifestHash: line.job.manifestHash)
        facts.keyDigests["secure_boot_v2"] = hex(line.keyDigest)
        try await registry.register(facts)
        let known = try #require(await line.provision(registry).first)
        #expect(!known.ok && known.failedStep == "preflight", "\(known.failedStep ?? "") \(known.reason ?? "")")
        #expect(known.reason == "preflight: the device is already secured (SECURE_BOOT_EN or SPI_BOOT_CRYPT_CNT set)")
        let after = try line.targets[0].load()
        #expect(after.cells == before.cells && after.flash.read(0, 4096) == before.flash.read(0, 4096))
        try await registry.close()
    }

    @Test("a key block holding another Secure Boot key's digest, or a pre-burned XTS key in on-chip mode: refused at preflight", fixtures)
    func keyBlocksInUseRefused() async throws {
        let line = try FieldMapLine(chip: "esp32c3", count: 2, mode: .onChip)
        defer { line.cleanup() }
        let other = try Scenarios.keyB().publicKey.keyDigest()
        var link = try line.targets[0].connect()
        try link.burnFieldMap(.burnKeyDigests([.init(block: "BLOCK_KEY2", data: other, purpose: "SECURE_BOOT_DIGEST0")], noWriteProtect: false))
        link.close()
        link = try line.targets[1].connect()
        try link.burnFieldMap(.burnKeys([.init(block: "BLOCK_KEY0", data: [UInt8](repeating: 0x5A, count: 32), purpose: "XTS_AES_128_KEY")],
                                        noReadProtect: false, noWriteProtect: false))
        link.close()
        let registry = try await line.registry()
        let results = await line.provision(registry)
        #expect(results[0].failedStep == "preflight" && results[0].reason?.contains("BLOCK_KEY2 holds the digest of another Secure Boot key") == true,
                "\(results[0].reason ?? "")")
        #expect(results[1].failedStep == "preflight" && results[1].reason?.contains("BLOCK_KEY0 already holds a flash encryption key") == true,
                "\(results[1].reason ?? "")")
        for t in line.targets { #expect(try t.load().flash.read(0, 4) == [0xFF, 0xFF, 0xFF, 0xFF]) }
        try await registry.close()
    }

    @Test("an ESP32 manifest on an S3 device, and an S3 manifest on an ESP32: refused at identify, nothing changed", fixtures,
          arguments: [("esp32", "esp32s3"), ("esp32c3", "esp32")])
    func chipMismatchRefused(jobChip: String, deviceChip: String) async throws {
        let line = try FieldMapLine(chip: jobChip == "esp32" ? "esp32s3" : jobChip, mode: .onChip, deviceChip: deviceChip)
        defer { line.cleanup() }
        var job = line.job
        job.chip = jobChip
        let before = try line.targets[0].load()
        let registry = try await line.registry()
        let r = try #require(await line.provision(registry, job: job).first)
        #expect(!r.ok && r.failedStep == "identify")
        let expected = "identify: the device is an \(Provisioner.displayName(deviceChip)), the manifest is for the \(Provisioner.displayName(jobChip)); nothing was changed"
        #expect(r.reason == expected, "\(r.reason ?? "")")
        let after = try line.targets[0].load()
        #expect(after.cells == before.cells && after.efuses == before.efuses)
        #expect(after.flash.read(0, 0x1000) == before.flash.read(0, 0x1000))
        try await registry.close()
    }

    @Test("final eFuses by the chip's names; a name the chip lacks stops the device with a clear error", fixtures)
    func finalEFusesByName() async throws {
        var line = try FieldMapLine(chip: "esp32c3", count: 3, mode: .onChip)
        defer { line.cleanup() }
        line.job.finalBurn = ["DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE"]
        line.job.finalWriteProtect = ["DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE"]
        let registry = try await line.registry()
        let ok = try #require(await line.provision(registry, targets: [line.targets[0]]).first)
        #expect(ok.ok, "\(ok.failedStep ?? "") \(ok.reason ?? "")")
        let d = try line.targets[0].load()
        let s = try FieldMapLine.summary(d)
        #expect(s.field("DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE")?.integer == 1)
        let bit = try #require(d.chip?.efuseMap.field(named: "DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE")?.writeProtect)
        #expect(try #require(d.cells).isWriteProtected(bit: bit))
        #expect(try await registry.device(mac: d.description.mac)?.efuseSummary?["DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE"] == "1")

        // On-chip: the bootloader locked DIS_DOWNLOAD_MANUAL_ENCRYPT's group when it encrypted.
        var locked = line.job
        locked.finalBurn = ["DIS_DOWNLOAD_MANUAL_ENCRYPT"]
        let l = try #require(await line.provision(registry, targets: [line.targets[1]], job: locked).first)
        #expect(!l.ok && l.failedStep == "final-efuses")
        #expect(l.reason?.hasPrefix("final-efuses: 'DIS_DOWNLOAD_MANUAL_ENCRYPT' can no longer be burned: WR_DIS bit 2 is set") == true,
                "\(l.reason ?? "")")

        var job = line.job
        job.finalBurn = ["JTAG_DISABLE"]
        let bad = try #require(await line.provision(registry, targets: [line.targets[2]], job: job).first)
        #expect(!bad.ok && bad.failedStep == "final-efuses")
        #expect(bad.reason == "final-efuses: 'JTAG_DISABLE' is not an eFuse field of the ESP32-C3", "\(bad.reason ?? "")")
        try await registry.close()
    }

    @Test("espforge provision --manifest (type = esp32s3/esp32c3) --port virtual:DIR: device made by `device create --chip`, images signed with the chip's policy",
          fixtures, arguments: [("esp32s3", "host"), ("esp32c3", "on-chip")])
    func cli(chip: String, mode: String) throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-provision-cli-\(chip)")
        defer { try? FileManager.default.removeItem(at: dir) }
        func put(_ name: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: dir.appendingPathComponent(name)) }
        try put("bootloader.bin", try Scenarios.trimmed(try FieldMapLine.fixture(chip, "bootloader.bin")))
        try put("partition-table.bin", try FieldMapLine.fixture(chip, "partition-table.bin"))
        try put("app.bin", try FieldMapLine.fixture(chip, "hello_world.bin"))
        let key = try Scenarios.keyA()
        try Data(key.pemRepresentation.utf8).write(to: dir.appendingPathComponent("signing.pem"))
        func manifest(_ type: String, burn: String) -> String {
            """
            version = 1

            [chip]
            type = "\(type)"
            flash_size = "4MB"

            [images.bootloader]
            file = "bootloader.bin"
            offset = 0x0

            [images.partition_table]
            file = "partition-table.bin"
            offset = 0x8000

            [images.app]
            file = "app.bin"
            offset = 0x10000

            [signing]
            key = "signing.pem"

            [flash_encryption]
            mode = "\(mode)"
            release = false

            [efuse]
            burn = [\(burn)]

            [registry]
            url = "registry.sqlite"

            """
        }
        let m = dir.appendingPathComponent("espforge.toml").path
        // On-chip: the bootloader write-protects DIS_DOWNLOAD_MANUAL_ENCRYPT's group (WR_DIS bit 2)
        // when it encrypts; host mode leaves it to the final burns.
        let final = mode == "host" ? "DIS_DOWNLOAD_MANUAL_ENCRYPT" : "DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE"
        try Data(manifest(chip, burn: "\"\(final)\"").utf8).write(to: URL(fileURLWithPath: m))
        let state = dir.appendingPathComponent("dev").path
        let created = try Espforge.run(["device", "create", "--chip", chip, "--state", state])
        #expect(created.status == 0, "\(created.err)")
        // The process killed right after the write was recorded (exit 137), then --resume.
        var env = ProcessInfo.processInfo.environment
        env["ESPFORGE_TEST_CRASH_AFTER"] = "write"
        let crashed = try ProcessRunner.run(Espforge.path, ["provision", "--manifest", m, "--port", "virtual:" + state], environment: env)
        #expect(crashed.status == 137, "\(crashed.out)\n\(crashed.err)")
        let written = try DeviceStore(directory: state).load()
        let r = try Espforge.run(["provision", "--manifest", m, "--port", "virtual:" + state, "--resume"])
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("write: skipped"), "\(r.out)")
        let d = try DeviceStore(directory: state).load()
        if mode == "host" { #expect(try FieldMapLine.xtsKey(d) == FieldMapLine.xtsKey(written), "the key of the killed run") }
        let s = try FieldMapLine.summary(d)
        #expect(s.security.secureBootEnabled && s.security.flashEncryptionEnabled)
        let digest = hex(try key.publicKey.keyDigest())
        #expect(s.keyBlocks.contains { $0.digest == digest })
        #expect(s.field(final)?.integer == 1, "the manifest's final eFuse")
        let list = try Espforge.run(["registry", "list", "--registry", dir.appendingPathComponent("registry.sqlite").path, "--json"])
        #expect(list.out.contains("\"\(chip)\"") && list.out.contains("provisioned"), "\(list.out)")

        // A manifest naming an ESP32 eFuse for this chip is refused when loaded, before any device.
        try Data(manifest(chip, burn: "\"JTAG_DISABLE\"").utf8).write(to: URL(fileURLWithPath: m))
        let other = dir.appendingPathComponent("dev2").path
        _ = try Espforge.run(["device", "create", "--chip", chip, "--state", other])
        let bad = try Espforge.run(["provision", "--manifest", m, "--port", "virtual:" + other])
        #expect(bad.status != 0 && bad.err.contains("JTAG_DISABLE") && bad.err.contains("is not an eFuse field of the"), "\(bad.err)")
        #expect(try DeviceStore(directory: other).load().flash.read(0, 4) == [0xFF, 0xFF, 0xFF, 0xFF])
    }

    @Test("the recorded eFuse summary agrees with `espefuse --virt summary` on the provisioned device's eFuse file",
          .enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), fixtures,
          arguments: [FieldMapCase(chip: "esp32s3", mode: .onChip, release: true), FieldMapCase(chip: "esp32c3", mode: .host, release: false)])
    func espefuseAgrees(c: FieldMapCase) async throws {
        let line = try FieldMapLine(chip: c.chip, mode: c.mode, release: c.release)
        defer { line.cleanup() }
        let registry = try await line.registry()
        let r = try #require(await line.provision(registry).first)
        #expect(r.ok, "\(r.failedStep ?? "") \(r.reason ?? "")")
        let mac = try line.targets[0].load().description.mac
        let summary = try #require(try await registry.device(mac: mac)?.efuseSummary)
        try await registry.close()
        let out = line.dir.appendingPathComponent("summary.json").path
        let o = try Oracle.run("espefuse", ["--virt", "--chip", c.chip, "--path-efuse-file", line.targets[0].store.efusePath,
                                            "summary", "--format", "json", "--file", out])
        #expect(o.status == 0, "\(o.err)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: [String: Any]])
        var compared = 0
        for (name, value) in summary {
            guard let theirs = json[name] else {
                #expect(name.hasPrefix("BLOCK_KEY"), "\(name) is not an espefuse field")
                continue
            }
            if let flag = theirs["value"] as? Bool {
                #expect(value == (flag ? "1" : "0"), "\(name): recorded \(value), espefuse \(flag)")
                compared += 1
            } else if let n = theirs["value"] as? Int {
                #expect(value == String(n), "\(name): recorded \(value), espefuse \(n)")
                compared += 1
            } else if name == "SPI_BOOT_CRYPT_CNT" {
                // espefuse shows the count as Enable/Disable (odd/even).
                #expect((theirs["value"] as? String) == ((Int(value) ?? 0).nonzeroBitCount % 2 == 1 ? "Enable" : "Disable"))
                compared += 1
            } else if name.hasPrefix("BLOCK_KEY"), let i = Int(name.dropFirst("BLOCK_KEY".count)) {
                let purpose = try #require(json["KEY_PURPOSE_\(i)"]?["value"] as? String)
                let readable = try #require(theirs["readable"] as? Bool), writeable = try #require(theirs["writeable"] as? Bool)
                if value == "empty" {
                    #expect(purpose == "USER" && readable && writeable, "\(name)")
                } else {
                    #expect(value.hasPrefix(purpose + ", burned"), "\(name): recorded \(value), espefuse purpose \(purpose)")
                    #expect(value.contains("read-protected") == !readable && value.contains("write-protected") == !writeable,
                            "\(name): recorded \(value), espefuse readable \(readable) writeable \(writeable)")
                }
                compared += 1
            }
        }
        #expect(compared == summary.count, "every recorded field compared: \(compared) of \(summary.count)")
    }

    @Test("S3 host mode with XTS-AES-256: a 64-byte key in the XTS_AES_256_KEY_1/_2 pair, escrowed before it is burned", fixtures)
    func aes256HostWithEscrow() async throws {
        var line = try FieldMapLine(chip: "esp32s3", mode: .host)
        defer { line.cleanup() }
        line.sdk.flashEncryptionAES256 = true
        let pair = EscrowPrivateKey.generateX25519()
        let escrowPrivate = try EscrowPrivateKey.load(pem: pair.privatePEM)
        line.job.escrow = try EscrowRecipient.load(pem: pair.publicPEM)
        let registry = try await line.registry()
        let r = try #require(await line.provision(registry).first)
        #expect(r.ok, "\(r.failedStep ?? "") \(r.reason ?? "")")
        let device = try line.targets[0].load()
        let s = try FieldMapLine.summary(device)
        let xts = s.keyBlocks.filter { $0.purposeName.hasPrefix("XTS_AES_") }
        #expect(xts.map(\.purposeName) == ["XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"], "\(xts)")
        #expect(xts.allSatisfy { $0.readProtected && $0.writeProtected })
        let key = try FieldMapLine.xtsKey(device)
        #expect(key.count == 64)
        let store = try #require(registry as? any EscrowStore)
        let mac = device.description.mac
        let sealed = try #require(try await store.sealedKeys(mac: mac).last { $0.kind == "flash_encryption_key" })
        let escrowed = try escrowPrivate.unseal(sealed.sealed, context: EscrowContext(mac: mac, identity: sealed.identity, kind: sealed.kind))
        #expect(escrowed == key, "the escrowed key is the device's key")
        let app = try #require(line.job.images.last)
        let raw = try #require(device.flash.read(app.offset, (app.bytes.count + 31) & ~31))
        let cipher = try FlashCipher(chip: try #require(ChipSpec.named("esp32s3")), key: key)
        #expect(Array(try cipher.decrypt(raw, at: app.offset).prefix(app.bytes.count)) == app.bytes)
        let summary = try #require(try await registry.device(mac: mac)?.efuseSummary)
        #expect(summary.values.filter { $0 == "XTS_AES_256_KEY_1, burned, read-protected, write-protected" }.count == 1)
        try await registry.close()
    }

    @Test("a C3 job whose build selects XTS-AES-256 (the C3 has XTS-AES-128 only): refused at preflight by PF026", fixtures)
    func aes256OnC3Refused() async throws {
        var line = try FieldMapLine(chip: "esp32c3", mode: .host)
        defer { line.cleanup() }
        line.sdk.flashEncryptionAES256 = true
        let registry = try await line.registry()
        let r = try #require(await line.provision(registry).first)
        #expect(!r.ok && r.failedStep == "preflight" && r.reason?.contains("PF026") == true, "\(r.failedStep ?? "") \(r.reason ?? "")")
        let d = try line.targets[0].load()
        #expect(try FieldMapLine.summary(d).keyBlocks.allSatisfy { $0.empty && $0.purpose == 0 }, "no key burned")
        try await registry.close()
    }

    @Test("an ESP32-S3 ESP-IDF build: `espforge init --build-dir` writes the manifest (no ESP32 eFuse names), provision signs with the S3 policy",
          fixtures)
    func s3BuildDirThroughInit() async throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-s3-build")
        defer { try? FileManager.default.removeItem(at: root) }
        let build = root.appendingPathComponent("build")
        for d in ["build/bootloader", "build/partition_table"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true)
        }
        func put(_ path: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: root.appendingPathComponent(path)) }
        // Secure Boot builds leave the bootloader out of flasher_args.json (flashed separately).
        try put("build/flasher_args.json", Array("""
            {
                "write_flash_args" : [ "--flash_mode", "dio", "--flash_size", "4MB", "--flash_freq", "80m" ],
                "flash_settings" : { "flash_mode": "dio", "flash_size": "4MB", "flash_freq": "80m" },
                "flash_files" : { "0x10000" : "hello_world.bin", "0x8000" : "partition_table/partition-table.bin" },
                "partition-table" : { "offset" : "0x8000", "file" : "partition_table/partition-table.bin", "encrypted" : "false" },
                "app" : { "offset" : "0x10000", "file" : "hello_world.bin", "encrypted" : "false" },
                "extra_esptool_args" : { "after" : "hard_reset", "before" : "default_reset", "stub" : true, "chip" : "esp32s3" }
            }
            """.utf8))
        try put("build/bootloader/bootloader.bin", try Scenarios.trimmed(try FieldMapLine.fixture("esp32s3", "bootloader.bin")))
        try put("build/partition_table/partition-table.bin", try FieldMapLine.fixture("esp32s3", "partition-table.bin"))
        try put("build/hello_world.bin", try FieldMapLine.fixture("esp32s3", "hello_world.bin"))
        try put("sdkconfig", Array("""
            CONFIG_IDF_TARGET="esp32s3"
            CONFIG_ESPTOOLPY_FLASHMODE="dio"
            CONFIG_ESPTOOLPY_FLASHFREQ="80m"
            CONFIG_ESPTOOLPY_FLASHSIZE="4MB"
            CONFIG_PARTITION_TABLE_SINGLE_APP=y
            CONFIG_PARTITION_TABLE_OFFSET=0x8000
            CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME=y
            CONFIG_SECURE_BOOT=y
            CONFIG_SECURE_BOOT_V2_ENABLED=y
            # CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES is not set
            CONFIG_SECURE_BOOT_SIGNING_KEY="secure_boot_signing_key.pem"
            CONFIG_SECURE_FLASH_ENC_ENABLED=y
            CONFIG_SECURE_FLASH_ENCRYPTION_AES128=y
            CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y

            """.utf8))
        let key = try Scenarios.keyA()
        try Data(key.pemRepresentation.utf8).write(to: root.appendingPathComponent("secure_boot_signing_key.pem"))
        let manifest = root.appendingPathComponent("espforge.toml").path
        let made = try Espforge.run(["init", "--build-dir", build.path, "-o", manifest])
        #expect(made.status == 0, "\(made.out)\n\(made.err)")
        let text = try String(contentsOfFile: manifest, encoding: .utf8)
        #expect(text.contains("type = \"esp32s3\"") && !text.contains("JTAG_DISABLE"), "\(text)")
        let state = root.appendingPathComponent("dev").path
        #expect(try Espforge.run(["device", "create", "--chip", "esp32s3", "--state", state]).status == 0)
        let r = try Espforge.run(["provision", "--manifest", manifest, "--port", "virtual:" + state, "--registry",
                                  root.appendingPathComponent("registry.sqlite").path])
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        let d = try DeviceStore(directory: state).load()
        let s = try FieldMapLine.summary(d)
        let digest = hex(try key.publicKey.keyDigest())
        #expect(s.security.secureBootEnabled && s.keyBlocks.contains { $0.digest == digest })
        #expect(s.security.flashEncryptionEnabled && s.security.spiBootCryptCnt == 1)
    }

    @Test("the registry's secret guard takes key block states and still refuses key bytes")
    func secretGuardKeyBlockStates() throws {
        for state in ["empty", "SECURE_BOOT_DIGEST0, burned, write-protected", "XTS_AES_128_KEY, burned",
                      "XTS_AES_256_KEY_1, burned, read-protected, write-protected", "USER, contents unknown, read-protected"] {
            #expect(throws: Never.self) { try SecretGuard.check(efuseSummary: ["BLOCK_KEY0": state]) }
        }
        for value in [String(repeating: "ab", count: 32), "XTS_AES_128_KEY, 00112233445566778899aabbccddeeff",
                      "SECURE_BOOT_DIGEST0, burned, \(String(repeating: "7f", count: 32))"] {
            #expect(throws: RegistryError.self) { try SecretGuard.check(efuseSummary: ["BLOCK_KEY0": value]) }
        }
    }
}
