import CSerial
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A serial device (`/dev/ttyUSB0`, `/dev/ttyACM0`, a pty): termios raw mode, 8N1, no flow
/// control, any baud rate (Linux: termios2 with BOTHER, so non-standard rates such as 1 234 567
/// work where the adapter supports them).
public final class SerialPort: ChipPort {
    public let name: String
    public let kind = PortKind.serial
    public private(set) var baud: Int
    private var fd: Int32 = -1

    public init(path: String, baud: Int = 115_200) throws {
        name = path
        self.baud = baud
        try openDevice()
    }

    /// Wraps an already open descriptor (tests: one end of a pty pair). The port owns it.
    public init(descriptor: Int32, name: String, baud: Int = 115_200) throws {
        self.name = name
        self.baud = baud
        fd = descriptor
        try configure()
    }

    private func openDevice() throws {
        let d = Glibc.open(name, O_RDWR | O_NOCTTY | O_NONBLOCK)
        guard d >= 0 else { throw TransportError.openFailed(name, errnoText()) }
        fd = d
        do { try configure() } catch { close(); throw error }
    }

    /// Raw mode: no echo, no line discipline, no CR/LF translation, no software flow control,
    /// 8 data bits, receiver on, modem control lines ignored (CLOCAL); reads never block.
    private func configure() throws {
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { throw TransportError.openFailed(name, "not a terminal: \(errnoText())") }
        cfmakeraw(&t)
        t.c_cflag |= tcflag_t(CLOCAL) | tcflag_t(CREAD)
        t.c_cflag &= ~(tcflag_t(CSTOPB) | tcflag_t(PARENB) | tcflag_t(CRTSCTS))
        t.c_iflag &= ~(tcflag_t(IXON) | tcflag_t(IXOFF) | tcflag_t(IXANY))
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(fd, TCSANOW, &t) == 0 else { throw TransportError.openFailed(name, "tcsetattr: \(errnoText())") }
        try setBaud(baud)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        tcflush(fd, TCIOFLUSH)
    }

    /// The speed the driver reports (Linux), for checks.
    public var configuredBaud: Int? {
        let b = espforge_serial_get_baud(fd)
        return b >= 0 ? Int(b) : nil
    }

    /// The termios flags as configured (for tests).
    public func attributes() -> termios? {
        var t = termios()
        return tcgetattr(fd, &t) == 0 ? t : nil
    }

    public func write(_ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw TransportError.closed(name) }
        guard writeFully(fd, bytes) else { throw TransportError.io(name, errnoText()) }
    }

    public func read(timeout: Double) throws -> [UInt8] {
        guard fd >= 0 else { throw TransportError.closed(name) }
        guard pollReadable(fd, timeout: timeout) else { return [] }
        guard let bytes = readAvailable(fd) else { throw TransportError.closed(name) }
        return bytes
    }

    public func setBaud(_ baud: Int) throws {
        guard baud > 0, espforge_serial_set_baud(fd, Int32(baud)) == 0 else {
            throw TransportError.baudUnsupported(name, baud)
        }
        self.baud = baud
    }

    public func setModemLines(dtr: Bool?, rts: Bool?) throws {
        let d: Int32 = dtr.map { $0 ? 1 : 0 } ?? -1
        let r: Int32 = rts.map { $0 ? 1 : 0 } ?? -1
        guard espforge_serial_set_modem(fd, d, r) == 0 else { throw TransportError.noModemLines(name) }
    }

    public func flushInput() {
        if fd >= 0 { tcflush(fd, TCIFLUSH) }
    }

    public func reopen() throws {
        close()
        try openDevice()
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

/// A pseudo-terminal pair (tests and tools): `master` and `slave` descriptors and the slave path.
public struct PseudoTerminal {
    public let master: Int32
    public let slave: Int32
    public let path: String

    public static func open() throws -> PseudoTerminal {
        var m: Int32 = -1, s: Int32 = -1
        var name = [CChar](repeating: 0, count: 128)
        guard espforge_openpty(&m, &s, &name, Int32(name.count)) == 0 else {
            throw TransportError.openFailed("pty", errnoText())
        }
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return PseudoTerminal(master: m, slave: s, path: path)
    }
}
