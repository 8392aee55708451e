/// A NOR flash chip: erase sets whole 4 KiB sectors / 64 KiB blocks to 0xFF, programming can only
/// clear bits (new = old AND data), in pages of 256 bytes. Timing facts come from ``TimeModel``.
public struct NORFlash: Sendable {
    public static let sectorSize = 0x1000
    public static let blockSize = 0x10000
    public static let pageSize = 0x100

    public private(set) var bytes: [UInt8]
    /// Sectors changed since the last ``takeDirtySectors()``.
    private var dirty: Set<Int> = []
    /// Counters since creation of this value.
    public private(set) var sectorErases = 0
    public private(set) var blockErases = 0
    public private(set) var chipErases = 0
    public private(set) var pagePrograms = 0

    public init(size: Int) {
        bytes = [UInt8](repeating: 0xFF, count: max(0, size))
    }

    public init(contents: [UInt8]) {
        bytes = contents
    }

    public var size: Int { bytes.count }

    public func read(_ offset: Int, _ length: Int) -> [UInt8]? {
        guard offset >= 0, length >= 0, offset <= size, length <= size - offset else { return nil }
        return Array(bytes[offset..<(offset + length)])
    }

    /// Erases every 4 KiB sector overlapping `[offset, offset+length)`, using 64 KiB block erases
    /// where a whole aligned block is covered (as flasher stubs do). Returns the time it takes.
    @discardableResult
    public mutating func eraseRegion(_ offset: Int, _ length: Int, timing: TimeModel) -> Double? {
        guard offset >= 0, length >= 0, offset <= size, length <= size - offset else { return nil }
        guard length > 0 else { return 0 }
        var start = offset / Self.sectorSize * Self.sectorSize
        let end = min(size, (offset + length + Self.sectorSize - 1) / Self.sectorSize * Self.sectorSize)
        var t = 0.0
        while start < end {
            if start % Self.blockSize == 0, start + Self.blockSize <= end {
                fill(start, Self.blockSize)
                blockErases += 1
                t += timing.blockErase
                start += Self.blockSize
            } else {
                fill(start, Self.sectorSize)
                sectorErases += 1
                t += timing.sectorErase
                start += Self.sectorSize
            }
        }
        return t
    }

    /// One erase step of a flasher stub's erase front: a 64 KiB block erase when `offset` is
    /// block-aligned and at least a block remains before `end`, otherwise one 4 KiB sector erase.
    /// `offset` must be sector-aligned and below `end`. Returns where the front is next and the
    /// time taken; nil if out of range.
    public mutating func eraseStep(at offset: Int, end: Int, timing: TimeModel) -> (next: Int, seconds: Double)? {
        guard offset >= 0, offset % Self.sectorSize == 0, offset < end, offset + Self.sectorSize <= size else { return nil }
        if offset % Self.blockSize == 0, end - offset >= Self.blockSize, offset + Self.blockSize <= size {
            fill(offset, Self.blockSize)
            blockErases += 1
            return (offset + Self.blockSize, timing.blockErase)
        }
        fill(offset, Self.sectorSize)
        sectorErases += 1
        return (offset + Self.sectorSize, timing.sectorErase)
    }

    /// Erases only with 4 KiB sector erases (what the ESP32 ROM does on FLASH_BEGIN).
    @discardableResult
    public mutating func eraseSectors(_ offset: Int, _ length: Int, timing: TimeModel) -> Double? {
        guard offset >= 0, length >= 0, offset <= size, length <= size - offset else { return nil }
        var start = offset / Self.sectorSize * Self.sectorSize
        let end = min(size, (offset + length + Self.sectorSize - 1) / Self.sectorSize * Self.sectorSize)
        var t = 0.0
        while start < end {
            fill(start, Self.sectorSize)
            sectorErases += 1
            t += timing.sectorErase
            start += Self.sectorSize
        }
        return t
    }

    public mutating func eraseChip(timing: TimeModel) -> Double {
        fill(0, size)
        chipErases += 1
        return timing.chipErase(size: size)
    }

    private mutating func fill(_ start: Int, _ length: Int) {
        bytes.replaceSubrange(start..<(start + length), with: repeatElement(0xFF, count: length))
        markDirty(start, length)
    }

    /// Programs `data` at `offset` (AND semantics). Returns the time taken, nil if out of range.
    @discardableResult
    public mutating func program<C: Collection>(_ offset: Int, _ data: C, timing: TimeModel) -> Double?
        where C.Element == UInt8 {
        let n = data.count
        guard offset >= 0, offset <= size, n <= size - offset else { return nil }
        guard n > 0 else { return 0 }
        var i = offset
        for b in data {
            bytes[i] &= b
            i += 1
        }
        markDirty(offset, n)
        let pages = (offset + n - 1) / Self.pageSize - offset / Self.pageSize + 1
        pagePrograms += pages
        return Double(pages) * timing.pageProgram
    }

    private mutating func markDirty(_ start: Int, _ length: Int) {
        guard length > 0 else { return }
        for s in (start / Self.sectorSize)...((start + length - 1) / Self.sectorSize) { dirty.insert(s) }
    }

    /// Sector indices changed since the last call (for incremental persistence).
    public mutating func takeDirtySectors() -> [Int] {
        let d = dirty.sorted()
        dirty.removeAll()
        return d
    }
}
