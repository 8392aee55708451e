import ESPCore
import Flasher
import Foundation
import Loader
import TestSupport
import Testing
import Transport
import VirtualDevice

/// Replies held up on the way (a stalled link), streams after a restart, the block choice on a
/// busy host. Seeded and in process: a virtual port answers at once, so "held up" means the reply
/// is not there when the host reads for it and comes with the next exchange (order kept).
@Suite struct LateReplyTests {
    /// 256 KiB of text: the stub path sends it compressed, where a block written twice breaks the
    /// stream (inflate error, restart).
    func text(_ size: Int = 256 * 1024) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while out.count < size {
            out += Array("espforge late reply line \(i) \(i * 7919 % 1000)\n".utf8)
            i += 1
        }
        return Array(out.prefix(size))
    }

    @Test func heldRepliesAreTakenLateNotAnsweredByASecondCopy() throws {
        let data = text()
        let dir = try makeDevice("late")
        defer { try? FileManager.default.removeItem(at: dir) }
        let inner = try VirtualPort(name: "late", directory: dir.path)
        let port = HoldingPort(inner: inner, holdDataReplies: [1, 2, 3])
        let (session, results) = try writeApp(data, through: port)
        #expect(results.map(\.outcome) == [.written])
        let result = try #require(results.first)
        #expect(result.compressed)
        #expect(Array(try flashContents(dir)[0x10000..<(0x10000 + data.count)]) == data)
        #expect(port.held == 3)
        let link = session.link
        // Each held reply was taken as its block's outcome: no block went twice, no restart.
        #expect(link.lateReplies == 3)
        #expect(link.restarts == 0 && link.timeouts == 0)
        #expect(link.payloadBytesSent == result.payloadBytes)
        #expect(port.dataBlocks == port.distinctDataBlocks)
    }

    /// After a restart, each stream covers at most 128 KiB (ending on a 64 KiB boundary or the
    /// region's end; the repair writes 4 KiB pieces): its FLASH_BEGIN makes the loader erase only that, not the whole rest of the
    /// region again at every restart.
    @Test func streamsAfterARestartAreBounded() throws {
        let data = text(512 * 1024)
        // The first seed (from 3 on) whose faults break a stream at least once.
        var checked = false
        for seed: UInt64 in 3..<12 where !checked {
            let dir = try makeDevice("bounded")
            defer { try? FileManager.default.removeItem(at: dir) }
            let inner = try VirtualPort(name: "bounded", directory: dir.path, faults: "drop=0.001,flip=0.001", seed: seed)
            let port = HoldingPort(inner: inner, holdDataReplies: [])
            let (session, results) = try writeApp(data, through: port)
            #expect(results.map(\.outcome) == [.written])
            #expect(Array(try flashContents(dir)[0x10000..<(0x10000 + data.count)]) == data)
            guard session.link.restarts >= 1 else { continue }
            checked = true
            let begins = port.begins
            #expect(begins.first.map { $0.address == 0x10000 && $0.size == data.count } == true, "\(begins)")
            #expect(begins.count >= 2)
            // Every later stream (after restarts, and the repair's pieces) is bounded.
            for b in begins.dropFirst() { #expect(b.size <= 0x20000, "seed \(seed): \(b)") }
        }
        #expect(checked, "one of seeds 3–11 breaks a stream at least once")
    }
}

/// Around an in-process virtual port: holds back the replies to chosen data blocks (counted from
/// 1 over FLASH_DATA / FLASH_DEFL_DATA requests) until the host's next write, as a stalled link
/// delivers them late; records the stream begins and data blocks the host sent.
final class HoldingPort: ChipPort {
    let inner: VirtualPort
    let holdDataReplies: Set<Int>
    var name: String { inner.name }
    var kind: PortKind { inner.kind }
    private var decoder = SLIPDecoder()
    private var heldBytes: [UInt8]?
    private(set) var held = 0
    private(set) var dataBlocks = 0
    private var seen = Set<[UInt8]>()
    private(set) var begins: [(address: Int, size: Int)] = []
    var distinctDataBlocks: Int { seen.count }

    init(inner: VirtualPort, holdDataReplies: Set<Int>) {
        self.inner = inner
        self.holdDataReplies = holdDataReplies
    }

    func write(_ bytes: [UInt8]) throws {
        var hold = false
        for frame in decoder.frames(bytes) {
            guard let p = try? CommandPacket.decode(frame) else { continue }
            switch Opcode(rawValue: p.opcode) {
            case .flashData?, .flashDeflData?:
                dataBlocks += 1
                seen.insert(p.data)
                if holdDataReplies.contains(dataBlocks) { hold = true }
            case .flashBegin?, .flashDeflBegin?:
                if p.data.count >= 16 {
                    let w = { (i: Int) in Int(p.data[i..<(i + 4)].loadLE(UInt32.self)) }
                    begins.append((w(12), w(0)))
                }
            default: break
            }
        }
        // A reply held earlier comes now, before anything this write brings.
        let released = heldBytes
        heldBytes = nil
        try inner.write(bytes)
        if hold {
            heldBytes = try inner.read(timeout: 0)
            held += 1
        }
        if let released { pendingFront = released }
    }

    private var pendingFront: [UInt8] = []

    func read(timeout: Double) throws -> [UInt8] {
        let front = pendingFront
        pendingFront = []
        if heldBytes != nil { return front }
        return front + (try inner.read(timeout: timeout))
    }

    func setBaud(_ baud: Int) throws { try inner.setBaud(baud) }
    func setModemLines(dtr: Bool?, rts: Bool?) throws { try inner.setModemLines(dtr: dtr, rts: rts) }
    func flushInput() { pendingFront = []; inner.flushInput() }
    func reopen() throws { heldBytes = nil; pendingFront = []; try inner.reopen() }
    func close() { inner.close() }
}
