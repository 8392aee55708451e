/// A bounds-checked little-endian reader over a byte buffer.
///
/// Every read that would run past the end throws ``ByteReaderError/truncated`` naming the offset
/// at which more bytes were needed, so parsers built on it survive arbitrary input.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { max(0, bytes.count - offset) }
    public var isAtEnd: Bool { offset >= bytes.count }

    public mutating func seek(to newOffset: Int) throws(ByteReaderError) {
        guard newOffset >= 0, newOffset <= bytes.count else {
            throw .truncated(offset: bytes.count, needed: newOffset - bytes.count, what: "seek")
        }
        offset = newOffset
    }

    public mutating func skip(_ count: Int, what: String = "data") throws(ByteReaderError) {
        _ = try read(count, what: what)
    }

    public mutating func read(_ count: Int, what: String = "data") throws(ByteReaderError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else {
            throw .truncated(offset: offset, needed: count, what: what)
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func u8(_ what: String = "byte") throws(ByteReaderError) -> UInt8 {
        let s = try read(1, what: what)
        return s[s.startIndex]
    }

    public mutating func u16(_ what: String = "u16") throws(ByteReaderError) -> UInt16 {
        let s = try read(2, what: what)
        return s.loadLE(UInt16.self)
    }

    public mutating func u32(_ what: String = "u32") throws(ByteReaderError) -> UInt32 {
        let s = try read(4, what: what)
        return s.loadLE(UInt32.self)
    }

    public mutating func u64(_ what: String = "u64") throws(ByteReaderError) -> UInt64 {
        let s = try read(8, what: what)
        return s.loadLE(UInt64.self)
    }
}

public enum ByteReaderError: Error, Equatable, Sendable {
    /// `needed` bytes of `what` were expected at `offset`, but the input ends first.
    case truncated(offset: Int, needed: Int, what: String)
}

extension ByteReaderError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .truncated(offset, needed, what):
            return Diagnostic("input is truncated: \(needed) byte(s) of \(what) expected",
                              offset: offset,
                              hint: "the file ends early; check it was copied or downloaded completely")
        }
    }
}

extension Collection where Element == UInt8 {
    /// Little-endian integer from the first `MemoryLayout<T>.size` bytes (caller guarantees length).
    @inlinable
    public func loadLE<T: FixedWidthInteger>(_: T.Type) -> T {
        var value: T = 0
        var shift = 0
        for byte in self.prefix(MemoryLayout<T>.size) {
            value |= T(truncatingIfNeeded: byte) << shift
            shift += 8
        }
        return value
    }
}

extension Array where Element == UInt8 {
    @inlinable
    public mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { self.append(contentsOf: $0) }
    }

    /// Writes `value` little-endian at `offset` (caller guarantees the range exists).
    @inlinable
    public mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { raw in
            for (i, b) in raw.enumerated() { self[offset + i] = b }
        }
    }

    /// Lower-case hexadecimal rendering, no separators.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses an even-length hexadecimal string (whitespace ignored); nil if malformed.
    public init?(hexString: String) {
        var out = [UInt8]()
        var high: UInt8?
        for c in hexString.utf8 {
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { continue }
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x41...0x46: v = c - 0x41 + 10
            case 0x61...0x66: v = c - 0x61 + 10
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        if high != nil { return nil }
        self = out
    }
}
