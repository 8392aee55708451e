import Crypto
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
