import Flasher
import Foundation
import Loader
import Testing
import Transport

/// A port that answers from a script: each write of a command takes the next scripted reply (raw
/// bytes, possibly a damaged frame); once the script is used up, reads fail instead of waiting.
final class ScriptedPort: ChipPort {
    var name: String { "scripted" }
    var kind: PortKind { .socket }
    private var script: [[UInt8]]
    private var pending: [UInt8] = []
    private(set) var commands: [CommandPacket] = []
    private var decoder = SLIPDecoder()

    init(replies: [[UInt8]]) { script = replies }

    func write(_ bytes: [UInt8]) throws {
        for f in decoder.frames(bytes) {
            guard let p = try? CommandPacket.decode(f) else { continue }
            commands.append(p)
            if !script.isEmpty { pending += script.removeFirst() }
        }
    }
    func read(timeout: Double) throws -> [UInt8] {
        guard !pending.isEmpty else { throw TransportError.closed(name) }
        defer { pending = [] }
        return pending
    }
    func setBaud(_ baud: Int) throws {}
    func setModemLines(dtr: Bool?, rts: Bool?) throws {}
    func flushInput() {}
    func reopen() throws {}
    func close() {}
}

/// The link statistics of the short commands, and what the connection and the write take from them.
@Suite struct LinkStatisticsTests {
    /// `count` exchanges of `bytes` each on a link that damages `rate` of its bytes (expected
    /// counts, no randomness).
    func statistics(rate: Double, bytes: Int, count: Int) -> LoaderClient.LinkStatistics {
        var s = LoaderClient.LinkStatistics()
        for failed in evenFailures(probability: 1 - exp(-rate * Double(bytes)), count: count) {
            s.record(bytes: bytes, failed: failed)
        }
        return s
    }

    @Test func faultRateIsEstimatedFromExchangesOfAnySize() throws {
        #expect(statistics(rate: 2e-3, bytes: 30, count: 19).faultRate == nil)
        #expect(statistics(rate: 0, bytes: 30, count: 100).faultRate == 0)
        for rate in [2e-4, 1e-3, 2e-3] {
            let r = try #require(statistics(rate: rate, bytes: 30, count: 400).faultRate)
            #expect(r > rate / 1.5 && r < rate * 1.5, "rate \(rate): estimated \(r)")
        }
        // Mixed sizes: 60 clean register reads, then two 6 KiB upload blocks that failed. The
        // failures of large blocks say the link is worse than the reads alone would.
        var s = statistics(rate: 0, bytes: 30, count: 60)
        s.record(bytes: 6192, failed: true)
        s.record(bytes: 6192, failed: true)
        let mixed = try #require(s.faultRate)
        #expect(mixed > 1e-4 && mixed < 2e-3)
        // Every exchange failed: the highest rate.
        var all = LoaderClient.LinkStatistics()
        for _ in 0..<20 { all.record(bytes: 30, failed: true) }
        #expect(all.faultRate == 0.5)
    }

    @Test func stubUploadStartsAtTheBlockTheLinkCallsFor() {
        #expect(LoaderClient.uploadBlockSizes(faultRate: nil) == [0x1800, 0x400, 0x100, 0x80])
        #expect(LoaderClient.uploadBlockSizes(faultRate: 0) == [0x1800, 0x400, 0x100, 0x80])
        #expect(LoaderClient.uploadBlockSizes(faultRate: 2e-4).first == 0x400)
        #expect((LoaderClient.uploadBlockSizes(faultRate: 2e-3).first ?? 0) <= 0x100)
    }

    @Test func writeStartsAtTheBlockTheConnectionMeasured() {
        let sizes = [0x4000, 0x2000, 0x1000, 0x800, 0x400, 0x200, 0x100, 0x80]
        var e = LinkEstimator(candidates: sizes)
        #expect(e.bestBlock(current: 0x4000, timeoutCost: 0) == 0x4000)   // the clean prior
        e.seed(faultRate: 2e-3)
        #expect(abs(e.faultRate - 2e-3) < 1e-9)
        #expect(e.bestBlock(current: 0x4000, timeoutCost: 0) <= 0x100)
        e.seed(faultRate: 4e-5)
        let b = e.bestBlock(current: 0x4000, timeoutCost: 0)
        #expect(b >= 0x400 && b < 0x4000)
        // The blocks' own outcomes soon outweigh the seed: clean 1 KiB blocks after a noisy seed.
        e.seed(faultRate: 2e-3)
        for _ in 0..<200 { e.record(payload: 0x400, failed: false) }
        #expect(e.faultRate < 1e-4)
    }

    /// A reply damaged on the wire ends the wait of a command that may be repeated at once (it is
    /// not waited out), and counts as a failed exchange.
    @Test func damagedReplyOfARepeatableCommandFailsAtOnce() throws {
        let value: [UInt8] = [0x78, 0x56, 0x34, 0x12]
        let good = SLIP.encode([0x01, Opcode.readReg.rawValue, 0x04, 0x00] + value + [0, 0, 0, 0])
        let damaged = SLIP.encode([0x01, Opcode.readReg.rawValue, 0x04])   // too short to be a reply
        // Without the flag the damaged frame is skipped and the wait goes on (to the port's end).
        let waiting = LoaderClient(port: ScriptedPort(replies: [damaged]))
        #expect(throws: TransportError.self) {
            try waiting.command(.readReg, le32(0x3FF5_A000), timeout: 3600)
        }
        let quick = LoaderClient(port: ScriptedPort(replies: [damaged]))
        #expect(throws: FlasherError.badResponse(command: "READ_REG", why: "reply damaged on the wire")) {
            try quick.command(.readReg, le32(0x3FF5_A000), timeout: 3600, failOnDamage: true)
        }
        // A register read sends again after the damaged reply and takes the good one.
        let port = ScriptedPort(replies: [damaged, good])
        let c = LoaderClient(port: port)
        c.timeout = 3600
        #expect(try c.readRegister(0x3FF5_A000) == 0x1234_5678)
        #expect(port.commands.count == 2)
        #expect(c.linkStatistics.attempts == 2 && c.linkStatistics.failures == 1)
    }

    func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
