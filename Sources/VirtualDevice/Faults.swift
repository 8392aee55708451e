import EFuse
import ESPCore
/// Reproducible transport faults, decided by a seeded SplitMix64 generator.
///
/// Spec: comma-separated `key=value` items:
/// - `drop=P` — each byte (both directions) is lost with probability P
/// - `flip=P` — each byte gets one random bit flipped with probability P
/// - `stall=P:MS` — each reply chunk is held back MS milliseconds with probability P
/// - `disconnect-after=N` — the connection is closed after N bytes (in + out)
/// - `reset-after=N` — the chip resets spontaneously after N commands (ROM banner, stub lost)
/// - `efuse-stuck=BLOCK:WORD:MASK` — ESP32-S3/C3: the fuses of MASK in that word of that eFuse
///   block never burn (a burn then reads back without them); may be repeated
/// The same spec and seed give the same faults for the same traffic.
public struct FaultPlan: Sendable, Equatable {
    public var drop = 0.0
    public var flip = 0.0
    public var stallProbability = 0.0
    public var stallMilliseconds = 0
    public var disconnectAfterBytes: Int?
    public var resetAfterCommands: Int?
    /// Fuses that never burn (block, word, mask), ESP32-S3/C3 only.
    public var stuckEFuseBits: [FieldMapController.FuseWord: UInt32] = [:]
    public let spec: String

    public init(spec: String) throws(DeviceError) {
        self.spec = spec
        for item in spec.split(separator: ",") where !item.isEmpty {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw .badFaultSpec(spec, "'\(item)' is not key=value") }
            func prob(_ s: String) throws(DeviceError) -> Double {
                guard let p = Double(s), p >= 0, p <= 1 else { throw .badFaultSpec(spec, "'\(s)' is not a probability 0…1") }
                return p
            }
            func count(_ s: String) throws(DeviceError) -> Int {
                guard let n = Int(s), n >= 0 else { throw .badFaultSpec(spec, "'\(s)' is not a count") }
                return n
            }
            switch kv[0] {
            case "drop": drop = try prob(kv[1])
            case "flip": flip = try prob(kv[1])
            case "stall":
                let parts = kv[1].split(separator: ":").map(String.init)
                guard parts.count == 2 else { throw .badFaultSpec(spec, "stall needs P:MS") }
                stallProbability = try prob(parts[0])
                stallMilliseconds = min(try count(parts[1]), 60_000)
            case "disconnect-after": disconnectAfterBytes = try count(kv[1])
            case "reset-after": resetAfterCommands = try count(kv[1])
            case "efuse-stuck":
                let parts = kv[1].split(separator: ":").map(String.init)
                guard parts.count == 3, let block = Int(parts[0]), block >= 0, block < 16, let word = Int(parts[1]), word >= 0, word < 8,
                      let mask = NumberParsing.integer(parts[2]).flatMap({ UInt32(exactly: $0) }), mask != 0 else {
                    throw .badFaultSpec(spec, "efuse-stuck needs BLOCK:WORD:MASK, e.g. efuse-stuck=0:4:0x10000")
                }
                stuckEFuseBits[FieldMapController.FuseWord(block: block, word: word), default: 0] |= mask
            default: throw .badFaultSpec(spec, "unknown fault '\(kv[0])'")
            }
        }
    }
}

/// Applies a ``FaultPlan`` to a byte stream; counts what it did.
public struct FaultInjector: Sendable {
    public let plan: FaultPlan
    public let seed: UInt64
    private var rng: SplitMix64
    public private(set) var counters = FaultCounters()
    private var bytesSeen = 0
    private var resetDone = false

    public init(plan: FaultPlan, seed: UInt64) {
        self.plan = plan
        self.seed = seed
        rng = SplitMix64(seed: seed)
    }

    private mutating func next() -> UInt64 { rng.next() }

    private mutating func chance(_ p: Double) -> Bool {
        guard p > 0 else { return false }
        return Double(next() >> 11) / Double(1 << 53) < p
    }

    /// Applies drop/flip to `bytes`. Returns the surviving bytes and whether the link must now
    /// be cut (disconnect-after reached).
    public mutating func corrupt(_ bytes: [UInt8]) -> (bytes: [UInt8], disconnect: Bool) {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var cut = false
        for b in bytes {
            bytesSeen += 1
            if let limit = plan.disconnectAfterBytes, bytesSeen > limit {
                cut = true
                break
            }
            if chance(plan.drop) { counters.droppedBytes += 1; continue }
            if chance(plan.flip) {
                counters.flippedBits += 1
                out.append(b ^ UInt8(1 << (next() % 8)))
                continue
            }
            out.append(b)
        }
        if cut { counters.disconnects += 1 }
        return (out, cut)
    }

    /// Milliseconds to hold back the next reply chunk (0 = none).
    public mutating func stall() -> Int {
        guard chance(plan.stallProbability) else { return 0 }
        counters.stalls += 1
        counters.stallSeconds += Double(plan.stallMilliseconds) / 1000
        return plan.stallMilliseconds
    }

    /// True once when `commands` reaches the reset-after threshold.
    public mutating func shouldReset(commands: Int) -> Bool {
        guard !resetDone, let n = plan.resetAfterCommands, commands >= n else { return false }
        resetDone = true
        counters.resets += 1
        return true
    }
}

/// What the ESP32 ROM prints after a reset into download mode (115200 baud, CRLF).
public let romBootBanner: [UInt8] = Array(
    "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n".utf8)
