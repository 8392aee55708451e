/// The Reed–Solomon check value the ESP32-S3 / ESP32-C3 eFuse controllers expect for BLOCK1…
/// BLOCK10: 12 parity bytes over the block's 32 data bytes (an RS(44, 32) code over GF(2^8) with
/// the primitive polynomial x^8+x^4+x^3+x^2+1 (0x11D), generator α = 2 and first consecutive root
/// α^0), written to the three PGM_CHECK_VALUE registers after the eight PGM_DATA registers.
/// Data bytes are the block's bytes in register order (byte 0 = the low byte of word 0). The
/// parity is what `espefuse` computes with its `reedsolo` encoder (checked by
/// `EFuseReedSolomonTests` against the oracle's own encoder).
public enum EFuseReedSolomon {
    public static let dataBytes = 32
    public static let parityBytes = 12

    /// The 12 check bytes for 32 data bytes (shorter data is padded with zero bytes, as a partly
    /// written block is).
    public static func checkValue(_ data: [UInt8]) -> [UInt8] {
        var msg = Array(data.prefix(dataBytes))
        msg += [UInt8](repeating: 0, count: dataBytes - msg.count)
        // Systematic encoding: the remainder of msg·x^12 divided by the generator polynomial.
        var rem = [UInt8](repeating: 0, count: parityBytes)
        for byte in msg {
            let factor = byte ^ rem[0]
            rem.removeFirst()
            rem.append(0)
            if factor != 0 {
                for j in 0..<parityBytes { rem[j] ^= GF.mul(generator[j + 1], factor) }
            }
        }
        return rem
    }

    /// The three PGM_CHECK_VALUE words (little-endian, as the registers take them) for a block's
    /// eight data words.
    public static func checkWords(_ words: [UInt32]) -> [UInt32] {
        var bytes: [UInt8] = []
        for w in words.prefix(8) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: w >> UInt32(8 * i))) } }
        let p = checkValue(bytes)
        return (0..<3).map { k in (0..<4).reduce(UInt32(0)) { $0 | UInt32(p[4 * k + $1]) << UInt32(8 * $1) } }
    }

    /// g(x) = Π_{i=0}^{11} (x − α^i), highest degree first (13 coefficients, leading 1).
    static let generator: [UInt8] = {
        var g: [UInt8] = [1]
        for i in 0..<parityBytes {
            let root = GF.exp[i]
            var next = [UInt8](repeating: 0, count: g.count + 1)
            for (j, c) in g.enumerated() {
                next[j] ^= c
                next[j + 1] ^= GF.mul(c, root)
            }
            g = next
        }
        return g
    }()

    enum GF {
        static let exp: [UInt8] = {
            var t = [UInt8](repeating: 0, count: 512)
            var x = 1
            for i in 0..<255 {
                t[i] = UInt8(x)
                x <<= 1
                if x & 0x100 != 0 { x ^= 0x11D }
            }
            for i in 255..<512 { t[i] = t[i - 255] }
            return t
        }()

        static let log: [Int] = {
            var l = [Int](repeating: 0, count: 256)
            for i in 0..<255 { l[Int(exp[i])] = i }
            return l
        }()

        static func mul(_ a: UInt8, _ b: UInt8) -> UInt8 {
            if a == 0 || b == 0 { return 0 }
            return exp[log[Int(a)] + log[Int(b)]]
        }
    }
}
