/// The two Montgomery constants the ESP32 RSA peripheral needs, stored in RSA signature blocks:
/// `rinv = 2^(2·bits(n)) mod n` and `mdash = −n⁻¹ mod 2^32`. A tiny fixed-purpose bignum: words are
/// UInt64, least significant first; reduction is shift-and-subtract.
enum Montgomery {
    /// `rinv` as big-endian bytes (as long as `modulus`), or nil if `modulus` is even or < 3.
    static func rinv(modulusBE: [UInt8]) -> [UInt8]? {
        let n = words(fromBigEndian: modulusBE)
        let bits = bitLength(n)
        guard bits >= 2, n[0] & 1 == 1 else { return nil }
        // Start from 2^(bits-1), which is < n for odd n > 1, and double up to 2^(2·bits).
        var x = [UInt64](repeating: 0, count: n.count + 1)
        x[(bits - 1) / 64] = 1 << UInt64((bits - 1) % 64)
        let m = n + [0]
        for _ in 0..<(2 * bits - (bits - 1)) {
            // x <<= 1
            var carry: UInt64 = 0
            for i in 0..<x.count {
                let v = x[i]
                x[i] = v << 1 | carry
                carry = v >> 63
            }
            if !less(x, m) { subtract(&x, m) }
        }
        return bigEndianBytes(x, count: modulusBE.count)
    }

    /// `−n⁻¹ mod 2^32` from the lowest 32 bits of the (odd) modulus.
    static func mdash(modulusBE: [UInt8]) -> UInt32? {
        guard let last = modulusBE.last, last & 1 == 1 else { return nil }
        var n0: UInt32 = 0
        for b in modulusBE.suffix(4) { n0 = n0 << 8 | UInt32(b) }
        // Newton iteration: each step doubles the number of correct low bits (3 → 6 → 12 → 24 → 48).
        var inv = n0
        for _ in 0..<4 { inv = inv &* (2 &- n0 &* inv) }
        return 0 &- inv
    }

    static func words(fromBigEndian bytes: [UInt8]) -> [UInt64] {
        let count = max(1, (bytes.count + 7) / 8)
        var out = [UInt64](repeating: 0, count: count)
        for (i, b) in bytes.reversed().enumerated() {
            out[i / 8] |= UInt64(b) << UInt64(8 * (i % 8))
        }
        return out
    }

    static func bigEndianBytes(_ words: [UInt64], count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            let w = i / 8
            guard w < words.count else { break }
            out[count - 1 - i] = UInt8(truncatingIfNeeded: words[w] >> UInt64(8 * (i % 8)))
        }
        return out
    }

    static func bitLength(_ x: [UInt64]) -> Int {
        for i in stride(from: x.count - 1, through: 0, by: -1) where x[i] != 0 {
            return i * 64 + (64 - x[i].leadingZeroBitCount)
        }
        return 0
    }

    static func less(_ a: [UInt64], _ b: [UInt64]) -> Bool {
        for i in stride(from: a.count - 1, through: 0, by: -1) where a[i] != b[i] {
            return a[i] < b[i]
        }
        return false
    }

    static func subtract(_ a: inout [UInt64], _ b: [UInt64]) {
        var borrow: UInt64 = 0
        for i in 0..<a.count {
            let (d1, o1) = a[i].subtractingReportingOverflow(b[i])
            let (d2, o2) = d1.subtractingReportingOverflow(borrow)
            a[i] = d2
            borrow = (o1 || o2) ? 1 : 0
        }
    }
}
