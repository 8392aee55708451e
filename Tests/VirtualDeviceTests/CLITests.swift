import Foundation
import TestSupport
import Testing
import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

@Suite struct DeviceCLITests {
    @Test func createRefusesToOverwriteAndBadInputIsOneLineError() throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-cli")
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("d").path
        let created = try Espforge.run(["device", "create", "--state", dir, "--mac", "24:0a:c4:01:02:03", "--flash-size", "8MB"])
        #expect(created.status == 0, "\(created.err)")
        let desc = try JSONDecoder().decode(DeviceDescription.self,
                                            from: Data(contentsOf: URL(fileURLWithPath: dir + "/device.json")))
        #expect(desc.flashSize == 8 << 20 && desc.flashID == 0x1740EF && desc.mac == "24:0a:c4:01:02:03")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/flash.bin")).count == 8 << 20)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/efuse.bin")).count == 124)
        let again = try Espforge.run(["device", "create", "--state", dir])
        #expect(again.status == 1 && again.err.contains("already exists"))
        let badMAC = try Espforge.run(["device", "create", "--state", dir + "x", "--mac", "zz"])
        #expect(badMAC.status == 1 && badMAC.err.hasPrefix("error:"))
        let missing = try Espforge.run(["device", "stats", "--state", dir + "-missing"])
        #expect(missing.status == 1 && missing.err.contains("no virtual device"))
        let faults = try Espforge.run(["device", "serve", "--state", dir, "--listen", "127.0.0.1:0", "--faults", "boom=1"])
        #expect(faults.status == 1 && faults.err.contains("unknown fault"))
        let remote = try Espforge.run(["device", "serve", "--state", dir, "--listen", "0.0.0.0:0"])
        #expect(remote.status == 1 && remote.err.contains("loopback"))
    }

    @Test(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)))
    func inspectDumpAndPowerOnAfterFlashingRealImages() throws {
        let dev = try ServedDevice(mac: "24:0a:c4:aa:bb:cc")
        try dev.start()
        let r = try dev.esptool(["write-flash",
                                 "0x1000", TestEnvironment.fixture("images/bootloader_esp32.bin").path,
                                 "0x8000", TestEnvironment.fixture("images/partitions_singleapp.bin").path,
                                 "0x20000", TestEnvironment.fixture("secure/hello-world-signed-encrypted.bin").path],
                                stub: true)
        dev.stop()
        #expect(r.status == 0, "\(r.out.suffix(800))")
        let inspect = try Espforge.run(["device", "inspect", "--state", dev.state, "--json"])
        #expect(inspect.status == 0, "\(inspect.err)")
        let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout)) as? [String: Any]
        let power = json?["powerOn"] as? [String: Any]
        #expect(power?["bootloaderHeaderValid"] as? Bool == true)
        let map = (json?["flashMap"] as? [[String: Any]]) ?? []
        func kind(at a: Int) -> String? {
            map.first { ($0["start"] as? Int ?? -1) <= a && a < ($0["end"] as? Int ?? -1) }?["kind"] as? String
        }
        #expect(kind(at: 0x0) == "erased")
        #expect(kind(at: 0x1000) == "image")
        #expect(kind(at: 0x8000) == "partition table")
        #expect(kind(at: 0x21000)?.hasPrefix("high-entropy") == true)
        #expect(json?["mac"] as? String == "24:0a:c4:aa:bb:cc")
        let text = try Espforge.run(["device", "inspect", "--state", dev.state])
        // The power-on view is the boot simulator's: the bootloader runs, but the app at 0x20000 is
        // ciphertext on a chip without flash encryption, so nothing boots.
        #expect(text.out.contains("power-on:  no app partition could be booted"), "\(text.out)")

        let out = dev.root.appendingPathComponent("dump.bin").path
        #expect(try Espforge.run(["device", "dump", "--state", dev.state, "--flash", "-o", out]).status == 0)
        let dumpOK = try Data(contentsOf: URL(fileURLWithPath: out)) == Data(contentsOf: URL(fileURLWithPath: dev.state + "/flash.bin"))
        #expect(dumpOK)
        let efuses = try Espforge.run(["device", "dump", "--state", dev.state, "--efuses", "--json"])
        let fields = try JSONSerialization.jsonObject(with: Data(efuses.stdout)) as? [[String: Any]]
        #expect(fields?.first { $0["name"] as? String == "MAC" }?["value"] as? String == "24:0a:c4:aa:bb:cc")
        #expect(fields?.first { $0["name"] as? String == "MAC_CRC" }?["value"] as? String == "0x" + String(
            EFuseCRCProbe.crc("24:0a:c4:aa:bb:cc"), radix: 16))
        let stats = try dev.stats()
        #expect(stats.total.commands > 0 && stats.total.virtualSeconds > 0 && stats.connections == 1)
        let statsText = try Espforge.run(["device", "stats", "--state", dev.state])
        #expect(statsText.out.contains("virtual time"))
    }

    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func servesAPseudoTerminal() throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-pty")
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("d").path
        #expect(try Espforge.run(["device", "create", "--state", dir, "--mac", "24:0a:c4:10:20:30"]).status == 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Espforge.path)
        p.arguments = ["device", "serve", "--state", dir, "--pty", "--max-seconds", "60"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        defer {
            p.terminate()
            let deadline = Date().addingTimeInterval(10)
            while p.isRunning, Date() < deadline { usleep(20_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        var line = ""
        let deadline = Date().addingTimeInterval(20)
        while !line.contains("\n"), Date() < deadline {
            let d = pipe.fileHandleForReading.availableData
            if d.isEmpty { break }
            line += String(decoding: d, as: UTF8.self)
        }
        guard line.hasPrefix("pty /dev/") else { Issue.record("no pty line: \(line)"); return }
        let path = String(line.dropFirst(4).prefix { $0 != "\n" })
        let r = try Oracle.run("esptool", ["--chip", "esp32", "--port", path, "--before", "no-reset", "--after", "no-reset",
                                           "--no-stub", "read-mac"])
        #expect(r.status == 0, "\(r.out) \(r.err)")
        #expect(r.out.contains("24:0a:c4:10:20:30"))
        // A pty session outlives the client: a stub left running (--after no-reset-stub) is found
        // by the next client, which skips the upload, as with a real chip.
        let keep = try Oracle.run("esptool", ["--chip", "esp32", "--port", path, "--before", "no-reset",
                                              "--after", "no-reset-stub", "read-mac"])
        #expect(keep.status == 0 && keep.out.contains("Stub flasher running"), "\(keep.out)")
        let again = try Oracle.run("esptool", ["--chip", "esp32", "--port", path, "--before", "no-reset",
                                               "--after", "no-reset", "flash-id"])
        #expect(again.status == 0 && again.out.contains("Stub flasher is already running"), "\(again.out)")
        #expect(again.out.contains("Detected flash size: 4MB"))
    }
}

import EFuse
enum EFuseCRCProbe {
    static func crc(_ mac: String) -> UInt8 { (try? MACAddress.crc8(MACAddress.parse(mac))) ?? 0 }
}
