/// Word-level access to a chip's registers, as the ROM loader's READ_REG / WRITE_REG commands give
/// it. The eFuse client (summary, burn, protect) is written against this protocol only, so it works
/// the same over a serial port, a TCP socket or an in-process virtual device.
public protocol RegisterAccess: AnyObject {
    func readRegister(_ address: UInt32) throws -> UInt32
    func writeRegister(_ address: UInt32, _ value: UInt32) throws
}

/// Register access over a link that can be brought back in step (stale replies dropped, the
/// loader synchronized again). A read-back that shows missing or unplanned eFuse bits is read
/// once more after this before it is reported: a reply answering the wrong request repeats
/// (two readings agree) until the link is resynchronized; a bit really burned (or stuck) stays.
public protocol LinkResynchronizing: AnyObject {
    func resynchronize() throws
}

public enum RegisterReadings {
    /// Register reads carry no checksum on the wire: a value that decides something is read again
    /// until two readings in a row agree. Returns nil when none of `maxReadings` readings agreed
    /// with the one before it.
    public static func agreeing<T: Equatable>(maxReadings: Int, _ read: () throws -> T) throws -> T? {
        var last = try read()
        for _ in 1..<max(2, maxReadings) {
            let next = try read()
            if next == last { return next }
            last = next
        }
        return nil
    }
}

extension RegisterAccess {
    /// Whether the chip still reads as `expected` (the check before a burn). A reading that
    /// differs is taken again after a resync when the link can do one: replies out of step with
    /// their requests agree with each other, so they are not a changed chip until then.
    func stillReads<T: Equatable>(_ expected: T, _ read: () throws -> T) throws -> Bool {
        if try read() == expected { return true }
        guard let link = self as? LinkResynchronizing else { return false }
        try link.resynchronize()
        return try read() == expected
    }
}
