import Foundation
import TestSupport
import Testing
import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

/// A virtual device served by the built `espforge device serve` on a free loopback port.
final class ServedDevice {
    /// A private temporary folder (state in `dev/`, scratch files beside it), removed on deinit.
    let root: URL
    let state: String
    private var server: DeviceServerProcess?
    private(set) var port = 0

    init(mac: String, extra: [String] = []) throws {
        root = try TestEnvironment.temporaryDirectory("espforge-device")
        state = root.appendingPathComponent("dev").path
        let r = try Espforge.run(["device", "create", "--state", state, "--mac", mac] + extra)
        guard r.status == 0 else { throw TestSupportError.missing("device create failed: \(r.err)") }
    }

    /// Starts the server on a free loopback port.
    func start(_ extra: [String] = []) throws {
        let server = try DeviceServerProcess(state: state, extra: extra)
        self.server = server
        port = server.port
    }

    func stop() {
        server?.stop()
        server = nil
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: root)
    }

    /// Writes a scratch file next to the state folder; returns its path.
    func writeTemp(_ bytes: [UInt8], _ name: String) throws -> String {
        let url = root.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    var portURL: String { "socket://127.0.0.1:\(port)" }

    func esptool(_ args: [String], stub: Bool = false, baud: Int? = nil) throws -> ProcessResult {
        var a = ["--chip", "esp32", "--port", portURL, "--before", "no-reset", "--after", "no-reset"]
        if let baud { a += ["--baud", String(baud)] }
        if !stub { a.append("--no-stub") }
        return try Oracle.run("esptool", a + args)
    }

    func espefuse(_ args: [String]) throws -> ProcessResult {
        try Oracle.run("espefuse", ["--chip", "esp32", "--port", portURL, "--before", "no-reset"] + args)
    }

    func stats() throws -> DeviceStats {
        let r = try Espforge.run(["device", "stats", "--state", state, "--json"])
        return try JSONDecoder().decode(DeviceStats.self, from: Data(r.stdout))
    }

    func flash() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: state + "/flash.bin")))
    }
}

func randomMAC(_ rng: inout SeededRandom) -> String {
    let tail = (0..<3).map { _ in String(format: "%02x", Int.random(in: 0...255, using: &rng)) }
    return "24:0a:c4:" + tail.joined(separator: ":")
}

func expectOK(_ r: ProcessResult, _ what: String, _ seed: UInt64) {
    #expect(r.status == 0, "\(what) failed (seed \(seed)):\n\(r.out.suffix(1500))\n\(r.err.suffix(1500))")
}

@Suite struct ConformanceTests {
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func esptoolReportsWhatTheDeviceWasCreatedWith() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let mac = randomMAC(&rng)
        let dev = try ServedDevice(mac: mac)
        try dev.start()
        defer { dev.stop() }
        let mac1 = try dev.esptool(["read-mac"])
        expectOK(mac1, "read-mac", seed)
        #expect(mac1.out.contains("MAC:                \(mac)"), "seed \(seed)")
        #expect(mac1.out.contains("ESP32-D0WD-V3 (revision v3.0)"))
        #expect(mac1.out.contains("Crystal frequency:  40MHz"))
        #expect(mac1.out.contains("Wi-Fi, BT, Dual Core"))
        #expect(mac1.out.contains("Coding Scheme None"))
        let chipID = try dev.esptool(["chip-id"])
        expectOK(chipID, "chip-id", seed)
        #expect(chipID.out.contains(mac))
        let flashID = try dev.esptool(["flash-id"])
        expectOK(flashID, "flash-id", seed)
        #expect(flashID.out.contains("Manufacturer: ef"))
        #expect(flashID.out.contains("Device: 4016"))
        #expect(flashID.out.contains("Detected flash size: 4MB"))
        #expect(flashID.out.contains("3.3V"))
        let status = try dev.esptool(["read-flash-status", "--bytes", "2"])
        expectOK(status, "read-flash-status", seed)
        #expect(status.out.contains("0x0200"), "W25Q32JV status: QE set in SR2 (\(status.out.suffix(200)))")
        // The stub reports the same.
        let stubMAC = try dev.esptool(["read-mac"], stub: true)
        expectOK(stubMAC, "read-mac (stub)", seed)
        #expect(stubMAC.out.contains("Stub flasher running"))
        #expect(stubMAC.out.contains(mac))
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func flashingWithTheROMLoader() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dev = try ServedDevice(mac: randomMAC(&rng), extra: ["--flash-size", "2MB"])
        try dev.start()
        defer { dev.stop() }
        let a = rng.bytes(Int.random(in: 3000...9000, using: &rng))
        let b = rng.bytes(Int.random(in: 1000...3000, using: &rng)) + [UInt8](repeating: 0, count: 20000)
        let c = rng.bytes(4099)
        let pa = try dev.writeTemp(a, "a.bin"), pb = try dev.writeTemp(b, "b.bin"), pc = try dev.writeTemp(c, "c.bin")
        expectOK(try dev.esptool(["write-flash", "0x1000", pa, "0x10000", pb]), "write-flash (ROM)", seed)
        expectOK(try dev.esptool(["write-flash", "-z", "0x30000", pc]), "write-flash -z (ROM)", seed)
        let verify = try dev.esptool(["verify-flash", "0x1000", pa, "0x10000", pb, "0x30000", pc])
        expectOK(verify, "verify-flash (ROM)", seed)
        #expect(verify.out.contains("Verification successful"))
        let out = try dev.writeTemp([], "read.bin")
        expectOK(try dev.esptool(["read-flash", "0x30000", "200", out]), "read-flash (ROM)", seed)
        let readOK = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out))) == Array(c.prefix(200))
        #expect(readOK, "seed \(seed)")
        // On the ROM, esptool erases a region with FLASH_BEGIN (after SPI_SET_PARAMS).
        expectOK(try dev.esptool(["erase-region", "0x30000", "0x1000"]), "erase-region (ROM)", seed)
        dev.stop()
        let flash = try dev.flash()
        guard flash.count == 2 << 20 else { Issue.record("flash.bin has \(flash.count) bytes"); return }
        let aOK = Array(flash[0x1000..<(0x1000 + a.count)]) == a
        let bOK = Array(flash[0x10000..<(0x10000 + b.count)]) == b
        let cOK = Array(flash[0x31000..<(0x30000 + c.count)]) == Array(c[0x1000...])
        #expect(aOK && bOK && cOK, "seed \(seed)")
        #expect(flash[0x30000..<0x31000].allSatisfy { $0 == 0xFF }, "erased sector")
        #expect(flash[0..<0x1000].allSatisfy { $0 == 0xFF })
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func flashingWithTheStub() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dev = try ServedDevice(mac: randomMAC(&rng))
        try dev.start()
        defer { dev.stop() }
        let a = rng.bytes(Int.random(in: 20000...40000, using: &rng))
        let b = [UInt8](repeating: 0x5A, count: 70000) + rng.bytes(777)
        let c = rng.bytes(0x4321)
        let pa = try dev.writeTemp(a, "a.bin"), pb = try dev.writeTemp(b, "b.bin"), pc = try dev.writeTemp(c, "c.bin")
        expectOK(try dev.esptool(["write-flash", "0x1000", pa, "0x20000", pb], stub: true), "write-flash (stub)", seed)
        expectOK(try dev.esptool(["write-flash", "-u", "0x100000", pc], stub: true), "write-flash -u (stub)", seed)
        expectOK(try dev.esptool(["verify-flash", "0x1000", pa, "0x20000", pb, "0x100000", pc], stub: true),
                 "verify-flash (stub)", seed)
        let out = try dev.writeTemp([], "read.bin")
        expectOK(try dev.esptool(["read-flash", "0x1000", String(a.count), out], stub: true), "read-flash (stub)", seed)
        let readOK = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out))) == a
        #expect(readOK, "seed \(seed)")
        expectOK(try dev.esptool(["erase-region", "0x20000", "0x10000"], stub: true), "erase-region", seed)
        let out2 = try dev.writeTemp([], "read2.bin")
        expectOK(try dev.esptool(["read-flash", "0x1F000", "0x12000", out2], stub: true), "read-flash after erase", seed)
        let back = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out2)))
        guard back.count == 0x12000 else { Issue.record("read-flash returned \(back.count) bytes"); return }
        #expect(back[0x1000..<0x11000].allSatisfy { $0 == 0xFF }, "erased block reads 0xFF")
        let survived = Array(back[0x11000..<0x12000]) == Array(b[0x10000..<0x11000])
        #expect(survived, "data after the region survives")
        #expect(back[0..<0x1000].allSatisfy { $0 == 0xFF }, "never written")
        expectOK(try dev.esptool(["erase-flash"], stub: true), "erase-flash", seed)
        dev.stop()
        #expect(try dev.flash().allSatisfy { $0 == 0xFF }, "chip erase")
        #expect(try dev.stats().total.chipErases == 1)
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func espefuseBurnsAndProtects() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let mac = randomMAC(&rng)
        let dev = try ServedDevice(mac: mac)
        try dev.start()
        defer { dev.stop() }
        let dir = dev.root
        let summaryPath = dir.appendingPathComponent("s0.json").path
        expectOK(try dev.espefuse(["summary", "--format", "json", "--file", summaryPath]), "summary", seed)
        var summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: summaryPath))) as? [String: Any]
        let macValue = (summary?["MAC"] as? [String: Any])?["value"] as? String
        #expect(macValue?.hasPrefix(mac) == true && macValue?.contains("OK") == true, "\(macValue ?? "-") seed \(seed)")

        expectOK(try dev.espefuse(["--do-not-confirm", "burn-efuse", "JTAG_DISABLE", "1"]), "burn-efuse", seed)
        let key = dir.appendingPathComponent("sb.pem").path
        try Oracle.run("espsecure", ["generate-signing-key", "--version", "2", "--scheme", "rsa3072", key])
        let digest = dir.appendingPathComponent("digest.bin").path
        try Oracle.run("espsecure", ["digest-rsa-public-key", "--keyfile", key, "-o", digest])
        expectOK(try dev.espefuse(["--do-not-confirm", "burn-key-digest", key]), "burn-key-digest", seed)
        let fek = rng.bytes(32)
        let fekPath = try dev.writeTemp(fek, "fe.key")
        expectOK(try dev.espefuse(["--do-not-confirm", "burn-key", "flash_encryption", fekPath]), "burn-key", seed)
        expectOK(try dev.espefuse(["--do-not-confirm", "write-protect-efuse", "DISABLE_DL_ENCRYPT"]), "write-protect-efuse", seed)
        expectOK(try dev.espefuse(["--do-not-confirm", "read-protect-efuse", "BLOCK3"]), "read-protect-efuse", seed)
        // A write-protected field cannot be burned any more.
        let refused = try dev.espefuse(["--do-not-confirm", "burn-efuse", "DISABLE_DL_ENCRYPT", "1"])
        #expect(refused.status != 0)

        let s1 = dir.appendingPathComponent("s1.json").path
        expectOK(try dev.espefuse(["summary", "--format", "json", "--file", s1]), "summary after burns", seed)
        summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s1))) as? [String: Any]
        func field(_ n: String) -> [String: Any]? { summary?[n] as? [String: Any] }
        #expect(field("JTAG_DISABLE")?["value"] as? Bool == true)
        #expect(field("BLOCK1")?["readable"] as? Bool == false, "the flash encryption key is read-protected")
        #expect(field("BLOCK3")?["readable"] as? Bool == false)
        #expect(field("DISABLE_DL_ENCRYPT")?["writeable"] as? Bool == false)
        dev.stop()

        // The raw fuse cells: BLOCK1 holds the key byte-reversed, BLOCK2 the digest as is.
        let efuse = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dev.state + "/efuse.bin")))
        let keyOK = Array(efuse[28..<60]) == Array(fek.reversed())
        let digestOK = Array(efuse[60..<92]) == [UInt8](try Data(contentsOf: URL(fileURLWithPath: digest)))
        #expect(keyOK && digestOK, "seed \(seed)")
        let w0 = UInt32(efuse[0]) | UInt32(efuse[1]) << 8 | UInt32(efuse[2]) << 16 | UInt32(efuse[3]) << 24
        #expect(w0 & (1 << 16) != 0 && w0 & (1 << 18) != 0, "RD_DIS for BLOCK1 and BLOCK3")
        #expect(w0 & (1 << 7) != 0 && w0 & (1 << 8) != 0 && w0 & (1 << 15) != 0, "WR_DIS for BLOCK1, BLOCK2, DL flags")
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func statePersistsAcrossServeRestart() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dev = try ServedDevice(mac: randomMAC(&rng))
        let data = rng.bytes(6000)
        let p = try dev.writeTemp(data, "p.bin")
        try dev.start()
        expectOK(try dev.esptool(["write-flash", "0x8000", p]), "write-flash", seed)
        expectOK(try dev.espefuse(["--do-not-confirm", "burn-efuse", "DISABLE_DL_CACHE", "1"]), "burn-efuse", seed)
        dev.stop()
        try dev.start()
        defer { dev.stop() }
        expectOK(try dev.esptool(["verify-flash", "0x8000", p]), "verify-flash after restart", seed)
        let dir = dev.root
        let s = dir.appendingPathComponent("s.json").path
        expectOK(try dev.espefuse(["summary", "--format", "json", "--file", s]), "summary after restart", seed)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s))) as? [String: Any]
        #expect((summary?["DISABLE_DL_CACHE"] as? [String: Any])?["value"] as? Bool == true)
        dev.stop()
        let stats = try dev.stats()
        #expect(stats.connections >= 4)
        #expect(stats.total.efusePrograms >= 1)
    }

    /// Writing 1 MiB at 921600 baud: the device's virtual time agrees with the model's arithmetic.
    /// The stub answers each block before it writes it, so its flash work (16 block erases, 4096
    /// page programs, 4.2 s) runs while the next block is on the wire: the write takes about its
    /// wire time, not wire time plus flash time.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func virtualTimeOfOneMiBAt921600() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dev = try ServedDevice(mac: randomMAC(&rng))
        let image = rng.bytes(1 << 20)
        let p = try dev.writeTemp(image, "big.bin")
        try dev.start()
        expectOK(try dev.esptool(["write-flash", "-u", "0x100000", p], stub: true, baud: 921_600), "write 1 MiB", seed)
        dev.stop()
        let c = try dev.stats().lastConnection
        let model = TimeModel()
        let wire = Double(1 << 20) * 10 / 921_600
        let flashWork = 16 * model.blockErase + 4096 * model.pageProgram
        print("time-model check: device \(c.virtualSeconds) s, wire \(wire) s, flash work \(c.flashSeconds) s")
        #expect(c.blockErases == 16 && c.pagePrograms == 4096)
        // (and esptool's MD5 check reads the megabyte back: 0.1 s)
        #expect(c.flashSeconds >= flashWork && c.flashSeconds < flashWork + 0.2, "flash work \(c.flashSeconds) s vs model \(flashWork) s")
        // The stub upload at 115200 baud and the commands around the write come on top of the wire time.
        #expect(c.virtualSeconds > wire && (c.virtualSeconds - wire) / wire < 0.10, "device \(c.virtualSeconds) s vs wire \(wire) s")
        #expect(c.virtualSeconds < wire + flashWork - 2, "the flash work overlaps the wire")
    }

    /// Same faults for the same seed: two identical sessions inject identical faults.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func faultsReproduceFromSeed() throws {
        var counters: [FaultCounters] = []
        var traffic: [Int] = []
        for _ in 0..<2 {
            let dev = try ServedDevice(mac: "24:0a:c4:00:00:01")
            try dev.start(["--faults", "disconnect-after=1500", "--seed", "7"])
            let r = try dev.esptool(["flash-id"])
            #expect(r.status != 0, "the link is cut before flash-id completes")
            dev.stop()
            let stats = try dev.stats()
            counters.append(stats.faults)
            traffic.append(stats.lastConnection.bytesIn)
        }
        #expect(counters[0] == counters[1])
        #expect(traffic[0] == traffic[1] && traffic[0] < 1500, "bytes received before the cut: \(traffic)")
        #expect(counters[0].disconnects == 1)
    }

    /// A spontaneous reset prints the ROM banner in the middle of the session; esptool sees it.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func spontaneousResetShowsTheROMBanner() throws {
        let dev = try ServedDevice(mac: "24:0a:c4:00:00:02")
        try dev.start(["--faults", "reset-after=3", "--seed", "1"])
        let r = try dev.esptool(["read-mac"])
        dev.stop()
        #expect(r.status != 0)
        #expect((r.out + r.err).contains("Invalid head of packet (0x65)"), "'e' of the banner 'ets Jun  8 2016'")
        let stats = try dev.stats()
        #expect(stats.faults.resets == 1 && stats.faultSpec == "reset-after=3")
    }

    /// Several devices at once: one server process each, told apart by port.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func twoDevicesServedAtOnce() throws {
        let a = try ServedDevice(mac: "24:0a:c4:0a:0a:0a")
        let b = try ServedDevice(mac: "24:0a:c4:0b:0b:0b", extra: ["--flash-size", "8MB"])
        try a.start()
        try b.start()
        defer { a.stop(); b.stop() }
        #expect(a.port != b.port)
        let ra = try a.esptool(["flash-id"]), rb = try b.esptool(["flash-id"])
        #expect(ra.out.contains("24:0a:c4:0a:0a:0a") && ra.out.contains("Detected flash size: 4MB"))
        #expect(rb.out.contains("24:0a:c4:0b:0b:0b") && rb.out.contains("Detected flash size: 8MB"))
    }
}
