import Crypto
import FlashEncryption
import KeyCustody
import EFuse
import Foundation
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// The soak drill's audit (`scripts/soak-provision`, ``SoakAudit``) and what it found.
@Suite("Soak audit")
struct SoakAuditTests {
    func audit(_ line: Line, _ registry: any DeviceRegistry, job: ProvisioningJob? = nil, scan: [String] = []) async throws -> SoakAudit.Figures {
        try await SoakAudit(job: job ?? line.job, registry: registry, secureBoot: true)
            .run(deviceFolders: line.targets.map(\.store.directory), scanPaths: scan, poolRows: line.job.identities.count)
    }

    @Test("a clean line audits clean; a flipped flash byte, a stray write and a leaked key are each found", fixtures)
    func findsWhatIsWrong() async throws {
        let line = try Line(count: 2, mode: .host)
        defer { line.cleanup() }
        let registry = try await Backend.sqlite.open(line.dir)
        let results = try await line.provision(registry)
        #expect(results.allSatisfy { $0.ok })
        var f = try await audit(line, registry, scan: [line.dir.path])
        #expect(f.mustBeZeroHold, "\(f.problems)")
        #expect(f.provisioned == 2 && f.keysSearched == 6 && f.identitiesFree == 1 && f.poolRows == 3)

        // One ciphertext bit of the app, and a byte far outside every image.
        let flash0 = line.targets[0].store.directory + "/flash.bin"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: flash0)))
        bytes[0x60000 + 4000] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: flash0))
        let flash1 = line.targets[1].store.directory + "/flash.bin"
        bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: flash1)))
        bytes[0x3F_0000] = 0x00
        try Data(bytes).write(to: URL(fileURLWithPath: flash1))
        // A device's flash-encryption key, hex as a key file tool would print it, in a log.
        let key = try #require(ESP32FlashKey.key(try line.targets[0].load().efuses))
        try Data(("note " + hex(key) + "\n").utf8).write(to: line.dir.appendingPathComponent("station.log"))
        f = try await audit(line, registry, scan: [line.dir.path])
        #expect(f.silentWrongWrites == 2)
        #expect(f.keyBytesOutside == 1)
        #expect(f.problems.contains { $0.contains("app: content differs") })
        #expect(f.problems.contains { $0.contains("outside the planned regions written at 0x3f0000") })
        #expect(f.problems.contains { $0.contains("flash-encryption key (hex)") && $0.hasSuffix("station.log") })
        let lines = f.problems.joined().lowercased()
        #expect(!lines.contains(hex(key)), "problem lines never carry key bytes")
        #expect(!f.mustBeZeroHold)
        try await registry.close()
    }

    /// Found by the soak drill: a run killed after `write` and resumed re-signed the images
    /// (RSA-PSS signatures differ from run to run) and its identify step recorded the new images'
    /// hashes, so the provisioned record named images the flash does not hold.
    @Test("resumed after the write, the record keeps the hashes of the images written", fixtures, arguments: Backend.enabled)
    func resumeKeepsWrittenImageHashes(backend: Backend) async throws {
        let line = try Line(count: 1, mode: .host)
        defer { line.cleanup() }
        let registry = try await backend.open(line.dir)
        // Run 1 writes and boots, then stops at the final eFuses (a field that does not exist).
        var first = line.job
        first.finalBurn = ["NOT_A_FIELD"]
        let r1 = try await line.provision(registry, job: first)
        #expect(r1.first?.failedStep == "final-efuses")
        // Run 2 (resume) signs the app again: other signature bytes, same content.
        var second = line.job
        let resigned = try Scenarios.app(key: try Scenarios.keyA())
        #expect(resigned != line.job.images[2].bytes, "RSA-PSS signatures differ from run to run")
        second.images[2].bytes = resigned
        let r2 = try await line.provision(registry, job: second, resume: true)
        #expect(r2.first?.ok == true, "\(r2.first?.reason ?? "")")
        let mac = try line.targets[0].load().description.mac
        let record = try #require(try await registry.device(mac: mac))
        let written = SHA256.hash(data: line.job.images[2].bytes).map { String(format: "%02x", $0) }.joined()
        #expect(record.facts.imageHashes["app"] == written)
        // The audit agrees (on PostgreSQL the shared test database holds other tests' devices:
        // only this device's findings count).
        let f = try await audit(line, registry, job: second)
        #expect(f.silentWrongWrites == 0 && !f.problems.contains { $0.contains(mac) }, "\(f.problems)")
        try await registry.close()
    }
}

/// A link that is lost right after the write step armed the chip (FLASH_CRYPT_CNT and the key's
/// protection burned): the step fails after the chip changed, as when the process is killed there.
final class LostAfterArming: DeviceLink {
    let inner: any DeviceLink
    var armed = false
    init(_ inner: any DeviceLink) { self.inner = inner }
    var port: String { inner.port }
    func identify() throws -> LinkFacts { try inner.identify() }
    func readEFuses() throws -> EFuseArray {
        if armed { throw ProvisioningError(.write, "link lost (test)") }
        return try inner.readEFuses()
    }
    func burn(_ requests: [EFuseBurnRequest]) throws {
        try inner.burn(requests)
        if requests.contains(.readProtect("BLOCK1")) { armed = true }
    }
    func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])]) throws { try inner.write(regions) }
    func firstBoot(_ request: FirstBootRequest) throws -> FirstBootReport { try inner.firstBoot(request) }
    var virtualMilliseconds: Int { inner.virtualMilliseconds }
    func close() { inner.close() }
}

struct LostAfterArmingTarget: ProvisioningTarget {
    let inner: VirtualTarget
    var port: String { inner.port }
    func connect() throws -> any DeviceLink { LostAfterArming(try inner.connect()) }
}

extension SoakAuditTests {
    /// Found by the soak drill: SIGKILL between the write's arming burn and its `ok` record left
    /// the device refused on every `--resume` ("preflight: the device is already secured"); had
    /// it gone on, the resumed run would also have escrowed a fresh flash key and NVS keys that
    /// the device never received (BLOCK1 reads as zeros once read-protected).
    @Test("killed after the write armed the chip: --resume completes the device, escrow keeps the keys it holds",
          fixtures, arguments: Backend.enabled)
    func resumeAfterArming(backend: Backend) async throws {
        let line = try Line(count: 1, mode: .host)
        defer { line.cleanup() }
        let pair = EscrowPrivateKey.generateX25519()
        let escrowPrivate = try EscrowPrivateKey.load(pem: pair.privatePEM)
        var job = line.job
        job.escrow = try EscrowRecipient.load(pem: pair.publicPEM)
        let registry = try await backend.open(line.dir)
        let r1 = try await line.provision(registry, targets: [LostAfterArmingTarget(inner: line.targets[0])], job: job)
        #expect(r1.first?.failedStep == "write")
        var device = try line.targets[0].load()
        #expect(int(device.efuses, "FLASH_CRYPT_CNT") == 1 && device.efuses.isReadProtected(bit: 0), "armed before the link was lost")

        let r2 = try await line.provision(registry, job: job, resume: true)
        #expect(r2.first?.ok == true, "\(r2.first?.failedStep ?? ""): \(r2.first?.reason ?? "")")
        device = try line.targets[0].load()
        let mac = device.description.mac
        // The newest escrowed keys are the ones the device holds.
        let store = try #require(registry as? any EscrowStore)
        let records = try await store.sealedKeys(mac: mac)
        let fe = try #require(records.last { $0.kind == "flash_encryption_key" })
        let feKey = try escrowPrivate.unseal(fe.sealed, context: EscrowContext(mac: mac, identity: fe.identity, kind: fe.kind))
        #expect(feKey == Provisioner.keyBytes(device.efuses))
        let nvs = try #require(records.last { $0.kind == "nvs_keys" })
        let nvsKeys = try escrowPrivate.unseal(nvs.sealed, context: EscrowContext(mac: mac, identity: nvs.identity, kind: nvs.kind))
        let part = try #require(job.partition(named: "nvs_key"))
        let plain = try FlashCipher(chip: .esp32, key: feKey, flashCryptConfig: 0xF)
            .decrypt(try #require(device.flash.read(Int(part.offset), 4096)), at: Int(part.offset))
        #expect(Array(plain.prefix(64)) == nvsKeys)
        // And the audit finds the chip as planned and the record consistent.
        let f = try await audit(line, registry, job: job)
        #expect(f.silentWrongWrites == 0 && !f.problems.contains { $0.contains(mac) }, "\(f.problems)")
        try await registry.close()
    }
}

/// A link whose key burn programs BLOCK1 but not FLASH_CRYPT_CONFIG (BLOCK0), as when the
/// process is killed between the two: `lost` ends the step there; otherwise it carries on.
final class KeyWithoutConfig: DeviceLink {
    let inner: any DeviceLink
    let lost: Bool
    init(_ inner: any DeviceLink, lost: Bool) { self.inner = inner; self.lost = lost }
    var port: String { inner.port }
    func identify() throws -> LinkFacts { try inner.identify() }
    func readEFuses() throws -> EFuseArray { try inner.readEFuses() }
    func burn(_ requests: [EFuseBurnRequest]) throws {
        let keyOnly = requests.filter { if case .flashEncryptionKey = $0 { return true } else { return false } }
        guard !keyOnly.isEmpty else { return try inner.burn(requests) }
        try inner.burn(keyOnly)
        if lost { throw ProvisioningError(.write, "link lost (test)") }
    }
    func write(_ regions: [(name: String, offset: Int, bytes: [UInt8])]) throws { try inner.write(regions) }
    func firstBoot(_ request: FirstBootRequest) throws -> FirstBootReport { try inner.firstBoot(request) }
    var virtualMilliseconds: Int { inner.virtualMilliseconds }
    func close() { inner.close() }
}

struct KeyWithoutConfigTarget: ProvisioningTarget {
    let inner: VirtualTarget
    let lost: Bool
    var port: String { inner.port }
    func connect() throws -> any DeviceLink { KeyWithoutConfig(try inner.connect(), lost: lost) }
}

extension SoakAuditTests {
    /// Found by the soak drill (6 of 1,000 devices on PostgreSQL): killed while the key burn was
    /// programmed, a device kept its key in BLOCK1 but FLASH_CRYPT_CONFIG stayed 0; the resumed
    /// write reused the key without the tweak's eFuse, armed the chip, and every first boot failed
    /// ("not a bootloader image as the ROM reads them"). Resume now burns the missing tweak bits:
    /// in the write (`lost`: killed there; the resumed write reuses the key) and before the first
    /// boot (not lost: the chip armed with the tweak missing, as the drill's devices were).
    @Test("key burned without FLASH_CRYPT_CONFIG: --resume repairs the tweak and the device boots",
          fixtures, arguments: [true, false])
    func resumeRepairsCryptConfig(lost: Bool) async throws {
        let line = try Line(count: 1, mode: .host)
        defer { line.cleanup() }
        let registry = try await Backend.sqlite.open(line.dir)
        let r1 = try await line.provision(registry, targets: [KeyWithoutConfigTarget(inner: line.targets[0], lost: lost)])
        if lost {
            #expect(r1.first?.failedStep == "write", "\(r1.first?.reason ?? "")")
            #expect(int(try line.targets[0].load().efuses, "FLASH_CRYPT_CONFIG") == 0)
            let r2 = try await line.provision(registry, resume: true)
            #expect(r2.first?.ok == true, "\(r2.first?.failedStep ?? ""): \(r2.first?.reason ?? "")")
        } else {
            // Armed with the tweak missing: the first boot burns it before booting.
            #expect(r1.first?.ok == true, "\(r1.first?.failedStep ?? ""): \(r1.first?.reason ?? "")")
        }
        let device = try line.targets[0].load()
        #expect(int(device.efuses, "FLASH_CRYPT_CONFIG") == 0xF)
        let f = try await audit(line, registry)
        #expect(f.mustBeZeroHold && f.provisioned == 1, "\(f.problems)")
        try await registry.close()
    }
}

/// A registry whose process "dies" right after the device's record became `provisioned`: every
/// later write fails, as if the provisioning process had been killed there.
final class DiesAfterProvisioned: DeviceRegistry, @unchecked Sendable {
    let inner: any DeviceRegistry
    let lock = NSLock()
    var dead = false
    init(_ inner: any DeviceRegistry) { self.inner = inner }
    func kill() { lock.withLock { dead = true } }
    func alive() throws {
        lock.lock(); defer { lock.unlock() }
        if dead { throw RegistryError.database("process killed (test)") }
    }
    func register(_ facts: DeviceFacts) async throws { try alive(); try await inner.register(facts) }
    func loadIdentities(pool: String, _ rows: [IdentityRow]) async throws -> Int { try alive(); return try await inner.loadIdentities(pool: pool, rows) }
    func claimIdentity(pool: String, mac: String) async throws -> ClaimedIdentity { try alive(); return try await inner.claimIdentity(pool: pool, mac: mac) }
    func identity(pool: String, mac: String) async throws -> ClaimedIdentity? { try await inner.identity(pool: pool, mac: mac) }
    func poolStatus(pool: String) async throws -> (total: Int, claimed: Int) { try await inner.poolStatus(pool: pool) }
    func beginStep(mac: String, step: String, detail: String?) async throws -> Int64 { try alive(); return try await inner.beginStep(mac: mac, step: step, detail: detail) }
    func finishStep(_ id: Int64, outcome: StepOutcome, detail: String?) async throws { try alive(); try await inner.finishStep(id, outcome: outcome, detail: detail) }
    func steps(mac: String) async throws -> [StepRecord] { try await inner.steps(mac: mac) }
    func lastSafeStep(mac: String) async throws -> StepRecord? { try await inner.lastSafeStep(mac: mac) }
    func finish(mac: String, status: DeviceStatus, efuseSummary: [String: String]?, failure: String?) async throws {
        try alive()
        try await inner.finish(mac: mac, status: status, efuseSummary: efuseSummary, failure: failure)
        if status == .provisioned { kill() }
    }
    func device(mac: String) async throws -> DeviceRecord? { try await inner.device(mac: mac) }
    func devices() async throws -> [DeviceRecord] { try await inner.devices() }
    func recordEvent(mac: String?, kind: String, station: String?, detail: String?) async throws { try alive(); try await inner.recordEvent(mac: mac, kind: kind, station: station, detail: detail) }
    func events(mac: String?) async throws -> [RegistryEvent] { try await inner.events(mac: mac) }
    func markRMA(mac: String, reason: String, station: String?) async throws -> DeviceRecord { try alive(); return try await inner.markRMA(mac: mac, reason: reason, station: station) }
    func close() async throws {}
}

extension SoakAuditTests {
    /// Found by the soak drill (1 of 1,000 devices on PostgreSQL): killed between the record
    /// step's `provisioned` and its `ok`, the step stayed `running` for good: the next run leaves
    /// a provisioned board alone before it looks at steps. Now that run closes it.
    @Test("killed between provisioned and the record step's ok: the next run closes the step", fixtures, arguments: Backend.enabled)
    func closesRecordStep(backend: Backend) async throws {
        let line = try Line(count: 1, mode: .host)
        defer { line.cleanup() }
        let registry = try await backend.open(line.dir)
        _ = try await line.provision(DiesAfterProvisioned(registry))
        let mac = try line.targets[0].load().description.mac
        #expect(try await registry.device(mac: mac)?.status == .provisioned)
        #expect(try await registry.steps(mac: mac).last.map { $0.step == "record" && $0.outcome == .running } == true)
        let again = try await line.provision(registry, resume: true)
        #expect(again.first?.state == .skipped)
        let steps = try await registry.steps(mac: mac)
        #expect(!steps.contains { $0.outcome == .running }, "\(steps.map { "\($0.step) \($0.outcome)" })")
        #expect(steps.last.map { $0.step == "record" && $0.outcome == .ok } == true)
        let f = try await audit(line, registry)
        #expect(!f.problems.contains { $0.contains(mac) }, "\(f.problems)")
        try await registry.close()
    }
}
