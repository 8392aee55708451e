import EFuse
import ESPCore
import Foundation
import TestSupport
import Testing
@testable import VirtualDevice

/// In-process register access to an S3/C3 virtual device's protocol engine, with the faults of a
/// noisy link (register reads and writes carry no checksum) and a record of every write.
final class FieldMapEngineAccess: RegisterAccess, CrystalFrequencyReporting {
    let engine: ProtocolEngine
    var writes: [(address: UInt32, value: UInt32)] = []
    var readCount: [UInt32: Int] = [:]
    /// `flipRead[address] = (n, mask)`: `mask` is flipped in the n-th read of `address`.
    var flipRead: [UInt32: (n: Int, mask: UInt32)] = [:]
    /// Bits flipped on the way in the next write to an address.
    var flipNext: [UInt32: UInt32] = [:]
    var crystalHz = 40_000_000
    /// Once a program command for BLOCK0 was written, every read fails (a ROM loader that went
    /// silent after DIS_DOWNLOAD_MODE was burned and reloaded).
    var silentAfterBlock0Program = false
    private var silent = false
    struct Silent: Error {}

    init(chip: String, mac: String) throws {
        let d = try DeviceReports.description(chip: chip, flashSize: "4MB", chipRevision: nil, mac: mac, flashID: nil,
                                              statePath: "/nonexistent")
        engine = ProtocolEngine(device: try Device.create(d))
        engine.beginConnection()
    }

    var programCycles: Int { engine.connection.efusePrograms }
    var cells: EFuseBlockWords? { engine.device.cells }

    func readRegister(_ address: UInt32) throws -> UInt32 {
        if silent { throw Silent() }
        var v = engine.readRegister(address)
        readCount[address, default: 0] += 1
        if let f = flipRead[address], readCount[address] == f.n { v ^= f.mask }
        return v
    }

    func writeRegister(_ address: UInt32, _ value: UInt32) throws {
        writes.append((address, value))
        var v = value
        if let flip = flipNext.removeValue(forKey: address) { v ^= flip }
        engine.writeRegister(address, v)
        if silentAfterBlock0Program, let map = EFuseFieldMap.named(engine.device.description.chip),
           let regs = FieldMapControllerRegisters.named(map.chip), address == map.controllerBase + regs.cmd, v == regs.programCommand {
            silent = true
        }
    }
}

/// Issue 17 §2: live ESP32-S3 / ESP32-C3 eFuse burns over a port (``FieldMapEFuseClient``,
/// `espforge efuse … --port`).
@Suite struct FieldMapPortBurnTests {
    static let chips = ["esp32s3", "esp32c3"]
    static let macs = ["esp32s3": "f4:12:fa:10:20:30", "esp32c3": "58:cf:79:10:20:30"]

    static func key(_ seed: Int, _ n: Int = 32) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: seed &* 37 &+ $0 &* 13 &+ 1) } }

    // MARK: - in-process client

    @Test(arguments: chips)
    func burnsKeyAndFieldsAndReadsBack(chip: String) throws {
        let access = try FieldMapEngineAccess(chip: chip, mac: try #require(Self.macs[chip]))
        let client = try FieldMapEFuseClient(access: access, chip: chip)
        let map = client.map
        let key = Self.key(1)
        let op = FieldMapBurnOperation.burnKeys([.init(block: "BLOCK_KEY0", data: key, purpose: "XTS_AES_128_KEY")],
                                                noReadProtect: false, noWriteProtect: false)
        let (plan, before) = try client.plan(op)
        let report = try client.execute(plan, before: before)
        #expect(report.allStuck, "\(report.lines)")
        // BLOCK_KEY0 then BLOCK0 (purpose and protections), one cycle each.
        #expect(report.blocks.map(\.name) == ["BLOCK_KEY0", "BLOCK0"])
        #expect(report.programCycles == 2 && access.programCycles == 2)
        let cells = try #require(access.cells)
        let expected = plan.applied(to: before, map: map, hideReadProtected: false)
        #expect(cells == expected, "the fuses hold exactly the plan")
        // The key is read-protected now: the read registers show zeros, the report says so.
        let keyBlock = try #require(FieldMapBurnPlanner.block(named: "BLOCK_KEY0", map: map))
        #expect(report.readProtectedAfter.contains(keyBlock))
        #expect((0..<8).allSatisfy { report.after?.word(keyBlock, $0) == 0 })
        #expect(!report.lines.joined().contains(key.hexString), "no key material in the report")
        // The program registers are left cleared (as espefuse leaves them).
        let regs = client.registers
        for w in 0..<8 { #expect(access.engine.readRegister(map.controllerBase + regs.programData + UInt32(4 * w)) == 0) }
        // Timing as espefuse sets it for the 40 MHz crystal.
        #expect(access.engine.readRegister(map.controllerBase + regs.dacConf) & 0x1_FEFF == 0x1_FE28)
        #expect((access.engine.readRegister(map.controllerBase + regs.writeTiming1) >> 8) & 0xFFFF == 0x3000)
        #expect(access.engine.readRegister(map.controllerBase + regs.writeTiming2) & 0xFFFF == 0x190)
    }

    @Test("a bit flipped in one reading of the eFuses (plan, check before burning, read-back) is outvoted", arguments: chips)
    func flippedReadingIsOutvoted(chip: String) throws {
        for n in [1, 3, 5, 8] {
            let access = try FieldMapEngineAccess(chip: chip, mac: try #require(Self.macs[chip]))
            let client = try FieldMapEFuseClient(access: access, chip: chip)
            let map = client.map
            // BLOCK0 word 2 (SPI_BOOT_CRYPT_CNT / SECURE_BOOT_EN area): a bit no plan sets, flipped
            // in the n-th reading of that register.
            let address = map.controllerBase + map.readRegisterOffset(block: 0) + 8
            access.flipRead[address] = (n, 1 << 31)
            let (plan, before) = try client.plan(.burn([("DIS_PAD_JTAG", "1")]))
            let report = try client.execute(plan, before: before)
            #expect(report.allStuck, "reading \(n): \(report.lines)")
            #expect(report.blocks.map(\.strayBits) == [0] && report.programCycles == 1, "reading \(n)")
            #expect(report.after == EFuseFieldMapSummaryHelper.words(access), "reading \(n)")
        }
    }

    @Test("a bit flipped while loading PGM_DATA is caught before programming; the planned words are burned", arguments: chips)
    func flippedProgramWordIsReloaded(chip: String) throws {
        let access = try FieldMapEngineAccess(chip: chip, mac: try #require(Self.macs[chip]))
        let client = try FieldMapEFuseClient(access: access, chip: chip)
        let map = client.map
        access.flipNext[map.controllerBase + client.registers.programData + 12] = 1 << 9
        let (plan, before) = try client.plan(.burnKeys([.init(block: "BLOCK_KEY1", data: Self.key(2), purpose: "HMAC_UP")],
                                                       noReadProtect: true, noWriteProtect: true))
        let report = try client.execute(plan, before: before)
        #expect(report.allStuck && access.programCycles == 2, "\(report.lines)")
        #expect(access.cells == plan.applied(to: before, map: map, hideReadProtected: false))
    }

    @Test("refusals program nothing: a refused plan, a changed chip, a crystal without timing", arguments: chips)
    func refusalsBurnNothing(chip: String) throws {
        let access = try FieldMapEngineAccess(chip: chip, mac: try #require(Self.macs[chip]))
        let client = try FieldMapEFuseClient(access: access, chip: chip)
        #expect(throws: FieldMapBurnError.self) { _ = try client.plan(.burn([("SPI_BOOT_CRYPT_CNT", "9")])) }
        #expect(throws: FieldMapBurnError.self) { _ = try client.plan(.burn([("NO_SUCH_FIELD", "1")])) }
        // The chip changes between plan and burn.
        let (plan, before) = try client.plan(.burn([("DIS_PAD_JTAG", "1")]))
        let (other, otherBefore) = try client.plan(.burn([("DIS_DOWNLOAD_MANUAL_ENCRYPT", "1")]))
        _ = try client.execute(other, before: otherBefore)
        let cycles = access.programCycles
        #expect(throws: EFuseClientError.chipChanged) { _ = try client.execute(plan, before: before) }
        #expect(access.programCycles == cycles)
        // A 26 MHz crystal: refused before any register is written.
        let slow = try FieldMapEFuseClient(access: access, chip: chip, crystalHz: 26_000_000)
        let (p2, b2) = try slow.plan(.burn([("DIS_PAD_JTAG", "1")]))
        let writes = access.writes.count
        #expect(throws: FieldMapEFuseClientError.unsupportedCrystal(chip: chip, hz: 26_000_000)) { _ = try slow.execute(p2, before: b2) }
        #expect(access.writes.count == writes && access.programCycles == cycles)
    }

    @Test("DIS_DOWNLOAD_MODE: burned, reported as not verifiable when the loader goes silent; any other silence is an error",
          arguments: chips)
    func loaderSilencedByTheBurn(chip: String) throws {
        let access = try FieldMapEngineAccess(chip: chip, mac: try #require(Self.macs[chip]))
        access.silentAfterBlock0Program = true
        let client = try FieldMapEFuseClient(access: access, chip: chip)
        let (plan, before) = try client.plan(.burn([("DIS_DOWNLOAD_MODE", "1")]))
        let report = try client.execute(plan, before: before)
        #expect(report.blocks.map(\.unverified) == ["DIS_DOWNLOAD_MODE"] && report.after == nil && access.programCycles == 1)
        #expect(report.lines.first?.hasPrefix("SENT BLOCK0") == true, "\(report.lines)")
        let fuse = try #require(EFuseFieldMap.named(chip)?.field(named: "DIS_DOWNLOAD_MODE"))
        #expect(access.cells?.integer(fuse) == 1)

        let other = try FieldMapEngineAccess(chip: chip, mac: try #require(Self.macs[chip]))
        other.silentAfterBlock0Program = true
        let c2 = try FieldMapEFuseClient(access: other, chip: chip)
        let (p2, b2) = try c2.plan(.burn([("DIS_PAD_JTAG", "1")]))
        #expect(throws: FieldMapEngineAccess.Silent.self) { _ = try c2.execute(p2, before: b2) }
    }

    // MARK: - espforge efuse … --port against espefuse --virt

    final class Bench {
        let chip: String
        let root: URL
        let state: String
        let theirs: String
        init(_ chip: String) throws {
            self.chip = chip
            root = try TestEnvironment.temporaryDirectory("espforge-fieldmap-port")
            state = root.appendingPathComponent("dev").path
            let r = try Espforge.run(["device", "create", "--state", state, "--chip", chip, "--mac", FieldMapPortBurnTests.macs[chip] ?? ""])
            guard r.status == 0 else { throw TestSupportError.missing("device create failed: \(r.err)") }
            // espefuse starts from the same fresh eFuses (the device's efuse.bin is espefuse's format).
            theirs = root.appendingPathComponent("espefuse.bin").path
            try FileManager.default.copyItem(atPath: efusePath, toPath: theirs)
        }
        deinit { try? FileManager.default.removeItem(at: root) }

        var port: String { "virtual:" + state }
        var efusePath: String { state + "/efuse.bin" }
        func path(_ name: String) -> String { root.appendingPathComponent(name).path }
        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            try Data(bytes).write(to: URL(fileURLWithPath: path(name)))
            return path(name)
        }
        func bytes(_ p: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: p))) }

        /// The block words of both files. Only the blocks' read registers are compared: the device
        /// keeps the controller's volatile registers (PGM_DATA, PGM_CHECK_VALUE, CONF, CMD, the
        /// timing registers) in memory and saves the fuses only, while espefuse's virtual file
        /// keeps its register space (its last check value, its timing bits) — they may differ.
        func blocks() throws -> (mine: EFuseBlockWords, theirs: EFuseBlockWords) {
            (try EFuseVirtualFile.read(efusePath, chip: chip).1, try EFuseVirtualFile.read(theirs, chip: chip).1)
        }

        @discardableResult
        func step(oracle: [String], mine: [String], refused: Bool = false,
                  sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
            let before = try bytes(efusePath)
            let o = try Oracle.run("espefuse", ["--virt", "--chip", chip, "--path-efuse-file", theirs, "--do-not-confirm"] + oracle)
            let m = try Espforge.run(["efuse"] + mine + ["--port", port, "--yes"])
            if refused {
                #expect(o.status != 0, "espefuse accepted \(oracle)", sourceLocation: sourceLocation)
                #expect(m.status == 1 && m.err.contains("error:"), "espforge did not refuse \(mine): \(m.out)", sourceLocation: sourceLocation)
                let unchanged = try bytes(efusePath) == before
                #expect(unchanged, "a refused burn changed the device", sourceLocation: sourceLocation)
            } else {
                #expect(o.status == 0, "espefuse \(oracle): \(o.out.suffix(600)) \(o.err.suffix(300))", sourceLocation: sourceLocation)
                #expect(m.status == 0 && m.out.contains("all requested bits read back as burned"), "espforge \(mine): \(m.out) \(m.err)",
                        sourceLocation: sourceLocation)
            }
            let (a, b) = try blocks()
            let diff = (0..<a.blocks.count).filter { a.blocks[$0] != b.blocks[$0] }
            #expect(diff.isEmpty, "\(chip) after \(mine): blocks \(diff) differ", sourceLocation: sourceLocation)
            return m
        }
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func sameBlocksAsEspefuseVirt(chip: String) throws {
        let b = try Bench(chip)
        let k1 = try b.write("k1.bin", Self.key(1)), k2 = try b.write("k2.bin", Self.key(2))
        let pem = b.path("sb.pem")
        let g = try Oracle.run("espsecure", ["generate-signing-key", "--version", "2", "--scheme", "ecdsa256", pem])
        #expect(g.status == 0, "\(g.err)")

        // Without --yes: the plan, status 2, nothing burned.
        let fresh = try b.bytes(b.efusePath)
        let plan = try Espforge.run(["efuse", "burn-key", "--port", b.port, "BLOCK_KEY0", k1, "XTS_AES_128_KEY"])
        #expect(plan.status == 2 && plan.out.contains("BLOCK_KEY0") && plan.out.contains("--yes"), "\(plan.out) \(plan.err)")
        #expect(!plan.out.contains(Self.key(1).hexString))
        #expect(try b.bytes(b.efusePath) == fresh, "without --yes nothing is burned")
        // --chip naming another chip than the board's: refused, nothing burned.
        let other = chip == "esp32s3" ? "esp32c3" : "esp32s3"
        let wrong = try Espforge.run(["efuse", "burn", "--port", b.port, "--chip", other, "DIS_PAD_JTAG=1", "--yes"])
        #expect(wrong.status == 1 && wrong.err.contains("--chip \(other) was given"), "\(wrong.err)")
        #expect(try b.bytes(b.efusePath) == fresh)

        try b.step(oracle: ["burn-key", "BLOCK_KEY0", k1, "XTS_AES_128_KEY", "BLOCK_KEY1", k2, "HMAC_UP"],
                   mine: ["burn-key", "--chip", chip, "BLOCK_KEY0", k1, "XTS_AES_128_KEY", "BLOCK_KEY1", k2, "HMAC_UP"])
        try b.step(oracle: ["burn-key-digest", "BLOCK_KEY2", pem, "SECURE_BOOT_DIGEST0"],
                   mine: ["burn-key-digest", "BLOCK_KEY2", pem, "SECURE_BOOT_DIGEST0"])
        try b.step(oracle: ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "1", "SECURE_BOOT_EN", "1", "DIS_PAD_JTAG", "1", "SECURE_VERSION", "0x5"],
                   mine: ["burn", "SPI_BOOT_CRYPT_CNT=1", "SECURE_BOOT_EN=1", "DIS_PAD_JTAG=1", "SECURE_VERSION=0x5"])
        try b.step(oracle: ["burn-efuse", "CUSTOM_MAC", "10:22:33:44:55:66"], mine: ["burn", "CUSTOM_MAC=10:22:33:44:55:66"])
        try b.step(oracle: ["write-protect-efuse", "DIS_PAD_JTAG"], mine: ["write-protect", "DIS_PAD_JTAG"])
        try b.step(oracle: ["read-protect-efuse", "BLOCK_SYS_DATA2"], mine: ["read-protect", "BLOCK_SYS_DATA2"])
        // Refused by both: a bit would have to clear; a Reed–Solomon block burned twice.
        try b.step(oracle: ["burn-efuse", "SPI_BOOT_CRYPT_CNT", "2"], mine: ["burn", "SPI_BOOT_CRYPT_CNT=2"], refused: true)
        try b.step(oracle: ["burn-key", "BLOCK_KEY1", k1, "HMAC_UP"], mine: ["burn-key", "BLOCK_KEY1", k1, "HMAC_UP"], refused: true)

        // The read-protected keys are in the fuses (efuse-protected.bin), as planned.
        let map = try #require(EFuseFieldMap.named(chip))
        let hidden = try EFuseVirtualFile.read(b.state + "/efuse-protected.bin", chip: chip).1
        let k0 = try #require(FieldMapBurnPlanner.block(named: "BLOCK_KEY0", map: map))
        let want = try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY0", data: Self.key(1), purpose: "XTS_AES_128_KEY")],
                                                    words: EFuseBlockWords(map: map), map: map)
            .applied(to: EFuseBlockWords(map: map), map: map, hideReadProtected: false)
        #expect(hidden.blocks[k0] == want.blocks[k0])
        // The summary over the port is the summary of espefuse's file.
        let viaPort = try Espforge.run(["efuse", "summary", "--port", b.port])
        let viaFile = try Espforge.run(["efuse", "summary", "--chip", chip, "--virt-file", b.theirs])
        #expect(viaPort.status == 0 && viaPort.out == viaFile.out, "\(viaPort.err)")
    }

    /// Over socket:// (`device serve`): the chip is detected through the ROM loader
    /// (GET_SECURITY_INFO), espforge burns, and espefuse 5.6.0 reading the same served device
    /// over the socket sees the burn. An ESP32 served the same way still takes the ESP32 path.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func overSocketEspefuseSeesTheBurn(chip: String) throws {
        let b = try Bench(chip)
        let k = try b.write("hmac.bin", Self.key(7))
        let server = try DeviceServerProcess(state: b.state)
        defer { server.stop() }
        let base = ["--port", server.url, "--before", "no-reset"]
        var r = try Espforge.run(["efuse", "burn-key"] + base + ["--chip", chip, "BLOCK_KEY3", k, "HMAC_DOWN_ALL", "--yes"])
        #expect(r.status == 0 && r.out.contains("all requested bits read back as burned"), "\(r.out) \(r.err)")
        r = try Espforge.run(["efuse", "burn"] + base + ["DIS_PAD_JTAG=1", "SECURE_VERSION=3", "--yes"])
        #expect(r.status == 0 && r.out.contains("OK   BLOCK0"), "\(r.out) \(r.err)")
        let summary = try Espforge.run(["efuse", "summary"] + base + ["--json"])
        #expect(summary.status == 0, "\(summary.err)")
        let json = b.path("espefuse.json")
        let o = try Oracle.run("espefuse", ["--chip", chip, "--port", server.url, "--before", "no-reset", "summary", "--format", "json", "--file", json])
        #expect(o.status == 0, "\(o.out.suffix(600)) \(o.err.suffix(300))")
        let theirs = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: [String: Any]] ?? [:]
        #expect(theirs["DIS_PAD_JTAG"]?["value"] as? Bool == true)
        #expect(theirs["SECURE_VERSION"]?["value"] as? Int == 3)
        #expect(theirs["KEY_PURPOSE_3"]?["value"] as? String == "HMAC_DOWN_ALL", "\(theirs["KEY_PURPOSE_3"] ?? [:])")
        #expect(theirs["BLOCK_KEY3"]?["readable"] as? Bool == false && theirs["BLOCK_KEY3"]?["writeable"] as? Bool == false)
    }

    @Test func esp32OverSocketIsUnchanged() throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-esp32-socket")
        defer { try? FileManager.default.removeItem(at: root) }
        let state = root.appendingPathComponent("dev").path
        #expect(try Espforge.run(["device", "create", "--state", state, "--mac", "24:0a:c4:00:44:55"]).status == 0)
        let server = try DeviceServerProcess(state: state)
        defer { server.stop() }
        let r = try Espforge.run(["efuse", "summary", "--port", server.url, "--before", "no-reset"])
        #expect(r.status == 0 && r.out.contains("MAC 24:0a:c4:00:44:55"), "\(r.out) \(r.err)")
        let wrong = try Espforge.run(["efuse", "summary", "--port", server.url, "--before", "no-reset", "--chip", "esp32c3"])
        #expect(wrong.status == 1 && wrong.err.contains("is an ESP32"), "\(wrong.err)")
    }
}

enum EFuseFieldMapSummaryHelper {
    /// The device's eFuses as its read registers show them (read straight from the engine).
    static func words(_ access: FieldMapEngineAccess) -> EFuseBlockWords? {
        guard let map = EFuseFieldMap.named(access.engine.device.description.chip) else { return nil }
        let blocks = (0..<map.blockCount).map { b in
            (0..<map.blockWordCounts[b]).map { access.engine.readRegister(map.controllerBase + map.readRegisterOffset(block: b) + UInt32(4 * $0)) }
        }
        return try? EFuseBlockWords(map: map, blocks: blocks)
    }
}
