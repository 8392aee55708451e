/// Word-level access to a chip's registers, as the ROM loader's READ_REG / WRITE_REG commands give
/// it. The eFuse client (summary, burn, protect) is written against this protocol only, so it works
/// the same over a serial port, a TCP socket or an in-process virtual device.
public protocol RegisterAccess: AnyObject {
    func readRegister(_ address: UInt32) throws -> UInt32
    func writeRegister(_ address: UInt32, _ value: UInt32) throws
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
