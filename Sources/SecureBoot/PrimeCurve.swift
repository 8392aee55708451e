import Crypto

// A small, self-contained ECDSA for short-Weierstrass curves with a = −3 over a prime field, used
// for the one Secure Boot V2 curve swift-crypto lacks: NIST P-192 (secp192r1; ESP32-C2 and other
// chips with ECDSA Secure Boot accept it). The curve is data (``PrimeCurve/p192``); the arithmetic
// works for any such curve whose p and n have the same number of 64-bit limbs.
//
// Structure: fixed-width integers as little-endian `[UInt64]` limbs; a Montgomery field (`R = 2^(64·limbs)`)
// for both the coordinate field (mod p) and the scalars (mod n); Jacobian points; a Montgomery ladder
// for scalar multiplication; RFC 6979 deterministic nonces (HMAC-SHA-256) for signing.
//
// Side channels: field operations select with masks rather than branches, and the ladder runs a
// fixed number of steps over the scalar's bits with a masked swap; point addition still branches on
// the point at infinity (only reached while the ladder is in the scalar's leading zero bits). This is
// host-side signing of firmware, not code for an exposed device.

/// Little-endian 64-bit limbs of a fixed-width unsigned integer.
typealias Limbs = [UInt64]

enum LimbMath {
    static func fromBigEndian(_ bytes: [UInt8], limbs: Int) -> Limbs {
        var out = Limbs(repeating: 0, count: limbs)
        for (i, b) in bytes.reversed().enumerated() where i < limbs * 8 {
            out[i / 8] |= UInt64(b) << UInt64(8 * (i % 8))
        }
        return out
    }

    static func bigEndian(_ x: Limbs, bytes count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<min(count, x.count * 8) {
            out[count - 1 - i] = UInt8(truncatingIfNeeded: x[i / 8] >> UInt64(8 * (i % 8)))
        }
        return out
    }

    static func fromHex(_ hex: String, limbs: Int) -> Limbs {
        var bytes: [UInt8] = []
        var chars = Array(hex.utf8)
        if chars.count % 2 == 1 { chars.insert(UInt8(ascii: "0"), at: 0) }
        for i in stride(from: 0, to: chars.count, by: 2) {
            bytes.append(UInt8(nibble(chars[i]) << 4 | nibble(chars[i + 1])))
        }
        return fromBigEndian(bytes, limbs: limbs)
    }

    private static func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return c - UInt8(ascii: "A") + 10
        }
    }

    /// a − b and the final borrow (0 or 1).
    static func subtract(_ a: Limbs, _ b: Limbs) -> (Limbs, UInt64) {
        var out = a
        var borrow: UInt64 = 0
        for i in 0..<a.count {
            let (d1, o1) = a[i].subtractingReportingOverflow(b[i])
            let (d2, o2) = d1.subtractingReportingOverflow(borrow)
            out[i] = d2
            borrow = (o1 ? 1 : 0) | (o2 ? 1 : 0)
        }
        return (out, borrow)
    }

    /// a + b and the final carry (0 or 1).
    static func add(_ a: Limbs, _ b: Limbs) -> (Limbs, UInt64) {
        var out = a
        var carry: UInt64 = 0
        for i in 0..<a.count {
            let (s1, o1) = a[i].addingReportingOverflow(b[i])
            let (s2, o2) = s1.addingReportingOverflow(carry)
            out[i] = s2
            carry = (o1 ? 1 : 0) | (o2 ? 1 : 0)
        }
        return (out, carry)
    }

    /// `mask` all ones: `a`; zero: `b`.
    static func select(_ mask: UInt64, _ a: Limbs, _ b: Limbs) -> Limbs {
        var out = b
        for i in 0..<a.count { out[i] = (a[i] & mask) | (b[i] & ~mask) }
        return out
    }

    static func isZero(_ a: Limbs) -> Bool { a.reduce(0, |) == 0 }

    static func less(_ a: Limbs, _ b: Limbs) -> Bool { subtract(a, b).1 == 1 }

    static func bit(_ a: Limbs, _ i: Int) -> UInt64 { (a[i / 64] >> UInt64(i % 64)) & 1 }
}

/// Arithmetic modulo an odd `modulus` in Montgomery form (`aR mod m`, `R = 2^(64·limbs)`).
struct MontgomeryField: Sendable {
    let modulus: Limbs
    let limbs: Int
    /// −m⁻¹ mod 2^64.
    let m0inv: UInt64
    /// R² mod m, to enter Montgomery form.
    let r2: Limbs
    /// 1 in Montgomery form (R mod m).
    let one: Limbs

    init(modulus: Limbs) {
        self.modulus = modulus
        limbs = modulus.count
        var inv: UInt64 = 1  // Newton: each step doubles the correct low bits of m⁻¹ mod 2^64.
        for _ in 0..<6 { inv = inv &* (2 &- modulus[0] &* inv) }
        m0inv = 0 &- inv
        // R mod m and R² mod m by doubling 1 modulo m.
        var x = Limbs(repeating: 0, count: modulus.count)
        x[0] = 1
        var rModM = x
        for i in 1...(2 * 64 * modulus.count) {
            x = Self.doubleMod(x, modulus)
            if i == 64 * modulus.count { rModM = x }
        }
        r2 = x
        one = rModM
    }

    private static func doubleMod(_ a: Limbs, _ m: Limbs) -> Limbs {
        let (sum, carry) = LimbMath.add(a, a)
        let (diff, borrow) = LimbMath.subtract(sum, m)
        // Use the difference when the sum overflowed or is ≥ m.
        let useDiff = carry | (1 &- borrow)
        return LimbMath.select(0 &- useDiff, diff, sum)
    }

    /// a·b·R⁻¹ mod m (CIOS). Inputs < m.
    func mul(_ a: Limbs, _ b: Limbs) -> Limbs {
        var t = Limbs(repeating: 0, count: limbs + 2)
        for i in 0..<limbs {
            var carry: UInt64 = 0
            for j in 0..<limbs { (carry, t[j]) = Self.mulAdd(a[j], b[i], t[j], carry) }
            let (s, o) = t[limbs].addingReportingOverflow(carry)
            t[limbs] = s
            t[limbs + 1] = o ? 1 : 0
            let m = t[0] &* m0inv
            (carry, _) = Self.mulAdd(m, modulus[0], t[0], 0)
            for j in 1..<limbs { (carry, t[j - 1]) = Self.mulAdd(m, modulus[j], t[j], carry) }
            let (s2, o2) = t[limbs].addingReportingOverflow(carry)
            t[limbs - 1] = s2
            t[limbs] = t[limbs + 1] &+ (o2 ? 1 : 0)
        }
        let low = Array(t[0..<limbs])
        let (diff, borrow) = LimbMath.subtract(low, modulus)
        let useDiff = (t[limbs] != 0 ? 1 : 0) | (1 &- borrow)
        return LimbMath.select(0 &- useDiff, diff, low)
    }

    /// (high, low) of a·b + c + d.
    @inline(__always)
    private static func mulAdd(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> (UInt64, UInt64) {
        var (hi, lo) = a.multipliedFullWidth(by: b)
        var o: Bool
        (lo, o) = lo.addingReportingOverflow(c)
        hi &+= o ? 1 : 0
        (lo, o) = lo.addingReportingOverflow(d)
        hi &+= o ? 1 : 0
        return (hi, lo)
    }

    func add(_ a: Limbs, _ b: Limbs) -> Limbs {
        let (sum, carry) = LimbMath.add(a, b)
        let (diff, borrow) = LimbMath.subtract(sum, modulus)
        return LimbMath.select(0 &- (carry | (1 &- borrow)), diff, sum)
    }

    func sub(_ a: Limbs, _ b: Limbs) -> Limbs {
        let (diff, borrow) = LimbMath.subtract(a, b)
        let (wrapped, _) = LimbMath.add(diff, modulus)
        return LimbMath.select(0 &- borrow, wrapped, diff)
    }

    func square(_ a: Limbs) -> Limbs { mul(a, a) }

    /// Plain integer (< m) into Montgomery form.
    func enter(_ a: Limbs) -> Limbs { mul(a, r2) }

    /// Montgomery form back to the plain integer.
    func leave(_ a: Limbs) -> Limbs {
        var unit = Limbs(repeating: 0, count: limbs)
        unit[0] = 1
        return mul(a, unit)
    }

    /// a^e (a in Montgomery form, e a plain integer); square-and-multiply over every bit of e.
    func pow(_ a: Limbs, _ e: Limbs) -> Limbs {
        var result = one
        for i in stride(from: 64 * limbs - 1, through: 0, by: -1) {
            result = square(result)
            let product = mul(result, a)
            result = LimbMath.select(0 &- LimbMath.bit(e, i), product, result)
        }
        return result
    }

    /// a⁻¹ (Montgomery form in and out) by Fermat: a^(m−2). The modulus must be prime; a ≠ 0.
    func inverse(_ a: Limbs) -> Limbs {
        var two = Limbs(repeating: 0, count: limbs)
        two[0] = 2
        return pow(a, LimbMath.subtract(modulus, two).0)
    }

    /// A plain integer below 2·m reduced once (values read from 192-bit strings).
    func reduceOnce(_ a: Limbs) -> Limbs {
        let (diff, borrow) = LimbMath.subtract(a, modulus)
        return LimbMath.select(0 &- (1 &- borrow), diff, a)
    }
}

/// A short-Weierstrass curve y² = x³ − 3x + b over GF(p) with a prime-order base point, as data.
struct PrimeCurve: Sendable {
    let name: String
    /// Bytes per coordinate and per scalar.
    let size: Int
    let field: MontgomeryField
    let order: MontgomeryField
    /// b in Montgomery form (mod p).
    let b: Limbs
    /// The base point, affine, plain integers.
    let gx: Limbs
    let gy: Limbs

    init(name: String, size: Int, p: String, n: String, b: String, gx: String, gy: String) {
        let limbs = (size + 7) / 8
        self.name = name
        self.size = size
        field = MontgomeryField(modulus: LimbMath.fromHex(p, limbs: limbs))
        order = MontgomeryField(modulus: LimbMath.fromHex(n, limbs: limbs))
        self.b = field.enter(LimbMath.fromHex(b, limbs: limbs))
        self.gx = LimbMath.fromHex(gx, limbs: limbs)
        self.gy = LimbMath.fromHex(gy, limbs: limbs)
    }

    /// NIST P-192 (FIPS 186-4 D.1.2.1; SEC 2 secp192r1).
    static let p192 = PrimeCurve(
        name: "P-192", size: 24,
        p: "fffffffffffffffffffffffffffffffeffffffffffffffff",
        n: "ffffffffffffffffffffffff99def836146bc9b1b4d22831",
        b: "64210519e59c80e70fa7e9ab72243049feb8deecc146b9b1",
        gx: "188da80eb03090f67cbf20eb43a18800f4ff0afd82ff1012",
        gy: "07192b95ffc8da78631011ed6b24cdd573f977a11e794811")

    var limbs: Int { field.limbs }
    var zero: Limbs { Limbs(repeating: 0, count: limbs) }

    // MARK: Points (Jacobian: x = X/Z², y = Y/Z³; Z = 0 is the point at infinity; Montgomery form)

    struct Point {
        var x: Limbs, y: Limbs, z: Limbs
    }

    var infinity: Point { Point(x: field.one, y: field.one, z: zero) }

    func isInfinity(_ p: Point) -> Bool { LimbMath.isZero(p.z) }

    /// Affine plain integers into a Jacobian point.
    func point(x: Limbs, y: Limbs) -> Point {
        Point(x: field.enter(x), y: field.enter(y), z: field.one)
    }

    /// Whether the affine plain-integer point (x, y) lies on the curve (both below p).
    func isOnCurve(x: Limbs, y: Limbs) -> Bool {
        guard LimbMath.less(x, field.modulus), LimbMath.less(y, field.modulus) else { return false }
        let f = field
        let mx = f.enter(x), my = f.enter(y)
        let three = f.add(f.add(mx, mx), mx)
        let rhs = f.add(f.sub(f.mul(f.square(mx), mx), three), b)
        return f.square(my) == rhs
    }

    /// Affine plain integers of a point that is not at infinity.
    func affine(_ p: Point) -> (x: Limbs, y: Limbs) {
        let f = field
        let zInv = f.inverse(p.z)
        let zInv2 = f.square(zInv)
        return (f.leave(f.mul(p.x, zInv2)), f.leave(f.mul(p.y, f.mul(zInv2, zInv))))
    }

    /// 2P (a = −3: α = 3(X − Z²)(X + Z²)).
    func double(_ p: Point) -> Point {
        if isInfinity(p) || LimbMath.isZero(p.y) { return infinity }
        let f = field
        let delta = f.square(p.z)
        let gamma = f.square(p.y)
        let beta = f.mul(p.x, gamma)
        let t = f.mul(f.sub(p.x, delta), f.add(p.x, delta))
        let alpha = f.add(f.add(t, t), t)
        let beta4 = f.add(f.add(beta, beta), f.add(beta, beta))
        let x3 = f.sub(f.square(alpha), f.add(beta4, beta4))
        let z3 = f.sub(f.sub(f.square(f.add(p.y, p.z)), gamma), delta)
        let gamma2 = f.square(gamma)
        let gamma2x8 = f.add(f.add(f.add(gamma2, gamma2), f.add(gamma2, gamma2)),
                             f.add(f.add(gamma2, gamma2), f.add(gamma2, gamma2)))
        let y3 = f.sub(f.mul(alpha, f.sub(beta4, x3)), gamma2x8)
        return Point(x: x3, y: y3, z: z3)
    }

    /// P + Q.
    func add(_ p: Point, _ q: Point) -> Point {
        if isInfinity(p) { return q }
        if isInfinity(q) { return p }
        let f = field
        let z1z1 = f.square(p.z), z2z2 = f.square(q.z)
        let u1 = f.mul(p.x, z2z2), u2 = f.mul(q.x, z1z1)
        let s1 = f.mul(f.mul(p.y, q.z), z2z2), s2 = f.mul(f.mul(q.y, p.z), z1z1)
        let h = f.sub(u2, u1)
        let rHalf = f.sub(s2, s1)
        if LimbMath.isZero(h) {
            return LimbMath.isZero(rHalf) ? double(p) : infinity
        }
        let h2 = f.add(h, h)
        let i = f.square(h2)
        let j = f.mul(h, i)
        let r = f.add(rHalf, rHalf)
        let v = f.mul(u1, i)
        let x3 = f.sub(f.sub(f.square(r), j), f.add(v, v))
        let s1j = f.mul(s1, j)
        let y3 = f.sub(f.mul(r, f.sub(v, x3)), f.add(s1j, s1j))
        let z3 = f.mul(f.sub(f.sub(f.square(f.add(p.z, q.z)), z1z1), z2z2), h)
        return Point(x: x3, y: y3, z: z3)
    }

    /// k·P for a plain integer k: a Montgomery ladder over every bit position.
    func multiply(_ p: Point, by k: Limbs) -> Point {
        var r0 = infinity, r1 = p
        for i in stride(from: 64 * limbs - 1, through: 0, by: -1) {
            let mask = 0 &- LimbMath.bit(k, i)
            Self.swap(mask, &r0, &r1)
            r1 = add(r0, r1)
            r0 = double(r0)
            Self.swap(mask, &r0, &r1)
        }
        return r0
    }

    private static func swap(_ mask: UInt64, _ a: inout Point, _ b: inout Point) {
        let na = Point(x: LimbMath.select(mask, b.x, a.x), y: LimbMath.select(mask, b.y, a.y), z: LimbMath.select(mask, b.z, a.z))
        let nb = Point(x: LimbMath.select(mask, a.x, b.x), y: LimbMath.select(mask, a.y, b.y), z: LimbMath.select(mask, a.z, b.z))
        a = na
        b = nb
    }

    var generator: Point { point(x: gx, y: gy) }

    // MARK: ECDSA

    /// The hash as an integer: its leftmost `8·size` bits (SEC 1 4.1.3 step 5; the byte-aligned case).
    func hashInteger(_ digest: [UInt8]) -> Limbs {
        let bytes = digest.count > size ? Array(digest.prefix(size)) : digest
        return LimbMath.fromBigEndian(bytes, limbs: limbs)
    }

    /// Whether d is a valid private scalar: 1 ≤ d < n.
    func isValidScalar(_ d: Limbs) -> Bool { !LimbMath.isZero(d) && LimbMath.less(d, order.modulus) }

    /// Q = d·G, affine plain integers.
    func publicPoint(of d: Limbs) -> (x: Limbs, y: Limbs) { affine(multiply(generator, by: d)) }

    /// ECDSA signature (r, s) of `digest` with private scalar d, nonce per RFC 6979 (HMAC-SHA-256).
    /// Returns r ‖ s, each `size` bytes big-endian.
    func sign(digest: [UInt8], privateScalar d: Limbs) -> [UInt8] {
        let n = order
        let e = n.reduceOnce(hashInteger(digest))
        var nonces = RFC6979Nonces(curve: self, privateScalar: d, digest: digest)
        while true {
            let k = nonces.next()
            let rx = affine(multiply(generator, by: k)).x
            let r = n.reduceOnce(rx)
            if LimbMath.isZero(r) { continue }
            // s = k⁻¹ (e + r·d) mod n, in Montgomery form throughout.
            let kInv = n.inverse(n.enter(k))
            let rd = n.mul(n.enter(r), n.enter(d))
            let s = n.leave(n.mul(kInv, n.add(n.enter(e), rd)))
            if LimbMath.isZero(s) { continue }
            return LimbMath.bigEndian(r, bytes: size) + LimbMath.bigEndian(s, bytes: size)
        }
    }

    /// Checks r ‖ s (each `size` bytes big-endian) over `digest` with the public point (x, y).
    func verify(signature: [UInt8], digest: [UInt8], x: Limbs, y: Limbs) -> Bool {
        guard signature.count == 2 * size, isOnCurve(x: x, y: y) else { return false }
        let r = LimbMath.fromBigEndian(Array(signature.prefix(size)), limbs: limbs)
        let s = LimbMath.fromBigEndian(Array(signature.suffix(size)), limbs: limbs)
        guard isValidScalar(r), isValidScalar(s) else { return false }
        let n = order
        let e = n.reduceOnce(hashInteger(digest))
        let w = n.inverse(n.enter(s))
        let u1 = n.leave(n.mul(n.enter(e), w))
        let u2 = n.leave(n.mul(n.enter(r), w))
        let sum = add(multiply(generator, by: u1), multiply(point(x: x, y: y), by: u2))
        guard !isInfinity(sum) else { return false }
        return n.reduceOnce(affine(sum).x) == r
    }

    /// The y coordinate for x with the given parity (compressed points); nil if x is not on the curve.
    /// Needs p ≡ 3 (mod 4), true of P-192: y = (x³ − 3x + b)^((p+1)/4).
    func decompress(x: Limbs, odd: Bool) -> Limbs? {
        guard LimbMath.less(x, field.modulus), field.modulus[0] & 3 == 3 else { return nil }
        let f = field
        let mx = f.enter(x)
        let rhs = f.add(f.sub(f.mul(f.square(mx), mx), f.add(f.add(mx, mx), mx)), b)
        var one = zero
        one[0] = 1
        let (pPlus1, _) = LimbMath.add(f.modulus, one)   // no carry: p + 1 = 2^192 − 2^64 for P-192
        var exponent = pPlus1
        for _ in 0..<2 { exponent = Self.shiftRight1(exponent) }
        let root = f.pow(rhs, exponent)
        guard f.square(root) == rhs else { return nil }
        var y = f.leave(root)
        if (y[0] & 1 == 1) != odd, !LimbMath.isZero(y) { y = LimbMath.subtract(f.modulus, y).0 }
        return y
    }

    private static func shiftRight1(_ a: Limbs) -> Limbs {
        var out = a
        for i in 0..<a.count {
            out[i] = a[i] >> 1 | (i + 1 < a.count ? a[i + 1] << 63 : 0)
        }
        return out
    }
}

/// RFC 6979 section 3.2 candidate nonces with HMAC-SHA-256, for a curve whose order is a whole
/// number of bytes (`qlen = 8·size`).
struct RFC6979Nonces {
    private let curve: PrimeCurve
    private var k: SymmetricKey
    private var v: [UInt8]
    private var first = true

    init(curve: PrimeCurve, privateScalar d: Limbs, digest: [UInt8]) {
        self.curve = curve
        let x = LimbMath.bigEndian(d, bytes: curve.size)
        // bits2octets(h1) = int2octets(bits2int(h1) mod q)
        let h = LimbMath.bigEndian(curve.order.reduceOnce(curve.hashInteger(digest)), bytes: curve.size)
        v = [UInt8](repeating: 0x01, count: 32)
        k = SymmetricKey(data: [UInt8](repeating: 0x00, count: 32))
        k = SymmetricKey(data: Self.mac(k, v + [0x00] + x + h))
        v = Self.mac(k, v)
        k = SymmetricKey(data: Self.mac(k, v + [0x01] + x + h))
        v = Self.mac(k, v)
    }

    private static func mac(_ key: SymmetricKey, _ data: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: data, using: key))
    }

    /// The next candidate k with 1 ≤ k < n (step h; a rejected candidate moves the state on).
    mutating func next() -> Limbs {
        while true {
            if !first {
                k = SymmetricKey(data: Self.mac(k, v + [0x00]))
                v = Self.mac(k, v)
            }
            first = false
            var t: [UInt8] = []
            while t.count < curve.size {
                v = Self.mac(k, v)
                t += v
            }
            let candidate = curve.hashInteger(t)
            if curve.isValidScalar(candidate) { return candidate }
        }
    }
}
