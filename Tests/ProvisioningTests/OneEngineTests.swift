import Foundation
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// One safety-rule engine: the same write — the seed's bootloader, its header rewritten after
/// signing — is refused with the same code (PF003) by `flash`, `preflight` and `provision`, on
/// every kind of link (virtual: in this process, virtual: through the loader, socket://), and
/// nothing is written.
@Suite("One safety-rule engine for flash, preflight and provision", .serialized)
struct OneEngineTests {
    static let code = "PF003"

    @Test("the seed's bootloader: the same code from flash, preflight and provision, on every link", fixtures)
    func sameWriteSameCode() async throws {
        let bad = try Scenarios.seedBootloader(key: try Scenarios.keyA(), rehash: false)
        let line = try Line(count: 1, mode: .onChip, bootloader: bad)
        defer { line.cleanup() }
        let dir = line.targets[0].store.directory
        let file = line.dir.appendingPathComponent("seed-bootloader.bin")
        try Data(bad).write(to: file)
        func untouched() throws -> Bool { try line.targets[0].load().flash.read(0x1000, 4) == [0xFF, 0xFF, 0xFF, 0xFF] }

        // flash, over virtual: (the CLI, through the ROM loader).
        let flash = try Espforge.run(["flash", "write", "--port", "virtual:" + dir, "--no-stub", "0x1000", file.path])
        #expect(flash.status == 1 && flash.err.contains("\(Self.code) error"), "\(flash.err)")
        #expect(flash.out.contains("REFUSED"))
        #expect(try untouched())

        // preflight, against the device folder and against the chip read through its loader.
        for target in [["--state", dir], ["--port", "virtual:" + dir]] {
            let pre = try Espforge.run(["preflight", "--json"] + target + ["0x1000", file.path])
            #expect(pre.status == 1, "\(target): \(pre.err)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(pre.out.utf8)) as? [String: Any])
            let findings = try #require(json["findings"] as? [[String: Any]])
            #expect(findings.contains { $0["code"] as? String == Self.code && $0["severity"] as? String == "error" },
                    "\(target): \(findings.map { $0["code"] ?? "" })")
        }

        // provision's write, on both kinds of link to the same device.
        let links: [any ProvisioningTarget] = [line.targets[0], LoaderTarget(port: "virtual:" + dir, options: LoaderLinkOptions())]
        for target in links {
            let link = try target.connect()
            defer { link.close() }
            do {
                try link.write([(name: "bootloader", offset: 0x1000, bytes: bad)])
                Issue.record("\(target.port): the write was not refused")
            } catch {
                #expect("\(error)".contains(Self.code), "\(target.port): \(error)")
            }
            #expect(try untouched(), "\(target.port)")
        }

        // provision, the whole pipeline: in process (virtual:) and served over socket://.
        let registry = try await Backend.sqlite.open(line.dir)
        let inProcess = try #require(try await line.provision(registry).first)
        #expect(!inProcess.ok && inProcess.failedStep == "preflight" && inProcess.reason?.contains(Self.code) == true,
                "\(inProcess.failedStep ?? "") \(inProcess.reason ?? "")")
        let served = try ServedLine(line)
        let overSocket = try #require(try await served.provision(registry).first)
        _ = try served.stopAndLoad()
        #expect(!overSocket.ok && overSocket.failedStep == "preflight" && overSocket.reason?.contains(Self.code) == true,
                "\(overSocket.failedStep ?? "") \(overSocket.reason ?? "")")
        #expect(try untouched())
        try await registry.close()
    }

    @Test("a forced write (drills: `preflightRules = false`) overrides the overridable finding and writes", fixtures)
    func writeRefusesWithoutPreflight() throws {
        let bad = try Scenarios.seedBootloader(key: try Scenarios.keyA(), rehash: false)
        let line = try Line(count: 1, mode: .onChip, bootloader: bad)
        defer { line.cleanup() }
        // PF003 is overridable while ABS_DONE_1 is not burned: forced, the bytes are written as given.
        let link = try line.targets[0].connect()
        defer { link.close() }
        try link.write([(name: "bootloader", offset: 0x1000, bytes: bad)], force: true)
        #expect(try line.targets[0].load().flash.read(0x1000, bad.count) == bad)
    }
}
