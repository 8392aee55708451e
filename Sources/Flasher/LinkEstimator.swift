import Foundation

/// What a noisy link costs, estimated from the outcomes of the data blocks sent on it, and the
/// choices that follow: the block size that moves the most payload per unit of time, the response
/// timeout of a block, and whether a lower baud rate is worth trying (or was worth it).
///
/// Model: each byte on the wire is damaged with probability λ (independently), so an attempt with
/// `b` payload bytes and `o` bytes of framing, headers and reply gets through with probability
/// `exp(-λ·(b + o))`; on top of that a fraction τ of attempts ends in a timeout (a lost frame
/// delimiter — independent of the block size), costing `timeoutCost` byte times. The goodput of a
/// block of `b` bytes is then `b·exp(-λ·(b+o))·(1-τ) / (b + o + latency + τ·timeoutCost)`, in
/// payload bytes per byte time; the block chosen is the candidate that maximises it. λ and τ are
/// exponentially weighted over the recent attempts (≈ the last 50), so the block follows the link
/// down when it gets worse and back up when it gets better.
///
/// Pure value type: no clock, no I/O; the session feeds it outcomes and wall-clock latencies.
public struct LinkEstimator: Sendable, Equatable {
    /// Block sizes to choose from, largest first (powers of two dividing the largest).
    public let candidates: [Int]
    /// Bytes of framing around a block: SLIP delimiters, 8-byte command header, 16-byte data
    /// header, the reply (8-byte header + status) and a few escapes.
    public var overhead = 48.0
    /// Weight of the previous estimate per attempt (0.98: about the last 50 attempts count).
    public var decay = 0.98
    /// Smallest response margin in seconds (a data block's timeout is its wire time plus the margin).
    public var marginFloor = 0.01
    /// Largest margin (and the margin until latencies were measured): the session's timeout.
    public var marginCeiling = 3.0
    /// A new block size is taken only when its goodput beats the current one's by this factor.
    public var hysteresis = 1.05

    /// Decayed sums: wire bytes exposed, attempts failed by a reply (error or damaged), attempts, timeouts.
    private(set) var exposure: Double
    private(set) var failures = 0.0
    private(set) var attempts = 0.0
    private(set) var timeouts = 0.0
    /// Largest response latency beyond the wire time seen (seconds, slowly decaying), and how many were seen.
    private(set) var latencyMax = 0.0
    private(set) var latencySamples = 0
    /// Typical response latency beyond the wire time (seconds, exponentially weighted).
    public private(set) var latencyMean = 0.0
    /// How far latencies stray from ``latencyMean`` (mean absolute deviation, weighted alike).
    public private(set) var latencyDeviation = 0.0
    /// The margin until four replies were measured (nil: ``marginCeiling``).
    public var initialMargin: Double?
    /// The link's own turnaround: the lowest recent latency (follows a lower one at once, a higher
    /// one slowly). Scheduling delays on a busy host come on top of it at random; they are not a
    /// property of the link and must not talk the block size up.
    public private(set) var latencyFloor = 0.0

    /// `prior`: wire bytes of clean traffic assumed before the first outcome (keeps the first
    /// failure from collapsing the block at once).
    public init(candidates: [Int], prior: Double = 64 * 1024) {
        self.candidates = candidates.sorted(by: >)
        exposure = prior
        attempts = prior / (Double(self.candidates.first ?? 0x4000) + overhead)
    }

    /// Starts from a fault rate measured before the first block (by the short commands of the
    /// connection, ``LoaderClient/LinkStatistics``) instead of the clean prior: as if `weight`
    /// attempts of 1 KiB had failed at the rate that `faultRate` damaged bytes per byte give. The
    /// first block is then chosen for the link measured, and the blocks' own outcomes soon
    /// outweigh the seed (each attempt decays it by ``decay``).
    public mutating func seed(faultRate: Double, weight: Double = 8) {
        guard faultRate > 0, weight > 0 else { return }
        let size = 1024 + overhead
        attempts = weight
        exposure = weight * size
        failures = weight * (1 - exp(-faultRate * size))
        timeouts = 0
    }

    /// Damaged bytes per wire byte: from the fraction of attempts that failed by an error or a
    /// damaged reply, `f`, and the mean attempt size `s`: `-ln(1 - f) / s` (a failed attempt
    /// hides how many of its bytes were hit, so failures per byte exposed would underestimate).
    public var faultRate: Double {
        guard attempts > 0 else { return 0 }
        let f = min(0.99, failures / attempts)
        return -log(1 - f) / max(exposure / attempts, 1)
    }
    /// Attempts that ended in a timeout, per attempt.
    public var timeoutRate: Double { attempts > 0 ? timeouts / attempts : 0 }

    /// Records one attempt: `payload` bytes; `failed` when the loader rejected it or the reply was
    /// damaged; `timedOut` when no reply came.
    public mutating func record(payload: Int, failed: Bool, timedOut: Bool = false) {
        exposure = exposure * decay + Double(payload) + overhead
        failures = failures * decay + (failed && !timedOut ? 1 : 0)
        timeouts = timeouts * decay + (timedOut ? 1 : 0)
        attempts = attempts * decay + 1
    }

    /// Records the wall-clock latency of a reply beyond its expected wire time (seconds).
    public mutating func recordLatency(_ seconds: Double) {
        let s = max(0, seconds)
        latencyMax = max(latencyMax * 0.995, s)
        latencyDeviation = latencySamples == 0 ? 0 : latencyDeviation * 0.9 + abs(s - latencyMean) * 0.1
        latencyMean = latencySamples == 0 ? s : latencyMean * 0.9 + s * 0.1
        latencyFloor = latencySamples == 0 ? s : min(s, latencyFloor + (s - latencyFloor) * 0.02)
        latencySamples += 1
    }

    /// The margin added to a data block's wire time before it counts as lost: the typical latency
    /// and three times its deviation (plus 5 ms), between the floor and the ceiling;
    /// ``initialMargin`` until four replies were measured. A reply later than that is not given
    /// up: the session probes, and a late reply still counts (see ``lateReplyWait``), so the
    /// margin follows the usual replies, not the slowest one (a stub that answers a block only
    /// after finishing an erase for the one before).
    public var margin: Double {
        guard latencySamples >= 4 else { return min(marginCeiling, initialMargin ?? marginCeiling) }
        return min(marginCeiling, max(marginFloor, latencyMean + 3 * latencyDeviation + 0.005))
    }

    /// How long a probe sent after a timeout waits for the late reply (or its own): the largest
    /// recent latency twice over (plus 0.1 s), at least 0.25 s, at most the ceiling. Paid in full
    /// only when the probe is lost too.
    public var lateReplyWait: Double {
        guard latencySamples >= 4 else { return marginCeiling }
        return min(marginCeiling, max(0.25, 2 * latencyMax + 0.1))
    }

    /// The timeout of a short command (an MD5 of a piece, a register read) on this link: it may
    /// wait behind the stub's last write, so at least the largest recent latency and 0.1 s more,
    /// and 0.2 s.
    public var shortCommandTimeout: Double {
        min(marginCeiling, max(0.2, 2 * margin, latencyMax + 0.1))
    }

    /// The margin a link without host scheduling delays would need: from ``latencyFloor``
    /// instead of the largest latency (used to cost a timeout when choosing the block size).
    public var linkMargin: Double {
        guard latencySamples >= 4 else { return marginCeiling }
        return min(margin, max(marginFloor, 3 * latencyFloor + 0.02))
    }

    /// Response timeout for a data block of `payload` bytes at `baud`: its wire time (and the
    /// reply's) with half again for slack, plus ``margin``.
    public func timeout(payload: Int, baud: Int) -> Double {
        1.5 * (Double(payload) + overhead) * 10 / Double(max(baud, 1)) + margin
    }

    /// Expected payload bytes per byte time with blocks of `block` bytes. `latency`: per-block
    /// turnaround in byte times; `timeoutCost`: byte times one timeout costs.
    public func goodput(block: Int, latency: Double = 0, timeoutCost: Double) -> Double {
        let b = Double(block)
        let pass = exp(-faultRate * (b + overhead)) * (1 - min(timeoutRate, 0.99))
        return b * pass / (b + overhead + latency + timeoutRate * timeoutCost)
    }

    /// The candidate block with the best goodput, keeping `current` unless another beats it by
    /// ``hysteresis``.
    public func bestBlock(current: Int, latency: Double = 0, timeoutCost: Double) -> Int {
        var best = current
        var bestG = goodput(block: current, latency: latency, timeoutCost: timeoutCost) * hysteresis
        for b in candidates {
            let g = goodput(block: b, latency: latency, timeoutCost: timeoutCost)
            if g > bestG { best = b; bestG = g }
        }
        return best
    }

    /// Probability that a block of `block` bytes gets through at the first attempt.
    public func passRate(block: Int) -> Double {
        exp(-faultRate * (Double(block) + overhead)) * (1 - min(timeoutRate, 0.99))
    }

    /// Failures of any kind (rejected, damaged or lost) per wire byte, over the recent attempts:
    /// the figure compared before and after a baud step.
    public var anyFailureRate: Double { (failures + timeouts) / max(exposure, 1) }

    /// Forgets the outcomes (after the baud rate changed, the old ones describe another link);
    /// latencies are kept.
    public mutating func resetOutcomes(prior: Double) {
        exposure = prior
        failures = 0
        attempts = prior / (Double(candidates.first ?? 0x4000) + overhead)
        timeouts = 0
    }
}

/// A trial of a lower baud rate: the failure rate per byte before it, and the attempts since.
struct BaudTrial: Sendable, Equatable {
    var from: Int
    var to: Int
    var rateBefore: Double
    var bytes = 0.0
    var failures = 0.0
    var attempts = 0

    mutating func record(payload: Int, overhead: Double, failed: Bool) {
        bytes += Double(payload) + overhead
        failures += failed ? 1 : 0
        attempts += 1
    }

    /// Failures of any kind per wire byte at the lower rate.
    var rateAfter: Double { failures / max(bytes, 1) }
}
