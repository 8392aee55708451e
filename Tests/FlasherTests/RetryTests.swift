import Crypto
import Flasher
import Foundation
import Loader
import Testing
import TestSupport
import Transport
import VirtualDevice

/// Wraps a virtual port and rewrites outgoing command packets (tests of retry and verification).
final class TamperingPort: ChipPort {
    let inner: ChipPort
    var name: String { inner.name }
    var kind: PortKind { inner.kind }
    var tamper: (CommandPacket) -> CommandPacket
    private(set) var sent: [CommandPacket] = []
    private var decoder = SLIPDecoder(maxFrameLength: 1 << 20)

    init(_ inner: ChipPort, tamper: @escaping (CommandPacket) -> CommandPacket) {
        self.inner = inner
        self.tamper = tamper
    }

    func write(_ bytes: [UInt8]) throws {
        var out: [UInt8] = []
        for f in decoder.frames(bytes) {
            if let p = try? CommandPacket.decode(f) {
                sent.append(p)
                out += SLIP.encode(tamper(p).encode())
            } else {
                out += SLIP.encode(f)
            }
        }
        try inner.write(out)
    }
    func read(timeout: Double) throws -> [UInt8] { try inner.read(timeout: timeout) }
    func setBaud(_ baud: Int) throws { try inner.setBaud(baud) }
    func setModemLines(dtr: Bool?, rts: Bool?) throws { try inner.setModemLines(dtr: dtr, rts: rts) }
    func flushInput() { inner.flushInput() }
    func reopen() throws { try inner.reopen() }
    func close() { inner.close() }
}

@Suite(.serialized) struct RetryTests {
    /// A block damaged on the way (checksum error) is sent again with the same sequence number.
    @Test(arguments: [true, false])
    func damagedBlockIsResentWithTheSameSequence(stubMode: Bool) throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        var damaged = false
        let port = TamperingPort(try VirtualPorts.opener().open("virtual:" + dir.path)) { p in
            guard p.op == .flashData, p.word(1) == 2, !damaged else { return p }
            damaged = true
            var q = p
            q.data[20] ^= 0x01 // payload changed, checksum not: the loader rejects it
            return q
        }
        var rng = SeededRandom(seed: 42)
        let data = rng.bytes(0x4000 * 4)
        let session = FlashSession(openPort: port, options: options(stub: stubMode ? try esptoolStub() : nil, compress: false))
        try session.connect()
        let results = try session.write(FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x40000, data: data, name: "d")]),
                                                           facts: try #require(session.facts)))
        session.finish()
        #expect(results.first?.outcome == .written)
        let seqs = port.sent.filter { $0.op == .flashData }.compactMap { $0.word(1) }
        #expect(seqs.filter { $0 == 2 }.count == 2, "\(seqs)")
        #expect(seqs == seqs.sorted())
        #expect(Array(try flashContents(dir)[0x40000..<(0x40000 + data.count)]) == data)
    }

    /// Data that arrives intact-looking but wrong (checksum fixed up) is caught by the MD5: the
    /// region is written again; if it never matches, nothing is reported as written.
    @Test func nothingIsReportedWrittenUnlessTheMD5Matched() throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        var remaining = 1
        let port = TamperingPort(try VirtualPorts.opener().open("virtual:" + dir.path)) { p in
            guard p.op == .flashData, remaining > 0 else { return p }
            remaining -= 1
            var q = p
            q.data[16] ^= 0xFF
            q.checksum = UInt32(LoaderProtocol.checksum(q.data[16...]))
            return q
        }
        let data = [UInt8](repeating: 0x42, count: 0x1000)
        let session = FlashSession(openPort: port, options: options(stub: nil, compress: false))
        var events: [FlashEvent] = []
        session.onEvent = { events.append($0) }
        try session.connect()
        let plan = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x50000, data: data, name: "d")]),
                                      facts: try #require(session.facts))
        #expect(try session.write(plan).first?.outcome == .written)
        #expect(events.contains { $0.event == "retry" })
        // Now corrupt every block: the write must fail and never report "written".
        remaining = .max
        events = []
        #expect(throws: FlasherError.self) { _ = try session.write(FlashSafety.check(
            FlashRequest(regions: [FlashRegion(address: 0x60000, data: data, name: "e")]), facts: try #require(session.facts))) }
        #expect(!events.contains { $0.event == "written" })
        session.finish()
    }
}

@Suite struct RegisterAccessTests {
    /// The eFuse client's view: LoaderClient is a RegisterAccess; a program cycle through it
    /// burns the virtual device's eFuses, which persist when the port closes.
    @Test func burnThroughRegisterAccessPersists() throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let access = try LoaderConnection.open(port: "virtual:" + dir.path, before: .noReset, ports: VirtualPorts.opener())
        let base: UInt32 = 0x3FF5_A000
        #expect(try access.readRegister(base + 0x18) & 0x40 == 0)
        try access.writeRegister(base + 0x34, 0x40)      // BLK0 WDATA6: JTAG_DISABLE
        try access.writeRegister(base + 0xFC, 0x5A5A)    // CONF: program
        try access.writeRegister(base + 0x104, 2)        // CMD: PGM
        try access.writeRegister(base + 0xFC, 0x5AA5)    // CONF: read
        try access.writeRegister(base + 0x104, 1)        // CMD: READ
        #expect(try access.readRegister(base + 0x18) & 0x40 != 0)
        access.close()
        let efuses = try VirtualDevice.DeviceStore(directory: dir.path).load().efuses
        #expect(efuses.rawWord(block: 0, word: 6) & 0x40 != 0)
    }
}

/// A block damaged past its 8-bit checksum (two flips of the same bit) and then a lost connection:
/// the reconnect resumes after the last right piece, not at the damaged one (which would write
/// everything after it again), and the damaged piece is repaired once the region is through.
@Suite(.serialized) struct ReconnectRepairTests {
    @Test func reconnectResumesAfterTheLastRightPiece() throws {
        let dir = try makeDevice("repair")
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededRandom(seed: 7)
        let data = rng.bytes(256 * 1024)
        let inner = try VirtualPort(name: "repair", directory: dir.path, faults: "disconnect-after=150000", seed: 1)
        var blocks = 0
        let port = TamperingPort(inner) { p in
            guard p.op == .flashData || p.op == .flashDeflData else { return p }
            blocks += 1
            guard blocks == 2 else { return p }
            var q = p
            q.data[16 + 100] ^= 0x04   // two flips of the same bit: the checksum still matches
            q.data[16 + 200] ^= 0x04
            return q
        }
        let session = FlashSession(openPort: port, options: options(stub: try esptoolStub(), compress: false))
        let events = EventLog()
        session.onEvent = { events.add($0) }
        try session.connect()
        let plan = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x10000, data: data, name: "app")]),
                                     facts: try #require(session.facts))
        let results = try session.write(plan)
        session.finishWithoutReset()
        #expect(results.map(\.outcome) == [.written])
        #expect(Array(try flashContents(dir)[0x10000..<(0x10000 + data.count)]) == data)
        #expect(blocks > 2 && session.reconnects >= 1)
        // The first resume after the reconnect is past the damaged piece (the second 16 KiB block).
        let resumes = events.all.filter { $0.event == "resume" }.compactMap(\.address)
        #expect((resumes.first ?? 0) > 0x10000 + 0x8000, "\(resumes)")
        #expect(events.all.contains { $0.event == "retry" && ($0.detail ?? "").hasPrefix("after a reconnect") })
    }
}
