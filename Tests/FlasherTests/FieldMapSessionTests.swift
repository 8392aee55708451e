import EFuse
import ESPCore
import Flasher
import Foundation
import Testing
import TestSupport
import VirtualDevice

/// Issue 17 §2: espforge's own flash session on ESP32-S3 / ESP32-C3 virtual devices: the chip's
/// esptool stub, compressed writes, link adaptation, reconnect and resume, `--encrypt` through the
/// chip's XTS engine (checked against `espsecure encrypt-flash-data --aes-xts`), and the refusal
/// under DIS_DOWNLOAD_MANUAL_ENCRYPT. Inputs: the ESP-IDF v5.2.2 hello-world builds in ../shared.
@Suite("S3/C3 flash session", .serialized)
struct FieldMapSessionTests {
    static let chips = ["esp32s3", "esp32c3"]
    static let folders = ["esp32s3": "ESP32_S3", "esp32c3": "ESP32_C3"]
    static let macs = ["esp32s3": "7c:df:a1:00:00:53", "esp32c3": "58:cf:79:00:00:53"]

    /// Bootloader at 0x0 (the S3/C3 bootloader offset), table at 0x8000, app at 0x10000.
    func images(_ chip: String) throws -> [FlashRegion] {
        let folder = try #require(Self.folders[chip])
        return [
            FlashRegion(address: 0x0, data: try TestEnvironment.fixtureBytes("chips/\(folder)/bootloader.bin"), name: "bootloader.bin"),
            FlashRegion(address: 0x8000, data: try TestEnvironment.fixtureBytes("chips/\(folder)/partition-table.bin"), name: "partition-table.bin"),
            FlashRegion(address: 0x10000, data: try TestEnvironment.fixtureBytes("chips/\(folder)/hello_world.bin"), name: "hello_world.bin"),
        ]
    }

    /// esptool's stub for the chip (the oracle venv has it; a missing one fails the test).
    func chipStub(_ chip: String) throws -> StubImage {
        let found = try #require(StubLocator.search(chip: chip).found, "esptool's \(chip).json stub not found (install the oracle: ./scripts/test)")
        #expect(found.path.hasSuffix("/\(chip).json"))
        return try StubImage.parse(json: [UInt8](try Data(contentsOf: URL(fileURLWithPath: found.path))), source: found.path)
    }

    /// A device folder: `flash` as the flash contents (nil: blank), `edit` changes the eFuses.
    func device(_ chip: String, flash: [UInt8]? = nil,
                edit: (inout EFuseBlockWords, EFuseFieldMap) throws -> Void = { _, _ in }) throws -> URL {
        let dir = try TestEnvironment.temporaryDirectory("espforge-fmsession")
        let map = try #require(EFuseFieldMap.named(chip))
        var d = try Device.create(DeviceDescription(chip: chip, chipRevision: 0, mac: try #require(Self.macs[chip])))
        var cells = try #require(d.cells)
        try edit(&cells, map)
        d.cells = cells
        if let flash { d.flash = NORFlash(contents: flash) }
        try DeviceStore(directory: dir.path).create(d, force: true)
        return dir
    }

    func options(_ stub: StubImage?, encrypt: Bool = false) -> SessionOptions {
        var o = SessionOptions()
        o.encrypt = encrypt
        o.ports = VirtualPorts.opener()
        o.stub = stub
        o.baud = 921_600
        o.before = .noReset
        o.after = .noReset
        o.timeout = 2
        return o
    }

    /// Random flash contents (so that a byte changed outside a region shows).
    func pattern(_ seed: UInt64) -> [UInt8] {
        var rng = SeededRandom(seed: seed)
        return rng.bytes(4 << 20)
    }

    func expected(_ base: [UInt8], _ regions: [FlashRegion]) -> [UInt8] {
        var out = base
        for r in regions { out.replaceSubrange(r.address..<(r.address + r.data.count), with: r.data) }
        return out
    }

    /// The first offset where two flash images differ (nil: equal), as a hex string (a 4 MB
    /// `#expect(a == b)` that fails would have the test library diff the arrays for minutes).
    func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String? {
        guard a.count == b.count else { return "sizes \(a.count) vs \(b.count)" }
        return a.indices.first { a[$0] != b[$0] }.map { "0x" + String($0, radix: 16) }
    }

    func flashDiffers(_ dir: URL, _ want: [UInt8]) throws -> String? { firstDifference(try flash(dir), want) }

    func flash(_ dir: URL) throws -> [UInt8] { try DeviceStore(directory: dir.path).load().flash.bytes }

    /// The image set through the chip's stub, compressed, over `virtual:DIR`: the flash equals
    /// the plan byte for byte, and nothing around the regions changed (random contents before).
    @Test(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: chips)
    func imageSetThroughTheStubCompressed(_ chip: String) throws {
        let regions = try images(chip)
        let base = pattern(0x17_53)
        let dir = try device(chip, flash: base)
        defer { try? FileManager.default.removeItem(at: dir) }
        let events = EventLog()
        let outcome = DeviceRunner.flash(port: "virtual:" + dir.path, request: FlashRequest(regions: regions),
                                         options: options(try chipStub(chip)), emit: { events.add($0) })
        #expect(outcome.ok, "\(outcome.error ?? "")")
        #expect(outcome.regions.count == 3 && outcome.regions.allSatisfy { $0.compressed && $0.outcome == .written })
        #expect(outcome.regions.reduce(0) { $0 + $1.payloadBytes } < regions.reduce(0) { $0 + $1.data.count })
        let display = try #require(ChipSpec.named(chip)).displayName
        #expect(events.all.contains { $0.event == "stub" && $0.detail == "running \(chip).json" })
        #expect(events.all.contains { $0.event == "connected" && ($0.detail ?? "").hasPrefix("\(display), stub loader, 921600 baud") })
        #expect(try flashDiffers(dir, expected(base, regions)) == nil)
    }

    /// The same through links with seeded faults (noise, a cut link, a chip reset): adapted,
    /// reconnected and resumed (the stub uploaded again), and still exactly the plan.
    @Test(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: ["drop=0.0003,flip=0.0003", "disconnect-after=60000", "reset-after=mid"])
    func imageSetThroughFaultyLinks(_ faults: String) throws {
        for (i, chip) in Self.chips.enumerated() {
            let regions = try images(chip)
            let base = pattern(0x17_54 + UInt64(i))
            var faults = faults
            if faults == "reset-after=mid" {
                // The chip resets a few commands before a clean session's end (inside the writes,
                // after the eFuse reads and the stub upload, which take most of the commands).
                let clean = try device(chip, flash: base)
                defer { try? FileManager.default.removeItem(at: clean) }
                let o = DeviceRunner.flash(port: "virtual:" + clean.path, request: FlashRequest(regions: regions),
                                           options: options(try chipStub(chip)), emit: { _ in })
                #expect(o.ok)
                faults = "reset-after=\(try DeviceStore(directory: clean.path).load().stats.lastConnection.commands - 8)"
            }
            let dir = try device(chip, flash: base)
            defer { try? FileManager.default.removeItem(at: dir) }
            let outcome = DeviceRunner.flash(port: "virtual:\(dir.path)?faults=\(faults)&seed=\(i + 3)",
                                             request: FlashRequest(regions: regions), options: options(try chipStub(chip)), emit: { _ in })
            #expect(outcome.ok, "\(chip) \(faults): \(outcome.error ?? "")")
            // The faults did hit the session (else this test would prove nothing).
            let link = outcome.link ?? LinkAdaptation()
            #expect(outcome.reconnects + outcome.retries + link.restarts + link.timeouts + link.damagedReplies > 0, "\(chip) \(faults)")
            if !faults.hasPrefix("drop") { #expect(outcome.reconnects > 0, "\(chip) \(faults)") }
            #expect(try flashDiffers(dir, expected(base, regions)) == nil, "\(chip) \(faults)")
        }
    }

    /// Over `socket://` (`espforge device serve`, faults in the server): the same image set, exact.
    @Test(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: chips)
    func imageSetOverSocket(_ chip: String) throws {
        let regions = try images(chip)
        let base = pattern(0x17_56)
        let dir = try device(chip, flash: base)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, port) = try serve(dir, faults: "flip=0.0002", seed: 5)
        let events = EventLog()
        let outcome = DeviceRunner.flash(port: "socket://127.0.0.1:\(port)", request: FlashRequest(regions: regions),
                                         options: options(try chipStub(chip)), emit: { events.add($0) })
        stop(server)
        #expect(outcome.ok, "\(outcome.error ?? "")")
        #expect(outcome.regions.allSatisfy { $0.compressed })
        #expect(events.all.contains { $0.event == "stub" && $0.detail == "running \(chip).json" })
        #expect(try flashDiffers(dir, expected(base, regions)) == nil)
    }

    /// `--encrypt`: the chip's XTS engine stores what `espsecure encrypt-flash-data --aes-xts`
    /// gives for each region (S3: XTS-AES-256 from two key blocks; C3: XTS-AES-128), through the
    /// stub and through the ROM loader (the S3/C3 ROM takes the encrypted-write flag too).
    @Test(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: chips, [true, false])
    func encryptedWriteEqualsEspsecure(_ chip: String, throughStub: Bool) throws {
        let regions = try images(chip)
        var rng = SeededRandom(seed: 0x17_57)
        let key = rng.bytes(chip == "esp32s3" ? 64 : 32)
        let dir = try device(chip) { cells, map in
            // espefuse burns each 32-byte half byte-reversed into its key block.
            let purposes = chip == "esp32s3" ? ["XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"] : ["XTS_AES_128_KEY"]
            for (k, purpose) in purposes.enumerated() {
                cells.setInteger(try #require(map.field(named: "KEY_PURPOSE_\(k)")), UInt64(try #require(map.purposeValue(purpose))))
                cells.setBytes(try #require(map.field(named: "BLOCK_KEY\(k)")), Array(key[(32 * k)..<(32 * k + 32)].reversed()))
            }
            // Flash encryption on (development mode): the chip decrypts what it reads.
            cells.setInteger(try #require(map.field(named: "SPI_BOOT_CRYPT_CNT")), 1)
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let outcome = DeviceRunner.flash(port: "virtual:" + dir.path, request: FlashRequest(regions: regions, encrypt: true),
                                         options: options(throughStub ? try chipStub(chip) : nil, encrypt: true), emit: { _ in })
        #expect(outcome.ok, "\(outcome.error ?? "")")
        let keyFile = dir.appendingPathComponent("key.bin")
        try Data(key).write(to: keyFile)
        var want = [UInt8](repeating: 0xFF, count: 4 << 20)
        for (i, r) in regions.enumerated() {
            var plain = r.data
            if plain.count % 16 != 0 { plain += [UInt8](repeating: 0xFF, count: 16 - plain.count % 16) }
            let input = dir.appendingPathComponent("plain\(i).bin"), output = dir.appendingPathComponent("cipher\(i).bin")
            try Data(plain).write(to: input)
            let r2 = try Oracle.run("espsecure", ["encrypt-flash-data", "--aes-xts", "--keyfile", keyFile.path,
                                                  "--address", String(r.address), "-o", output.path, input.path])
            #expect(r2.status == 0, "\(r2.err)")
            let cipher = [UInt8](try Data(contentsOf: output))
            #expect(cipher.count == plain.count && cipher != plain)
            want.replaceSubrange(r.address..<(r.address + cipher.count), with: cipher)
        }
        var got = try flash(dir)
        if !throughStub {
            // The ROM writes whole 1 KiB blocks: the 0xFF padding of a region's last block is
            // encrypted too and lands behind the region, in the part of its last sector that
            // FLASH_BEGIN erased (esptool's ROM writes do the same). Compared: the regions.
            for r in regions {
                let end = (r.address + r.data.count + 15) / 16 * 16
                let blockEnd = r.address + (r.data.count + 0x3FF) / 0x400 * 0x400
                got.replaceSubrange(end..<blockEnd, with: want[end..<blockEnd])
            }
        }
        let differs = firstDifference(got, want)
        #expect(differs == nil, "flash differs from espsecure's at \(differs ?? "")")
    }

    /// DIS_DOWNLOAD_MANUAL_ENCRYPT: the rules refuse `--encrypt` before anything is sent; forced
    /// past them, the board itself refuses the encrypted FLASH_BEGIN, the session says so (no
    /// reconnect loop), and the flash is unchanged either way.
    @Test(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: chips)
    func manualEncryptDisabledRefuses(_ chip: String) throws {
        let regions = try images(chip)
        let base = pattern(0x17_58)
        let dir = try device(chip, flash: base) { cells, map in
            cells.setInteger(try #require(map.field(named: "KEY_PURPOSE_0")), UInt64(try #require(map.purposeValue("XTS_AES_128_KEY"))))
            cells.setBytes(try #require(map.field(named: "BLOCK_KEY0")), [UInt8](repeating: 0x5A, count: 32))
            cells.setInteger(try #require(map.field(named: "DIS_DOWNLOAD_MANUAL_ENCRYPT")), 1)
            cells.setInteger(try #require(map.field(named: "SPI_BOOT_CRYPT_CNT")), 1)
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let refused = DeviceRunner.flash(port: "virtual:" + dir.path, request: FlashRequest(regions: regions, encrypt: true),
                                         options: options(try chipStub(chip), encrypt: true), emit: { _ in })
        #expect(!refused.ok && refused.refused.contains("PF015"), "\(refused.refused) \(refused.error ?? "")")
        #expect(try flashDiffers(dir, base) == nil)
        // Facts that miss the fuse (say, read before it was burned): the rules pass the plan, the
        // board refuses the encrypted FLASH_BEGIN itself.
        let session = FlashSession(port: "virtual:" + dir.path, options: options(try chipStub(chip), encrypt: true).withFieldMapChips)
        try session.connect()
        var stale = try #require(session.target(source: "stale"))
        stale.efuses?.disableDLEncrypt = false
        let plan = FlashSafety.check(FlashRequest(regions: regions, encrypt: true), target: stale)
        #expect(!plan.refused, "\(plan.blockingCodes)")
        let display = try #require(ChipSpec.named(chip)).displayName
        do {
            _ = try session.write(plan)
            Issue.record("the board took an encrypted write under DIS_DOWNLOAD_MANUAL_ENCRYPT")
        } catch let e as FlasherError {
            guard case .encryptedWriteRefused = e else { Issue.record("\(e)"); return }
            #expect(e.diagnostic.message.contains("the \(display) refused the encrypted write"), "\(e.diagnostic.message)")
        }
        #expect(session.reconnects == 0)
        session.finish()
        #expect(try flashDiffers(dir, base) == nil)
    }

    /// The CLI looks the stub up once it knows the chip: its `stub:` line (and the `--json` stub
    /// event) names the chip's own stub file, and the write goes through it.
    @Test(.enabled(if: Oracle.availableOrCI && TestEnvironment.fixturesOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: chips)
    func cliStubLineNamesTheChipsStub(_ chip: String) throws {
        let regions = try images(chip)
        let dir = try device(chip)
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try regions.enumerated().map { i, r -> [String] in
            let f = dir.appendingPathComponent("in\(i).bin")
            try Data(r.data).write(to: f)
            return [NumberParsing.hex(r.address), f.path]
        }.flatMap { $0 }
        let text = try Espforge.run(["flash", "write", "--port", "virtual:" + dir.path, "--before", "no-reset", "--after", "no-reset"] + files)
        #expect(text.status == 0, "\(text.out)\(text.err)")
        let line = text.err.split(separator: "\n").first { $0.hasPrefix("stub: ") }.map(String.init) ?? ""
        let display = try #require(ChipSpec.named(chip)).displayName
        #expect(line.hasPrefix("stub: \(chip).json for the \(display): /") && line.contains("(from "), "\(text.err)")
        #expect(text.out.contains("stub loader"), "\(text.out)")
        let json = try Espforge.run(["flash", "verify", "--port", "virtual:" + dir.path, "--before", "no-reset", "--after", "no-reset", "--json"] + files)
        #expect(json.status == 0, "\(json.out)\(json.err)")
        let stubEvent = json.out.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .first { $0["event"] as? String == "stub" }
        #expect((stubEvent?["path"] as? String)?.hasSuffix("/\(chip).json") == true && stubEvent?["chip"] as? String == chip, "\(json.out)")
        #expect(try flashDiffers(dir, expected([UInt8](repeating: 0xFF, count: 4 << 20), regions)) == nil)
    }

    /// `flash read`, `verify` and `erase` on S3/C3 through the session (stub): read gives the
    /// flash, verify tells equal from different, erase clears exactly its sectors.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)), arguments: chips)
    func readVerifyErase(_ chip: String) throws {
        let base = pattern(0x17_59)
        let dir = try device(chip, flash: base)
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = "virtual:" + dir.path
        let o = options(try chipStub(chip))
        #expect(try FlashOperations.read(port: port, options: o, address: 0x3000, size: 0x2345) == Array(base[0x3000..<0x5345]))
        let same = FlashRegion(address: 0x20000, data: Array(base[0x20000..<0x28000]), name: "same")
        var other = same
        other.data[5] ^= 1
        let results = try FlashOperations.verify(port: port, options: o, regions: [same, other])
        #expect(results.map(\.outcome) == [.verified, .mismatch])
        try FlashOperations.erase(port: port, options: o, range: (0x40000, 0x2000))
        var want = base
        want.replaceSubrange(0x40000..<0x42000, with: [UInt8](repeating: 0xFF, count: 0x2000))
        let differs = try flashDiffers(dir, want)
        #expect(differs == nil, "flash differs from espsecure's at \(differs ?? "")")
        // Through the ROM loader (no stub) too: READ_FLASH_SLOW and the ROM's MD5.
        var rom = o
        rom.stub = nil
        #expect(try FlashOperations.read(port: port, options: rom, address: 0x41FC0, size: 0x80) == Array(want[0x41FC0..<0x42040]))
        #expect(try FlashOperations.verify(port: port, options: rom, regions: [same]).map(\.outcome) == [.verified])
    }
}
