import ESPCore

/// `flash read`, `flash erase` and `flash verify` on one port: connect, do it, finish (the chip
/// is reset as `options.after` says).
public enum FlashOperations {
    /// Reads `size` bytes at `address`; the range must lie inside the chip's flash.
    public static func read(port: String, options: SessionOptions, address: Int, size: Int) throws -> [UInt8] {
        let session = FlashSession(port: port, options: options.withFieldMapChips)
        defer { session.finish() }
        try session.connect()
        guard let flashSize = session.flashSize, address + size <= flashSize else {
            throw UsageError("\(NumberParsing.hex(address))+\(NumberParsing.hex(size)) ends past the flash",
                             hint: "the chip has \((session.flashSize ?? 0) >> 20)MB")
        }
        return try session.read(address: address, size: size)
    }

    /// Erases `range` (4 KiB aligned), or the whole chip when nil.
    public static func erase(port: String, options: SessionOptions, range: (address: Int, size: Int)?) throws {
        let session = FlashSession(port: port, options: options.withFieldMapChips)
        defer { session.finish() }
        try session.connect()
        if let range { try session.erase(address: range.address, size: range.size) } else { try session.eraseAll() }
    }

    /// Compares flash with `regions` by MD5.
    public static func verify(port: String, options: SessionOptions, regions: [FlashRegion]) throws -> [RegionResult] {
        let session = FlashSession(port: port, options: options.withFieldMapChips)
        defer { session.finish() }
        try session.connect()
        return try session.verify(regions)
    }
}

extension SessionOptions {
    /// The options with ESP32-S3/C3 sessions allowed (``fieldMapChips``).
    public var withFieldMapChips: SessionOptions {
        var o = self
        o.fieldMapChips = true
        return o
    }
}
