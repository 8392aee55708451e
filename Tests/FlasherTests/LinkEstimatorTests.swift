import Flasher
import Foundation
import Loader
import Testing

/// The link estimator's choices (pure: no clock, no I/O) and the reading of damaged stub replies.
@Suite struct LinkEstimatorTests {
    let sizes = [0x4000, 0x2000, 0x1000, 0x800, 0x400, 0x200, 0x100]

    /// Feeds `attempts` outcomes of `block`-byte attempts on a link that damages each wire byte
    /// with probability `rate` (expected counts, no randomness).
    func estimator(rate: Double, block: Int, attempts: Int = 400) -> LinkEstimator {
        var e = LinkEstimator(candidates: sizes)
        for failed in evenFailures(probability: 1 - exp(-rate * (Double(block) + e.overhead)), count: attempts) {
            e.record(payload: block, failed: failed)
        }
        return e
    }

    @Test func cleanLinkKeepsTheLargestBlock() {
        let e = estimator(rate: 0, block: 0x4000)
        #expect(e.bestBlock(current: 0x4000, timeoutCost: 18_000) == 0x4000)
    }

    /// drop = flip = 2e-5 (4e-5 damaged per byte): a few KiB, not the minimum.
    @Test func lightNoiseGetsAFewKiB() {
        let e = estimator(rate: 4e-5, block: 0x4000)
        let b = e.bestBlock(current: 0x4000, timeoutCost: 18_000)
        #expect((0x400...0x1000).contains(b), "\(b)")
        // With a per-block turnaround of 1 ms at 921600 baud (92 byte times) larger blocks pay.
        #expect(e.bestBlock(current: 0x4000, latency: 92, timeoutCost: 18_000) >= 0x800)
    }

    /// drop = flip = 1e-3: the smallest block.
    @Test func heavyNoiseGetsTheSmallestBlock() {
        let e = estimator(rate: 2e-3, block: 0x100)
        #expect(e.bestBlock(current: 0x400, timeoutCost: 18_000) == 0x100)
        #expect(e.passRate(block: 0x100) > 0.4 && e.passRate(block: 0x100) < 0.7)
    }

    /// A busy host: replies mostly come 1 ms after their wire time, one in ten 60 ms late
    /// (scheduling). The timeout still covers the late ones, but the block choice charges the link's
    /// own turnaround (the lowest recent latency), so the block stays small on a link that damages
    /// larger ones.
    @Test func hostDelaysDoNotTalkTheBlockUp() {
        var e = estimator(rate: 2e-3, block: 0x100)
        // One attempt in 50 gets no reply at all (a lost delimiter).
        for i in 0..<200 { e.record(payload: 0x100, failed: i % 20 < 9, timedOut: i % 50 == 10) }
        for i in 0..<200 { e.recordLatency(i % 10 == 0 ? 0.060 : 0.001) }
        #expect(e.latencyFloor < 0.002)
        #expect(e.latencyMean > 0.003)
        // The margin covers the usual replies and the 60 ms ones (a reply later still is caught by
        // the session's probe, which waits the largest latency seen twice over).
        #expect(e.margin >= e.marginFloor && e.margin < 0.18)
        #expect(e.lateReplyWait >= 0.22)
        #expect(e.linkMargin <= e.margin && e.linkMargin >= e.marginFloor)
        let byte = 92_160.0   // byte times per second at 921600 baud
        #expect(e.bestBlock(current: 0x100, latency: e.latencyFloor * byte, timeoutCost: 2 * e.linkMargin * byte) == 0x100)
        // Charging the mean latency and the late-reply wait instead would pick a larger block.
        #expect(e.bestBlock(current: 0x100, latency: e.latencyMean * byte, timeoutCost: 2 * e.lateReplyWait * byte) > 0x100)
    }

    /// Blocks grow back once the failures stop (the old outcomes fade).
    @Test func blocksGrowBackWhenTheLinkRecovers() {
        var e = estimator(rate: 2e-3, block: 0x100)
        #expect(e.bestBlock(current: 0x100, timeoutCost: 18_000) == 0x100)
        for _ in 0..<300 { e.record(payload: 0x400, failed: false) }
        #expect(e.bestBlock(current: 0x100, timeoutCost: 18_000) >= 0x2000)
    }

    /// Timeouts are per attempt, not per byte: frequent ones make larger blocks worth it.
    @Test func costlyTimeoutsFavourLargerBlocks() {
        var e = LinkEstimator(candidates: sizes)
        for i in 0..<200 { e.record(payload: 0x400, failed: i % 10 == 0, timedOut: i % 10 == 5) }
        let cheap = e.bestBlock(current: 0x400, timeoutCost: 0)
        let dear = e.bestBlock(current: 0x400, timeoutCost: 100_000)
        #expect(dear > cheap)
    }

    @Test func timeoutIsWireTimePlusMeasuredMargin() {
        var e = LinkEstimator(candidates: sizes)
        e.marginCeiling = 3
        // Until four replies were measured: the session's timeout (or the initial margin).
        #expect(abs(e.timeout(payload: 0x4000, baud: 921_600) - (3 + 1.5 * Double(0x4000 + 48) * 10 / 921_600)) < 1e-9)
        e.initialMargin = 0.5
        #expect(abs(e.margin - 0.5) < 1e-9)
        for _ in 0..<4 { e.recordLatency(0.002) }
        #expect(abs(e.margin - 0.01) < 1e-9)   // 2 ms + 5 ms is below the 10 ms floor
        #expect(abs(e.shortCommandTimeout - 0.2) < 1e-9)
        // Replies that now come 200 ms late: the margin follows them within a few replies (a
        // reply later than the margin meanwhile is caught by the probe).
        for _ in 0..<4 { e.recordLatency(0.2) }
        #expect(e.margin > 0.2 && e.margin < 0.62)
        for _ in 0..<100 { e.recordLatency(0.2) }
        #expect(e.margin > 0.2 && e.margin < 0.23)
        #expect(abs(e.lateReplyWait - 0.5) < 0.01)   // twice the largest latency, and 0.1 s
        #expect(e.timeout(payload: 0x100, baud: 115_200) < e.timeout(payload: 0x4000, baud: 115_200))
    }

    /// A stub data reply is `01 op 02 00 | 00 00 00 00 | status error`.
    @Test func damagedStubRepliesAreRead() {
        let op = Opcode.flashDeflData
        let ok: [UInt8] = [0x01, op.rawValue, 0x02, 0x00, 0, 0, 0, 0, 0, 0]
        let bad: [UInt8] = [0x01, op.rawValue, 0x02, 0x00, 0, 0, 0, 0, 1, LoaderErrorCode.stubBadChecksum.rawValue]
        for i in ok.indices where i != 1 {   // any one byte lost but the opcode
            var f = ok
            f.remove(at: i)
            #expect(LoaderClient.judgeDamagedStubReply([f], op: op) == .used, "ok without byte \(i)")
        }
        for i in 0..<8 where i != 1 {   // one byte of the header lost: the error code is still there
            var f = bad
            f.remove(at: i)
            #expect(LoaderClient.judgeDamagedStubReply([f], op: op) == .rejected, "error without byte \(i)")
        }
        // Without its opcode a frame cannot be told from a stale reply to something else.
        var noOp = ok
        noOp.remove(at: 1)
        #expect(LoaderClient.judgeDamagedStubReply([noOp], op: op) == .unknown)
        // A stale reply to another command (a SYNC) is not read as this block's.
        #expect(LoaderClient.judgeDamagedStubReply([[0x01, Opcode.sync.rawValue, 2, 0, 0, 0, 0, 0, 0, 0]], op: op) == .unknown)
        var flipped = bad
        flipped[9] ^= 0x04
        #expect(LoaderClient.judgeDamagedStubReply([flipped], op: op) == .rejected)
        // Its opening delimiter lost: the reply arrives as stray bytes, with whatever came before.
        #expect(LoaderClient.judgeDamagedStubReply([[0x44] + ok], op: op) == .used)
        // Nothing recognisable.
        #expect(LoaderClient.judgeDamagedStubReply([[0x01, 0x02]], op: op) == .unknown)
        #expect(LoaderClient.judgeDamagedStubReply([], op: op) == .unknown)
    }

    /// A frame whose closing delimiter was lost is visible as unfinished.
    @Test func unfinishedFrameIsVisible() {
        var d = SLIPDecoder()
        _ = d.feed([0xC0, 1, 2, 3])
        #expect(d.unfinishedFrame == [1, 2, 3])
        _ = d.feed([0xC0])
        #expect(d.unfinishedFrame == nil)
    }
}
