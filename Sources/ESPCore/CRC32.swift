/// The standard reflected CRC-32 (polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF), as used by
/// zlib, Secure Boot V2 signature blocks, partition tables and NVS (NVS seeds it differently; see
/// ``CRC32/update(_:_:)``).
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? (0xEDB8_8320 ^ (c >> 1)) : (c >> 1) }
        return c
    }

    /// CRC-32 of `bytes`: `checksum("123456789".utf8) == 0xCBF43926`.
    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        update(0, bytes)
    }

    /// Continues a CRC-32 computation: `update(update(0, a), b) == checksum(a + b)`. Passing a
    /// seed other than a previous result reproduces "crc32(data, seed)" of zlib/binascii.
    public static func update<C: Collection>(_ crc: UInt32, _ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }
}
