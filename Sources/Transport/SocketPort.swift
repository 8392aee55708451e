import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `socket://HOST:PORT`: a TCP connection (esptool's RFC 2217-less raw socket ports). Baud and
/// modem lines do not exist on it; every new connection is a new session.
public final class SocketPort: ChipPort {
    public let name: String
    public let kind = PortKind.socket
    let host: String
    let port: Int
    private var fd: Int32 = -1

    public init(name: String, host: String, port: Int) throws {
        self.name = name
        self.host = host
        self.port = port
        try connectSocket()
    }

    private func connectSocket() throws {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host == "localhost" ? "127.0.0.1" : host, String(port), &hints, &res)
        guard rc == 0, let ai = res else {
            throw TransportError.openFailed(name, "cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        let s = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard s >= 0 else { throw TransportError.openFailed(name, errnoText()) }
        guard Glibc.connect(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            let why = errnoText()
            Glibc.close(s)
            throw TransportError.openFailed(name, why)
        }
        var yes: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
        fd = s
    }

    public func write(_ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw TransportError.closed(name) }
        guard writeFully(fd, bytes) else { throw TransportError.closed(name) }
    }

    public func read(timeout: Double) throws -> [UInt8] {
        guard fd >= 0 else { throw TransportError.closed(name) }
        guard pollReadable(fd, timeout: timeout) else { return [] }
        guard let bytes = readAvailable(fd), !bytes.isEmpty else {
            close()
            throw TransportError.closed(name)
        }
        return bytes
    }

    public func setBaud(_ baud: Int) throws {}
    public func setModemLines(dtr: Bool?, rts: Bool?) throws {}

    public func flushInput() {
        while fd >= 0, pollReadable(fd, timeout: 0), let b = readAvailable(fd), !b.isEmpty {}
    }

    public func reopen() throws {
        close()
        try connectSocket()
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}
