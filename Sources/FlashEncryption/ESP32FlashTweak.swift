/// The ESP32 flash-encryption key tweak: the AES-256 key for a 32-byte flash block is the eFuse
/// key with some key bits flipped by bits of the block's flash address.
///
/// The key is read as a 256-bit big-endian integer (key bit n = bit 255 − n of the integer).
/// FLASH_CRYPT_CONFIG bit 0..3 enables tweaking of key bits [0, 67), [67, 132), [132, 195),
/// [195, 256). Below 16 MiB, key bit n is flipped when flash address bit P[n] is set (P from the
/// spec table, address bits 5..23). espsecure computes the tweak as
/// `((M1 · b) | ((M2 · b) & M2mask)) & range` with b = address >> 5, and that arithmetic (with its
/// carries above 16 MiB) is what is reproduced here, so results match for every address.
public struct ESP32FlashTweak: Sendable, Hashable {
    /// The 4-bit FLASH_CRYPT_CONFIG eFuse value.
    public let flashCryptConfig: Int
    let range: UInt256

    public init(flashCryptConfig: Int) throws {
        guard (0...0xF).contains(flashCryptConfig) else {
            throw FlashEncryptionError.invalidFlashCryptConfig(flashCryptConfig)
        }
        self.flashCryptConfig = flashCryptConfig
        var mask = UInt256.zero
        for (bit, keyBits) in Self.configRanges.enumerated() where flashCryptConfig & (1 << bit) != 0 {
            for n in keyBits { mask.setBit(255 - n) }
        }
        range = mask
    }

    /// Key-bit ranges enabled by FLASH_CRYPT_CONFIG bits 0, 1, 2, 3.
    static let configRanges: [Range<Int>] = [0..<67, 67..<132, 132..<195, 195..<256]

    /// Multipliers that spread the block number over the key (integer bit positions): one copy of
    /// the 19-bit block number per full run of the tweak pattern …
    static let multiplier1 = UInt256(bits: [4, 23, 42, 67, 86, 105, 132, 151, 170, 199, 218, 237])
    /// … and one for each short run, kept to the run's width by `multiplier2Mask`.
    static let multiplier2 = UInt256(bits: [0, 61, 124, 189])
    static let multiplier2Mask = UInt256(bits: Array(0...3) + Array(61...66) + Array(124...131) + Array(189...198))

    /// The tweak XORed into the key for the 32-byte flash block containing `address`.
    func tweak(blockNumber: UInt64) -> UInt256 {
        let a = Self.multiplier1.multiplied(by: blockNumber)
        let b = Self.multiplier2.multiplied(by: blockNumber)
        return (a | (b & Self.multiplier2Mask)) & range
    }

    /// The AES-256 key used for the 32-byte flash block containing `address` (0 ≤ address < 2³²);
    /// nil unless `key` is an ESP32-scheme key. Handle with care: this is key material.
    public func blockKey(for key: FlashEncryptionKey, address: Int) -> [UInt8]? {
        guard key.scheme == .esp32Tweak, key.material.count == 32, address >= 0 else { return nil }
        let k = UInt256(bigEndian: key.material)
        return (k ^ tweak(blockNumber: UInt64(address) >> 5)).bigEndianBytes
    }

    /// Writes the block keys for `count` consecutive flash blocks starting at `firstBlock` to
    /// `out` (32 bytes each), incrementally: M·(b+1) = M·b + M.
    func writeBlockKeys(base: UInt256, firstBlock: UInt64, count: Int, to out: UnsafeMutableRawPointer) {
        var a = Self.multiplier1.multiplied(by: firstBlock)
        var b = Self.multiplier2.multiplied(by: firstBlock)
        let m1 = Self.multiplier1, m2 = Self.multiplier2, mask2 = Self.multiplier2Mask, r = range
        for i in 0..<count {
            let t = (a | (b & mask2)) & r
            let key = base ^ t
            let p = out + 32 * i
            p.storeBytes(of: key.w3.bigEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: key.w2.bigEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: key.w1.bigEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: key.w0.bigEndian, toByteOffset: 24, as: UInt64.self)
            a.add(m1)
            b.add(m2)
        }
    }
}

/// A 256-bit unsigned integer, four 64-bit words, least significant first; arithmetic mod 2²⁵⁶.
struct UInt256: Sendable, Hashable {
    var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    static let zero = UInt256(w0: 0, w1: 0, w2: 0, w3: 0)

    init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    init(bits: [Int]) {
        self = .zero
        for b in bits { setBit(b) }
    }

    /// From 32 big-endian bytes.
    init(bigEndian bytes: [UInt8]) {
        func word(_ at: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<8 { v = v << 8 | UInt64(bytes[at + i]) }
            return v
        }
        self.init(w0: word(24), w1: word(16), w2: word(8), w3: word(0))
    }

    var bigEndianBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for w in [w3, w2, w1, w0] {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: w >> UInt64(shift))) }
        }
        return out
    }

    mutating func setBit(_ bit: Int) {
        let v = UInt64(1) << UInt64(bit & 63)
        switch bit >> 6 {
        case 0: w0 |= v
        case 1: w1 |= v
        case 2: w2 |= v
        default: w3 |= v
        }
    }

    func multiplied(by m: UInt64) -> UInt256 {
        let p0 = w0.multipliedFullWidth(by: m)
        let p1 = w1.multipliedFullWidth(by: m)
        let p2 = w2.multipliedFullWidth(by: m)
        let p3 = w3.multipliedFullWidth(by: m)
        let (r1, c1) = p1.low.addingReportingOverflow(p0.high)
        let (r2a, c2a) = p2.low.addingReportingOverflow(p1.high)
        let (r2, c2b) = r2a.addingReportingOverflow(c1 ? 1 : 0)
        let r3 = p3.low &+ p2.high &+ (c2a ? 1 : 0) &+ (c2b ? 1 : 0)
        return UInt256(w0: p0.low, w1: r1, w2: r2, w3: r3)
    }

    @inline(__always)
    mutating func add(_ o: UInt256) {
        let (s0, c0) = w0.addingReportingOverflow(o.w0)
        let (s1a, c1a) = w1.addingReportingOverflow(o.w1)
        let (s1, c1b) = s1a.addingReportingOverflow(c0 ? 1 : 0)
        let (s2a, c2a) = w2.addingReportingOverflow(o.w2)
        let (s2, c2b) = s2a.addingReportingOverflow((c1a || c1b) ? 1 : 0)
        w3 = w3 &+ o.w3 &+ ((c2a || c2b) ? 1 : 0)
        w0 = s0; w1 = s1; w2 = s2
    }

    static func & (a: UInt256, b: UInt256) -> UInt256 {
        UInt256(w0: a.w0 & b.w0, w1: a.w1 & b.w1, w2: a.w2 & b.w2, w3: a.w3 & b.w3)
    }
    static func | (a: UInt256, b: UInt256) -> UInt256 {
        UInt256(w0: a.w0 | b.w0, w1: a.w1 | b.w1, w2: a.w2 | b.w2, w3: a.w3 | b.w3)
    }
    static func ^ (a: UInt256, b: UInt256) -> UInt256 {
        UInt256(w0: a.w0 ^ b.w0, w1: a.w1 ^ b.w1, w2: a.w2 ^ b.w2, w3: a.w3 ^ b.w3)
    }
}
