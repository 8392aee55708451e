import Crypto
import EFuse
import ESPCore
import Flasher
import Foundation
import Testing
import TestSupport
import Transport
import VirtualDevice

/// Random regions: a compressible one, an incompressible one, one with an odd length.
private func sampleRegions(_ rng: inout SeededRandom) -> [FlashRegion] {
    var text: [UInt8] = []
    while text.count < 70_000 { text += Array("espforge flashes \(text.count) bytes\n".utf8) }
    return [
        FlashRegion(address: 0x10000, data: rng.bytes(50_000), name: "random.bin"),
        FlashRegion(address: 0x30000, data: text, name: "text.bin"),
        FlashRegion(address: 0x9000, data: rng.bytes(4097 + Int.random(in: 0...2, using: &rng)), name: "odd.bin"),
    ]
}

private func expectOnFlash(_ dir: URL, _ regions: [FlashRegion], seed: UInt64) throws {
    let flash = try flashContents(dir)
    for r in regions {
        let same = Array(flash[r.address..<(r.address + r.data.count)]) == r.data
        #expect(same, "region \(r.name) at \(r.address) differs, seed \(seed)")
    }
}

@Suite(.serialized) struct VirtualSessionTests {
    @Test(arguments: [(false, true), (false, false), (true, true), (true, false)])
    func writeVerifyReadInProcess(stubMode: Bool, compress: Bool) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stub = stubMode ? try esptoolStub() : nil
        if stubMode, stub == nil, !Oracle.availableOrCI { return }
        #expect(!stubMode || stub != nil, "esptool stub JSON not found")
        let regions = sampleRegions(&rng)
        let session = FlashSession(port: "virtual:" + dir.path, options: options(stub: stub, compress: compress))
        try session.connect()
        #expect(session.client?.isStub == stubMode)
        let plan = FlashSafety.check(FlashRequest(regions: regions), facts: try #require(session.facts))
        let results = try session.write(plan)
        #expect(results.map(\.outcome) == [.written, .written, .written])
        // Compression is used when it shrinks, skipped when it does not (random data), and
        // never through the ESP32 ROM loader (its compressed write corrupts what follows).
        #expect(results[0].compressed == false)
        #expect(results[1].compressed == (compress && stubMode))
        let back = try session.read(address: 0x30000, size: 70_000)
        #expect(Array(back[0..<70_000]) == Array(regions[1].data[0..<70_000]))
        #expect(try session.verify(regions).allSatisfy { $0.outcome == .verified })
        session.finish()
        try expectOnFlash(dir, regions, seed: seed)
        let s = try stats(dir)
        #expect(s.total.bytesIn > 0)

        // --skip-unchanged: a second run sends no data, the MD5s match.
        var o = options(stub: stub, compress: compress)
        o.skipUnchanged = true
        let again = FlashSession(port: "virtual:" + dir.path, options: o)
        try again.connect()
        #expect(try again.write(plan).map(\.outcome) == [.unchanged, .unchanged, .unchanged])
        again.finish()
    }

    @Test func eraseRegionAndChipInfo() throws {
        let dir = try makeDevice(mac: "24:0a:c4:aa:bb:cc")
        defer { try? FileManager.default.removeItem(at: dir) }
        let session = FlashSession(port: "virtual:" + dir.path, options: options(stub: try esptoolStub()))
        try session.connect()
        _ = try session.write(FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x2000, data: [UInt8](repeating: 0, count: 0x3000), name: "z")]),
                                                facts: try #require(session.facts)))
        try session.erase(address: 0x3000, size: 0x1000)
        #expect(throws: FlasherError.self) { try session.erase(address: 0x3001, size: 0x1000) }
        let info = try session.chipInfo()
        session.finish()
        let flash = try flashContents(dir)
        #expect(flash[0x2000..<0x3000].allSatisfy { $0 == 0 })
        #expect(flash[0x3000..<0x4000].allSatisfy { $0 == 0xFF })
        #expect(flash[0x4000..<0x5000].allSatisfy { $0 == 0 })
        #expect(info.mac == "24:0a:c4:aa:bb:cc")
        #expect(info.flashSize == 4 << 20)
        #expect(info.description == "ESP32-D0WD-V3")
        #expect(info.crystalMHz == 40)
        #expect(info.security.flashEncryptionEnabled == false)
    }

    @Test func securityStateIsReported() throws {
        let dir = try makeDevice { a in
            set(&a, "FLASH_CRYPT_CNT", 0x7)
            set(&a, "ABS_DONE_1", 1)
            set(&a, "JTAG_DISABLE", 1)
            set(&a, "DISABLE_DL_DECRYPT", 1)
            setBlock2(&a, [UInt8](repeating: 0xAB, count: 32))
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let session = FlashSession(port: "virtual:" + dir.path, options: options(stub: nil, baud: 115_200))
        try session.connect()
        let s = try session.chipInfo().security
        session.finish()
        #expect(s.flashCryptCnt == 7 && s.flashEncryptionEnabled)
        #expect(s.absDone1 && s.jtagDisabled && s.disableDLDecrypt && !s.disableDLEncrypt)
        #expect(s.secureBootDigest == String(repeating: "ab", count: 32))
    }

    /// A refused plan sends nothing: the flash is untouched.
    @Test(.enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
    func refusedPlanWritesNothing() throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let signed = try TestEnvironment.fixtureBytes("secure/bootloader_signed_v2_rsa.bin")
        let outcome = DeviceRunner.flash(port: "virtual:" + dir.path,
                                         request: FlashRequest(regions: [FlashRegion(address: 0x1000, data: signed, name: "bl")], flashSize: "4MB"),
                                         options: options(stub: nil), emit: { _ in })
        #expect(!outcome.ok)
        #expect(outcome.refused == ["PF001"])
        #expect(try flashContents(dir).allSatisfy { $0 == 0xFF })
        #expect(try stats(dir).total.pagePrograms == 0)
    }

    // reset-after=90: after the connection (SYNC, chip, eFuses read until two readings agree, stub: about
    // 75 commands) and during the write, so the session must reconnect and resume.
    @Test(arguments: ["flip=0.00003", "drop=0.00003", "drop=0.00002,flip=0.00002,stall=0.02:5", "disconnect-after=120000", "reset-after=90"])
    func faultsAreSurvivedInProcess(spec: String) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let regions = sampleRegions(&rng) + [FlashRegion(address: 0x50000, data: rng.bytes(60_000), name: "r2")]
        let outcome = DeviceRunner.flash(port: "virtual:\(dir.path)?faults=\(spec)&seed=7",
                                         request: FlashRequest(regions: regions),
                                         options: options(stub: try esptoolStub()), emit: { _ in })
        #expect(outcome.ok, "\(spec) seed \(seed): \(outcome.error ?? "")")
        try expectOnFlash(dir, regions, seed: seed)
        let s = try stats(dir)
        #expect(s.faults != FaultCounters(), "faults were injected")
        if spec.hasPrefix("disconnect") || spec.hasPrefix("reset") { #expect(outcome.reconnects >= 1) }
    }

    @Test("a region longer than one connection carries (cut every 120 KB): resumed piece by piece, written exactly")
    func longRegionOverShortConnections() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Incompressible, so each connection carries at most ~120 KB of it: five or more connections.
        let regions = [FlashRegion(address: 0x100000, data: rng.bytes(512 * 1024), name: "big")]
        let outcome = DeviceRunner.flash(port: "virtual:\(dir.path)?faults=disconnect-after=120000&seed=3",
                                         request: FlashRequest(regions: regions),
                                         options: options(stub: try esptoolStub()), emit: { _ in })
        #expect(outcome.ok, "seed \(seed): \(outcome.error ?? "")")
        #expect(outcome.reconnects >= 4, "\(outcome.reconnects) reconnects")
        try expectOnFlash(dir, regions, seed: seed)
    }

    @Test func severalDevicesAtOnce() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dirs = try (0..<4).map { try makeDevice("multi\($0)", mac: "24:0a:c4:00:00:0\($0)") }
        defer { for d in dirs { try? FileManager.default.removeItem(at: d) } }
        let (server, port) = try serve(dirs[3])
        defer { stop(server) }
        let regions = sampleRegions(&rng)
        let ports = dirs[0..<3].map { "virtual:" + $0.path } + ["socket://127.0.0.1:\(port)"]
        let events = EventLog()
        let stub = try esptoolStub()
        let outcomes = DeviceRunner.run(ports: ports, onEvent: { events.add($0) }) { p, emit in
            DeviceRunner.flash(port: p, request: FlashRequest(regions: regions), options: options(stub: stub), emit: emit)
        }
        #expect(outcomes.map(\.ok) == [true, true, true, true], "\(outcomes.map { $0.error ?? "" })")
        #expect(Set(events.all.filter { $0.event == "done" }.map(\.device)) == Set(ports))
        stop(server)
        for d in dirs { try expectOnFlash(d, regions, seed: seed) }
    }
}

final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [FlashEvent] = []
    func add(_ e: FlashEvent) { lock.lock(); events.append(e); lock.unlock() }
    var all: [FlashEvent] { lock.lock(); defer { lock.unlock() }; return events }
}

@Suite(.serialized) struct OracleCrossChecks {
    /// What espforge writes over TCP, esptool's read-flash reads back identically.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: [true, false])
    func esptoolReadsBackWhatEspforgeWrote(stubMode: Bool) throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try serve(dir)
        defer { stop(server) }
        let regions = sampleRegions(&rng)
        let outcome = DeviceRunner.flash(port: "socket://127.0.0.1:\(port)", request: FlashRequest(regions: regions),
                                         options: options(stub: stubMode ? try esptoolStub() : nil), emit: { _ in })
        #expect(outcome.ok, "\(outcome.error ?? "")")
        let out = dir.appendingPathComponent("back.bin").path
        let r = try Oracle.run("esptool", ["--chip", "esp32", "--port", "socket://127.0.0.1:\(port)", "--before", "no-reset",
                                           "--after", "no-reset", "read-flash", "0x9000", "0x30000", out])
        #expect(r.status == 0, "\(r.err)")
        let back = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        for reg in regions {
            let o = reg.address - 0x9000
            let end = min(o + reg.data.count, back.count)
            #expect(Array(back[o..<end]) == Array(reg.data[0..<(end - o)]), "\(reg.name) seed \(seed)")
        }
    }

    /// Faults on the TCP server: espforge still writes exactly, esptool reads it back.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func faultyServerStillGivesExactFlash() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try serve(dir, faults: "flip=0.00002,disconnect-after=100000", seed: seed % 1000)
        defer { stop(server) }
        // ~150 KB on the wire (uncompressed blocks are padded to 16 KiB): the link is cut at least once;
        // every piece fits in one connection.
        let regions = sampleRegions(&rng) + [FlashRegion(address: 0x60000, data: rng.bytes(60_000), name: "r2")]
        var o = options(stub: try esptoolStub())
        o.timeout = 0.5
        let outcome = DeviceRunner.flash(port: "socket://127.0.0.1:\(port)", request: FlashRequest(regions: regions),
                                         options: o, emit: { _ in })
        #expect(outcome.ok, "seed \(seed): \(outcome.error ?? "")")
        stop(server)
        try expectOnFlash(dir, regions, seed: seed)
        #expect(try stats(dir).faults != FaultCounters(), "faults were injected")
    }

    /// `chip info` equals esptool's read-mac / flash-id output.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func chipInfoMatchesEsptool() throws {
        let dir = try makeDevice(mac: "24:0a:c4:5e:6f:70")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try serve(dir)
        defer { stop(server) }
        let r = try Oracle.run("esptool", ["--chip", "esp32", "--port", "socket://127.0.0.1:\(port)", "--before", "no-reset",
                                           "--after", "no-reset", "--no-stub", "flash-id"])
        #expect(r.status == 0, "\(r.err)")
        let mine = try Espforge.run(["chip", "info", "--port", "socket://127.0.0.1:\(port)", "--json"])
        #expect(mine.status == 0, "\(mine.err)")
        let info = try JSONDecoder().decode(ChipInfo.self, from: Data(mine.stdout))
        func field(_ label: String) -> String? {
            r.out.split(separator: "\n").first { $0.hasPrefix(label) }.map { String($0.dropFirst(label.count)).trimmingCharacters(in: .whitespaces) }
        }
        #expect(field("MAC:") == info.mac)
        #expect(field("Chip type:") == "\(info.description) (revision \(info.revision))")
        #expect(field("Crystal frequency:") == "\(info.crystalMHz)MHz")
        #expect(field("Manufacturer:") == info.flashManufacturer)
        #expect(field("Device:") == info.flashDevice)
        #expect(field("Detected flash size:") == info.flashSizeName)
        let features = field("Features:") ?? ""
        for f in info.features where !f.hasPrefix("Dual") { #expect(features.contains(f), "\(f) in \(features)") }
    }
}

@Suite(.serialized) struct FlashCLITests {
    /// The seed's mistake through the CLI: refused, message on stderr, exit 1, flash untouched.
    @Test(.enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
    func cliRefusesTheSeedMistake() throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bl = TestEnvironment.fixture("secure/bootloader_signed_v2_rsa.bin").path
        let r = try Espforge.run(["flash", "write", "--port", "virtual:" + dir.path, "--flash-size", "4MB", "--no-stub", "0x1000", bl])
        #expect(r.status == 1)
        #expect(r.err.contains("PF001 error: the flash options --flash-size 4MB would rewrite header bytes 2..3 of the signed bootloader"), "\(r.err)")
        #expect(r.err.contains("byte 3 = 0x10"))
        #expect(r.err.contains("byte 3 = 0x20"))
        #expect(r.out.contains("REFUSED"))
        #expect(try flashContents(dir).allSatisfy { $0 == 0xFF })
        // keep (the default) writes it byte for byte.
        let ok = try Espforge.run(["flash", "write", "--port", "virtual:" + dir.path, "--no-stub", "--baud", "460800", "0x1000", bl])
        #expect(ok.status == 0, "\(ok.err)")
        let signed = try TestEnvironment.fixtureBytes("secure/bootloader_signed_v2_rsa.bin")
        #expect(Array(try flashContents(dir)[0x1000..<(0x1000 + signed.count)]) == signed)
        let v = try Espforge.run(["flash", "verify", "--port", "virtual:" + dir.path, "--no-stub", "0x1000", bl])
        #expect(v.status == 0 && v.out.contains("OK"))
    }

    @Test func jsonStreamsOneEventPerLine() throws {
        let dirs = try (0..<2).map { try makeDevice("json\($0)") }
        defer { for d in dirs { try? FileManager.default.removeItem(at: d) } }
        let file = dirs[0].appendingPathComponent("data.bin")
        try Data(repeating: 0x5A, count: 40_000).write(to: file)
        let r = try Espforge.run(["flash", "write", "--json", "--port", "virtual:" + dirs[0].path, "--port", "virtual:" + dirs[1].path,
                                  "--baud", "921600", "0x20000", file.path])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n")
        #expect(lines.count >= 6)
        for l in lines {
            let obj = try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any]
            #expect(obj?["event"] != nil, "\(l)")
        }
        #expect(lines.filter { $0.contains("\"event\":\"summary\"") }.count == 2)
        let read = dirs[1].appendingPathComponent("back.bin").path
        let rr = try Espforge.run(["flash", "read", "--port", "virtual:" + dirs[1].path, "0x20000", "40000", "-o", read])
        #expect(rr.status == 0, "\(rr.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: read)) == Data(repeating: 0x5A, count: 40_000))
        let e = try Espforge.run(["flash", "erase", "--port", "virtual:" + dirs[1].path, "0x20000", "0x10000"])
        #expect(e.status == 0, "\(e.err)")
        let v = try Espforge.run(["flash", "verify", "--port", "virtual:" + dirs[1].path, "0x20000", file.path])
        #expect(v.status == 1 && v.out.contains("DIFFERS"))
    }

    @Test func badArgumentsGiveOneLineErrors() throws {
        let r = try Espforge.run(["flash", "write", "--port", "virtual:/nonexistent-espforge", "0x1000"])
        #expect(r.status != 0)
        let r2 = try Espforge.run(["flash", "write", "--port", "socket://127.0.0.1:1", "0x1000", "/nonexistent"])
        #expect(r2.status == 1 && r2.err.contains("no such file"))
        let r3 = try Espforge.run(["chip", "info", "--port", "virtual:/nonexistent-espforge"])
        #expect(r3.status == 1 && r3.err.contains("no virtual device"))
    }
}
