// AES-256 (FIPS-197) and XTS-AES-256 (IEEE 1619) for NVS encryption.
//
// swift-crypto does not expose raw AES block operations or XTS, so this is a small, table-based
// implementation of our own. NVS only ever encrypts 32-byte entries (two blocks), so no ciphertext
// stealing is needed. Not constant-time: it runs on the host that generates the images, where the
// keys are already present in memory and in files; there is no remote timing observer.

/// AES with a 256-bit key: the expanded key schedule and single-block encryption/decryption.
struct AES256: Sendable {
    private let encKeys: [UInt32]   // 60 round-key words
    private let decKeys: [UInt32]   // 60 words in reverse round order, InvMixColumns applied

    init?(key: ArraySlice<UInt8>) {
        guard key.count == 32 else { return nil }
        let k = Array(key)
        var w = [UInt32](repeating: 0, count: 60)
        for i in 0..<8 {
            w[i] = UInt32(k[4 * i]) << 24 | UInt32(k[4 * i + 1]) << 16 | UInt32(k[4 * i + 2]) << 8 | UInt32(k[4 * i + 3])
        }
        var rcon: UInt32 = 0x0100_0000
        for i in 8..<60 {
            var t = w[i - 1]
            if i % 8 == 0 {
                t = AESTables.subWord((t << 8) | (t >> 24)) ^ rcon
                rcon = AESTables.xtimeWord(rcon)
            } else if i % 8 == 4 {
                t = AESTables.subWord(t)
            }
            w[i] = w[i - 8] ^ t
        }
        encKeys = w
        // Equivalent inverse cipher: reverse round order, InvMixColumns on the inner round keys.
        var d = [UInt32](repeating: 0, count: 60)
        for round in 0...14 {
            for c in 0..<4 {
                let word = w[(14 - round) * 4 + c]
                if round == 0 || round == 14 {
                    d[round * 4 + c] = word
                } else {
                    let t = AESTables.td
                    d[round * 4 + c] =
                        t.0[Int(AESTables.sbox[Int(word >> 24)])] ^
                        t.1[Int(AESTables.sbox[Int((word >> 16) & 0xFF)])] ^
                        t.2[Int(AESTables.sbox[Int((word >> 8) & 0xFF)])] ^
                        t.3[Int(AESTables.sbox[Int(word & 0xFF)])]
                }
            }
        }
        decKeys = d
    }

    /// Encrypts the 16 bytes at `offset` of `block` in place.
    func encrypt(_ block: inout [UInt8], at offset: Int) {
        let te = AESTables.te
        var s0 = load(block, offset) ^ encKeys[0]
        var s1 = load(block, offset + 4) ^ encKeys[1]
        var s2 = load(block, offset + 8) ^ encKeys[2]
        var s3 = load(block, offset + 12) ^ encKeys[3]
        for round in 1..<14 {
            let k = round * 4
            let t0 = te.0[Int(s0 >> 24)] ^ te.1[Int((s1 >> 16) & 0xFF)] ^ te.2[Int((s2 >> 8) & 0xFF)] ^ te.3[Int(s3 & 0xFF)] ^ encKeys[k]
            let t1 = te.0[Int(s1 >> 24)] ^ te.1[Int((s2 >> 16) & 0xFF)] ^ te.2[Int((s3 >> 8) & 0xFF)] ^ te.3[Int(s0 & 0xFF)] ^ encKeys[k + 1]
            let t2 = te.0[Int(s2 >> 24)] ^ te.1[Int((s3 >> 16) & 0xFF)] ^ te.2[Int((s0 >> 8) & 0xFF)] ^ te.3[Int(s1 & 0xFF)] ^ encKeys[k + 2]
            let t3 = te.0[Int(s3 >> 24)] ^ te.1[Int((s0 >> 16) & 0xFF)] ^ te.2[Int((s1 >> 8) & 0xFF)] ^ te.3[Int(s2 & 0xFF)] ^ encKeys[k + 3]
            s0 = t0; s1 = t1; s2 = t2; s3 = t3
        }
        let sb = AESTables.sbox
        func last(_ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: UInt32, _ k: UInt32) -> UInt32 {
            (UInt32(sb[Int(a >> 24)]) << 24 | UInt32(sb[Int((b >> 16) & 0xFF)]) << 16 |
             UInt32(sb[Int((c >> 8) & 0xFF)]) << 8 | UInt32(sb[Int(d & 0xFF)])) ^ k
        }
        store(last(s0, s1, s2, s3, encKeys[56]), &block, offset)
        store(last(s1, s2, s3, s0, encKeys[57]), &block, offset + 4)
        store(last(s2, s3, s0, s1, encKeys[58]), &block, offset + 8)
        store(last(s3, s0, s1, s2, encKeys[59]), &block, offset + 12)
    }

    /// Decrypts the 16 bytes at `offset` of `block` in place.
    func decrypt(_ block: inout [UInt8], at offset: Int) {
        let td = AESTables.td
        var s0 = load(block, offset) ^ decKeys[0]
        var s1 = load(block, offset + 4) ^ decKeys[1]
        var s2 = load(block, offset + 8) ^ decKeys[2]
        var s3 = load(block, offset + 12) ^ decKeys[3]
        for round in 1..<14 {
            let k = round * 4
            let t0 = td.0[Int(s0 >> 24)] ^ td.1[Int((s3 >> 16) & 0xFF)] ^ td.2[Int((s2 >> 8) & 0xFF)] ^ td.3[Int(s1 & 0xFF)] ^ decKeys[k]
            let t1 = td.0[Int(s1 >> 24)] ^ td.1[Int((s0 >> 16) & 0xFF)] ^ td.2[Int((s3 >> 8) & 0xFF)] ^ td.3[Int(s2 & 0xFF)] ^ decKeys[k + 1]
            let t2 = td.0[Int(s2 >> 24)] ^ td.1[Int((s1 >> 16) & 0xFF)] ^ td.2[Int((s0 >> 8) & 0xFF)] ^ td.3[Int(s3 & 0xFF)] ^ decKeys[k + 2]
            let t3 = td.0[Int(s3 >> 24)] ^ td.1[Int((s2 >> 16) & 0xFF)] ^ td.2[Int((s1 >> 8) & 0xFF)] ^ td.3[Int(s0 & 0xFF)] ^ decKeys[k + 3]
            s0 = t0; s1 = t1; s2 = t2; s3 = t3
        }
        let ib = AESTables.invSbox
        func last(_ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: UInt32, _ k: UInt32) -> UInt32 {
            (UInt32(ib[Int(a >> 24)]) << 24 | UInt32(ib[Int((b >> 16) & 0xFF)]) << 16 |
             UInt32(ib[Int((c >> 8) & 0xFF)]) << 8 | UInt32(ib[Int(d & 0xFF)])) ^ k
        }
        store(last(s0, s3, s2, s1, decKeys[56]), &block, offset)
        store(last(s1, s0, s3, s2, decKeys[57]), &block, offset + 4)
        store(last(s2, s1, s0, s3, decKeys[58]), &block, offset + 8)
        store(last(s3, s2, s1, s0, decKeys[59]), &block, offset + 12)
    }

    @inline(__always) private func load(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }

    @inline(__always) private func store(_ v: UInt32, _ b: inout [UInt8], _ o: Int) {
        b[o] = UInt8(v >> 24); b[o + 1] = UInt8((v >> 16) & 0xFF)
        b[o + 2] = UInt8((v >> 8) & 0xFF); b[o + 3] = UInt8(v & 0xFF)
    }
}

enum AESTables {
    static let sbox: [UInt8] = {
        // Multiplicative inverse in GF(2^8) followed by the affine transform.
        var box = [UInt8](repeating: 0, count: 256)
        var p: UInt8 = 1, q: UInt8 = 1
        repeat {
            p = p ^ (p << 1) ^ ((p & 0x80) != 0 ? 0x1B : 0)
            q ^= q << 1; q ^= q << 2; q ^= q << 4
            if (q & 0x80) != 0 { q ^= 0x09 }
            let r = q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4)
            box[Int(p)] = r ^ 0x63
        } while p != 1
        box[0] = 0x63
        return box
    }()

    static let invSbox: [UInt8] = {
        var inv = [UInt8](repeating: 0, count: 256)
        for (i, v) in sbox.enumerated() { inv[Int(v)] = UInt8(i) }
        return inv
    }()

    private static func rotl8(_ x: UInt8, _ s: UInt8) -> UInt8 { (x << s) | (x >> (8 - s)) }

    static func xtime(_ x: UInt8) -> UInt8 { (x << 1) ^ ((x & 0x80) != 0 ? 0x1B : 0) }

    static func mul(_ a: UInt8, _ b: UInt8) -> UInt8 {
        var a = a, b = b, r: UInt8 = 0
        while b != 0 {
            if (b & 1) != 0 { r ^= a }
            a = xtime(a); b >>= 1
        }
        return r
    }

    static func xtimeWord(_ w: UInt32) -> UInt32 { UInt32(xtime(UInt8(w >> 24))) << 24 }

    static func subWord(_ w: UInt32) -> UInt32 {
        UInt32(sbox[Int(w >> 24)]) << 24 | UInt32(sbox[Int((w >> 16) & 0xFF)]) << 16 |
            UInt32(sbox[Int((w >> 8) & 0xFF)]) << 8 | UInt32(sbox[Int(w & 0xFF)])
    }

    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

    /// Encryption T-tables: SubBytes + MixColumns column for each byte position.
    static let te: ([UInt32], [UInt32], [UInt32], [UInt32]) = {
        var t0 = [UInt32](repeating: 0, count: 256)
        for i in 0..<256 {
            let s = sbox[i]
            t0[i] = UInt32(mul(s, 2)) << 24 | UInt32(s) << 16 | UInt32(s) << 8 | UInt32(mul(s, 3))
        }
        return (t0, t0.map { rotr($0, 8) }, t0.map { rotr($0, 16) }, t0.map { rotr($0, 24) })
    }()

    /// Decryption T-tables: InvSubBytes + InvMixColumns.
    static let td: ([UInt32], [UInt32], [UInt32], [UInt32]) = {
        var t0 = [UInt32](repeating: 0, count: 256)
        for i in 0..<256 {
            let s = invSbox[i]
            t0[i] = UInt32(mul(s, 14)) << 24 | UInt32(mul(s, 9)) << 16 | UInt32(mul(s, 13)) << 8 | UInt32(mul(s, 11))
        }
        return (t0, t0.map { rotr($0, 8) }, t0.map { rotr($0, 16) }, t0.map { rotr($0, 24) })
    }()
}

/// XTS-AES-256 with a 64-byte key (data key ‖ tweak key), for data units of whole blocks.
public struct XTSAES256: Sendable {
    private let dataCipher: AES256
    private let tweakCipher: AES256

    /// `key` = 32-byte data key followed by 32-byte tweak key; nil unless exactly 64 bytes.
    public init?(key: [UInt8]) {
        guard key.count == 64,
              let d = AES256(key: key[0..<32]), let t = AES256(key: key[32..<64]) else { return nil }
        dataCipher = d
        tweakCipher = t
    }

    /// Encrypts (or decrypts) `count` bytes (a multiple of 16) at `offset` of `buffer` in place
    /// as one data unit whose tweak is `sector` as a 16-byte little-endian number.
    public func process(_ buffer: inout [UInt8], offset: Int, count: Int, sector: UInt64, decrypt: Bool = false) {
        var tweak = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { tweak[i] = UInt8((sector >> (8 * UInt64(i))) & 0xFF) }
        tweakCipher.encrypt(&tweak, at: 0)
        var block = [UInt8](repeating: 0, count: 16)
        var pos = offset
        while pos + 16 <= offset + count {
            for i in 0..<16 { block[i] = buffer[pos + i] ^ tweak[i] }
            if decrypt { dataCipher.decrypt(&block, at: 0) } else { dataCipher.encrypt(&block, at: 0) }
            for i in 0..<16 { buffer[pos + i] = block[i] ^ tweak[i] }
            // Multiply the tweak by x in GF(2^128) (little-endian byte order).
            var carry: UInt8 = 0
            for i in 0..<16 {
                let next = tweak[i] >> 7
                tweak[i] = (tweak[i] << 1) | carry
                carry = next
            }
            if carry != 0 { tweak[0] ^= 0x87 }
            pos += 16
        }
    }
}
