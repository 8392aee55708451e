/// Word-level access to a chip's registers, as the ROM loader's READ_REG / WRITE_REG commands give
/// it. The eFuse client (summary, burn, protect) is written against this protocol only, so it works
/// the same over a serial port, a TCP socket or an in-process virtual device.
public protocol RegisterAccess: AnyObject {
    func readRegister(_ address: UInt32) throws -> UInt32
    func writeRegister(_ address: UInt32, _ value: UInt32) throws
}
