import ESPCore

/// ECDSA P-192 keys for Secure Boot V2 (swift-crypto has no P-192; the arithmetic is
/// ``PrimeCurve``). Signatures are SHA-256 digests truncated to 192 bits, as standard ECDSA and
/// espsecure do; nonces are deterministic (RFC 6979).
public enum P192 {
    static var curve: PrimeCurve { .p192 }
    /// Bytes per coordinate, scalar and signature half.
    public static let size = 24

    public struct PublicKey: Sendable, Equatable {
        /// Affine coordinates, 24 bytes big-endian each.
        public let x: [UInt8]
        public let y: [UInt8]

        /// A point given by its coordinates (big-endian, at most 24 bytes); it must lie on the curve.
        public init(x: [UInt8], y: [UInt8]) throws {
            let xs = Array(x.drop { $0 == 0 }), ys = Array(y.drop { $0 == 0 })
            guard xs.count <= P192.size, ys.count <= P192.size else {
                throw SecureBootError.malformedKey("P-192 coordinate longer than 24 bytes")
            }
            let c = P192.curve
            let lx = LimbMath.fromBigEndian(xs, limbs: c.limbs), ly = LimbMath.fromBigEndian(ys, limbs: c.limbs)
            guard c.isOnCurve(x: lx, y: ly) else { throw SecureBootError.malformedKey("the P-192 public point is not on the curve") }
            self.x = LimbMath.bigEndian(lx, bytes: P192.size)
            self.y = LimbMath.bigEndian(ly, bytes: P192.size)
        }

        /// A SEC 1 encoded point: `04 ‖ X ‖ Y`, or compressed `02|03 ‖ X`.
        public init(x963Representation point: [UInt8]) throws {
            let n = P192.size
            switch (point.first, point.count) {
            case (0x04, 1 + 2 * n):
                try self.init(x: Array(point[1...n]), y: Array(point[(1 + n)...]))
            case (0x02, 1 + n), (0x03, 1 + n):
                let c = P192.curve
                let lx = LimbMath.fromBigEndian(Array(point[1...]), limbs: c.limbs)
                guard let ly = c.decompress(x: lx, odd: point[0] == 0x03) else {
                    throw SecureBootError.malformedKey("the compressed P-192 point is not on the curve")
                }
                try self.init(x: Array(point[1...]), y: LimbMath.bigEndian(ly, bytes: n))
            default:
                throw SecureBootError.malformedKey("P-192 public point is not a 49-byte uncompressed or 25-byte compressed point")
            }
        }

        /// `04 ‖ X ‖ Y`.
        public var x963Representation: [UInt8] { [0x04] + x + y }

        /// Checks r ‖ s (24 + 24 bytes big-endian) over a content digest (its leftmost 192 bits count).
        public func isValidSignature(_ signature: [UInt8], digest: [UInt8]) -> Bool {
            let c = P192.curve
            return c.verify(signature: signature, digest: digest,
                            x: LimbMath.fromBigEndian(x, limbs: c.limbs), y: LimbMath.fromBigEndian(y, limbs: c.limbs))
        }

        /// SubjectPublicKeyInfo DER (id-ecPublicKey, prime192v1, uncompressed point).
        public func derRepresentation() throws -> [UInt8] {
            try KeyStructure.ecSPKIDER(curve: KeyOID.p192, point: x963Representation)
        }
    }

    public struct PrivateKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        /// The scalar, 24 bytes big-endian (1 ≤ d < n). Never printed.
        let scalar: [UInt8]
        public let publicKey: PublicKey

        /// A private key from its scalar (big-endian, up to 24 significant bytes).
        public init(scalar bytes: [UInt8]) throws {
            let significant = Array(bytes.drop { $0 == 0 })
            guard significant.count <= P192.size else { throw SecureBootError.malformedKey("P-192 private scalar longer than 24 bytes") }
            let c = P192.curve
            let d = LimbMath.fromBigEndian(significant, limbs: c.limbs)
            guard c.isValidScalar(d) else { throw SecureBootError.malformedKey("P-192 private scalar is out of range") }
            let q = c.publicPoint(of: d)
            scalar = LimbMath.bigEndian(d, bytes: P192.size)
            publicKey = try PublicKey(x: LimbMath.bigEndian(q.x, bytes: P192.size), y: LimbMath.bigEndian(q.y, bytes: P192.size))
        }

        /// A fresh key from the system's secure random generator (rejection sampling below n).
        public init() {
            var rng = SystemRandomNumberGenerator()
            let c = P192.curve
            while true {
                let bytes = (0..<P192.size).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if c.isValidScalar(LimbMath.fromBigEndian(bytes, limbs: c.limbs)), let key = try? PrivateKey(scalar: bytes) {
                    self = key
                    return
                }
            }
        }

        /// ECDSA r ‖ s (24 + 24 bytes big-endian) over a content digest, RFC 6979 nonce.
        public func signature(digest: [UInt8]) -> [UInt8] {
            let c = P192.curve
            return c.sign(digest: digest, privateScalar: LimbMath.fromBigEndian(scalar, limbs: c.limbs))
        }

        /// SEC 1 `EC PRIVATE KEY` DER with the named curve and the public point.
        func sec1DER() throws -> [UInt8] {
            try KeyStructure.sec1DER(scalar: scalar, curve: KeyOID.p192, point: publicKey.x963Representation)
        }

        public var description: String { "P192.PrivateKey(public x \(Array(publicKey.x.prefix(4)).hexString)…)" }
        public var debugDescription: String { description }
    }
}
