import ESPCore
import Foundation

/// One link to a chip's serial loader: a serial device, a TCP socket or an in-process virtual
/// device. Reads return whatever arrived within the timeout (empty = nothing arrived); a link
/// that is gone throws ``TransportError/closed``.
public protocol ChipPort: AnyObject {
    /// How the user named it (`/dev/ttyUSB0`, `socket://127.0.0.1:5555`, `virtual:dev1`).
    var name: String { get }
    /// What kind of link this is (decides which reset sequences and baud changes apply).
    var kind: PortKind { get }
    func write(_ bytes: [UInt8]) throws
    func read(timeout: Double) throws -> [UInt8]
    /// Host-side UART speed (no-op where the link has none).
    func setBaud(_ baud: Int) throws
    /// Drives DTR/RTS (`nil` = leave as is). Throws where the link has no modem lines.
    func setModemLines(dtr: Bool?, rts: Bool?) throws
    /// Drops buffered input.
    func flushInput()
    /// Closes and opens the link again (a new connection; the chip state of a virtual device stays).
    func reopen() throws
    func close()
}

public enum PortKind: String, Sendable, Codable {
    case serial, socket, virtual
}

public enum TransportError: Error, Equatable, Sendable {
    case badPortName(String)
    case openFailed(String, String)
    case closed(String)
    case io(String, String)
    case noModemLines(String)
    case baudUnsupported(String, Int)
    /// A `virtual:` name given to an opener without virtual-device support.
    case virtualUnavailable(String)
}

extension TransportError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .badPortName(n):
            return Diagnostic("'\(n)' is not a port name",
                              hint: "use a serial device (/dev/ttyUSB0), socket://HOST:PORT or virtual:DIR")
        case let .openFailed(n, why):
            return Diagnostic("cannot open port \(n): \(why)",
                              hint: "check the name, that nothing else holds the port, and your permissions (group dialout)")
        case let .closed(n):
            return Diagnostic("the connection to \(n) was lost", hint: "check the cable or the server; espforge reconnects and resumes automatically a few times")
        case let .io(n, why):
            return Diagnostic("I/O error on \(n): \(why)")
        case let .noModemLines(n):
            return Diagnostic("\(n) has no DTR/RTS lines, so the chip cannot be reset into download mode",
                              hint: "put the chip into download mode by hand (hold BOOT, tap EN) and pass --before no-reset")
        case let .baudUnsupported(n, b):
            return Diagnostic("\(n) does not accept \(b) baud", hint: "choose a rate the adapter supports, e.g. 460800 or 921600")
        case let .virtualUnavailable(n):
            return Diagnostic("\(n) names a virtual device, but this program opens ports without virtual-device support",
                              hint: "library users: pass VirtualPorts.opener() (module VirtualDevice) as the port opener")
        }
    }
}

/// A `virtual:DIR[?faults=SPEC&seed=N&lines=auto|usb-jtag]` port name, parsed.
public struct VirtualPortAddress: Sendable, Equatable {
    /// The whole name as given.
    public var name: String
    /// The device state folder.
    public var directory: String
    public var faults: String?
    public var seed: UInt64
    /// `?lines=auto`: the board's auto-reset circuit on DTR/RTS (the port is a serial one).
    public var resetLines: Bool
    /// `?lines=usb-jtag`: DTR/RTS go to the chip's USB-Serial-JTAG peripheral instead (ESP32-S3/C3;
    /// implies ``resetLines``).
    public var usbSerialJTAG = false

    public init(name: String, directory: String, faults: String? = nil, seed: UInt64 = 1, resetLines: Bool = false) {
        self.name = name
        self.directory = directory
        self.faults = faults
        self.seed = seed
        self.resetLines = resetLines
    }

    /// Parses a name starting with `virtual:`; throws ``TransportError/badPortName`` otherwise.
    public static func parse(_ name: String) throws(TransportError) -> VirtualPortAddress {
        guard name.hasPrefix("virtual:") else { throw .badPortName(name) }
        var rest = String(name.dropFirst("virtual:".count))
        var address = VirtualPortAddress(name: name, directory: "")
        if let q = rest.firstIndex(of: "?") {
            for item in rest[rest.index(after: q)...].split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2 else { throw .badPortName(name) }
                switch kv[0] {
                case "faults": address.faults = kv[1]
                case "lines":
                    guard kv[1] == "auto" || kv[1] == "usb-jtag" else { throw .badPortName(name) }
                    address.resetLines = true
                    address.usbSerialJTAG = kv[1] == "usb-jtag"
                case "seed":
                    guard let s = UInt64(kv[1]) else { throw .badPortName(name) }
                    address.seed = s
                default: throw .badPortName(name)
                }
            }
            rest = String(rest[..<q])
        }
        guard !rest.isEmpty else { throw .badPortName(name) }
        address.directory = rest
        return address
    }
}

/// Opens ports by name: serial devices and `socket://HOST:PORT` are built in; `virtual:DIR`
/// ports are opened by the injected ``virtual`` opener (the virtual device's,
/// `VirtualPorts.opener(firmware:)` in VirtualDevice), so Transport does not depend on the
/// device model. Without one, a `virtual:` name is refused with a clear error.
public struct PortOpener: Sendable {
    public typealias VirtualOpen = @Sendable (VirtualPortAddress) throws -> ChipPort

    public var virtual: VirtualOpen?

    public init(virtual: VirtualOpen? = nil) {
        self.virtual = virtual
    }

    /// `socket://HOST:PORT`, `virtual:DIR[?faults=SPEC&seed=N&lines=auto]`, anything else is a serial device path.
    public func open(_ name: String, baud: Int = 115_200) throws -> ChipPort {
        if name.hasPrefix("socket://") {
            let rest = String(name.dropFirst("socket://".count))
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
                  (1...65535).contains(port), colon > rest.startIndex else {
                throw TransportError.badPortName(name)
            }
            return try SocketPort(name: name, host: String(rest[..<colon]), port: port)
        }
        if name.hasPrefix("virtual:") {
            let address = try VirtualPortAddress.parse(name)
            guard let virtual else { throw TransportError.virtualUnavailable(name) }
            return try virtual(address)
        }
        guard !name.isEmpty, !name.contains("://") else { throw TransportError.badPortName(name) }
        return try SerialPort(path: name, baud: baud)
    }
}

/// Waits for a descriptor to become readable; returns false on timeout.
func pollReadable(_ fd: Int32, timeout: Double) -> Bool {
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    let ms = Int32(max(0, min(timeout, 3600)) * 1000)
    while true {
        let n = poll(&pfd, 1, ms)
        if n < 0 && errno == EINTR { continue }
        return n > 0
    }
}

/// Reads what is available on `fd` (after `pollReadable`). nil = end of stream / error.
func readAvailable(_ fd: Int32) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 { return Array(buffer[0..<n]) }
        if n < 0 && (errno == EINTR) { continue }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return [] }
        return nil
    }
}

func writeFully(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    return bytes.withUnsafeBytes { raw in
        while done < raw.count, let base = raw.baseAddress {
            let n = Foundation.write(fd, base + done, raw.count - done)
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, 1000)
                continue
            }
            return false
        }
        return true
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
