import Crypto
import ESPCore
import Flasher
import Foundation
import TestSupport
import Testing
import VirtualDevice

/// Link adaptation over seeded faulty virtual links (no wall-clock dependence: a virtual port
/// answers at once, so a lost reply is a timeout without waiting; faults are seeded).
@Suite struct NoisyLinkTests {
    /// 256 KiB of incompressible data (the stub sends it uncompressed in 16 KiB blocks).
    func image() -> [UInt8] {
        var rng = SeededRandom(seed: 0x5EED_0015)
        return rng.bytes(256 * 1024)
    }

    func write(_ data: [UInt8], faults: String, seed: Int, stub: StubImage?, adaptive: Bool = true,
               baud: Int = 921_600) throws -> (DeviceOutcome, [FlashEvent], [UInt8]) {
        let dir = try makeDevice("noisy")
        defer { try? FileManager.default.removeItem(at: dir) }
        var o = options(stub: stub, baud: baud)
        o.adaptive = adaptive
        let events = EventLog()
        let outcome = DeviceRunner.flash(port: "virtual:\(dir.path)?faults=\(faults)&seed=\(seed)",
                                         request: FlashRequest(regions: [FlashRegion(address: 0x10000, data: data, name: "app")]),
                                         options: o, emit: { events.add($0) })
        let flash = try flashContents(dir)
        return (outcome, events.all, Array(flash[0x10000..<(0x10000 + data.count)]))
    }

    /// At 1e-3 drop + 1e-3 flip nearly every 16 KiB block is hit: with fixed blocks the write gives
    /// up (cleanly: an error, never a success with wrong bytes).
    @Test func fixedBlocksDoNotCrossHeavyNoise() throws {
        let data = image()
        let (outcome, _, _) = try write(data, faults: "drop=0.001,flip=0.001", seed: 1, stub: try esptoolStub(), adaptive: false)
        #expect(!outcome.ok)
        #expect(outcome.error != nil)
    }

    /// The same write with adaptation finishes, the flash holds exactly the image (MD5-checked by
    /// the session and compared here byte for byte), and the adaptation is reported.
    @Test(arguments: [1])
    func adaptiveBlocksCrossHeavyNoise(seed: Int) throws {
        let data = image()
        let (outcome, events, flash) = try write(data, faults: "drop=0.001,flip=0.001", seed: seed, stub: try esptoolStub())
        #expect(outcome.ok, "seed \(seed): \(outcome.error ?? "")")
        #expect(flash == data)
        let link = try #require(outcome.link)
        #expect(link.blockShrinks >= 1 && link.smallestBlock < 0x4000 && link.initialBlock == 0x4000)
        #expect(link.restarts >= 1 && link.payloadBytesSent > data.count)
        #expect(events.contains { $0.event == "adapt" && ($0.detail ?? "").hasPrefix("block 16384 → 4096") })
        #expect(events.contains { $0.event == "link" && ($0.detail ?? "").contains("blocks 16384 down to") })
        let regionResult = try #require(outcome.regions.first)
        #expect(regionResult.md5 == Array(Insecure.MD5.hash(data: data)).hexString)
    }

    /// Through the ROM loader the block is already the smallest (1 KiB): repeated failures step
    /// the baud rate down with CHANGE_BAUDRATE, and the write still ends correct.
    @Test func romLoaderStepsTheBaudRateDown() throws {
        let data = Array(image().prefix(64 * 1024))
        let (outcome, events, flash) = try write(data, faults: "drop=0.0005,flip=0.0005", seed: 4, stub: nil)
        #expect(outcome.ok, "\(outcome.error ?? "")")
        #expect(flash == data)
        let link = try #require(outcome.link)
        #expect(link.blockShrinks == 0 && link.initialBlock == 0x400)
        #expect(link.baudDowns >= 1 && link.lowestBaud < 921_600 && link.initialBaud == 921_600)
        #expect(events.contains { $0.event == "adapt" && ($0.detail ?? "").hasPrefix("baud 921600 → 460800") })
    }

    /// A clean link changes nothing: one stream, 16 KiB blocks, no restart.
    @Test func cleanLinkDoesNotAdapt() throws {
        let data = image()
        let (outcome, events, flash) = try write(data, faults: "drop=0", seed: 1, stub: try esptoolStub())
        #expect(outcome.ok)
        #expect(flash == data)
        let link = try #require(outcome.link)
        #expect(!link.adapted && link.restarts == 0 && link.finalBlock == 0x4000 && link.finalBaud == 921_600)
        #expect(link.payloadBytesSent == data.count)
        #expect(!events.contains { $0.event == "adapt" || $0.event == "link" })
    }
}
