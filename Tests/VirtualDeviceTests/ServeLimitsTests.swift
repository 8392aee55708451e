import Foundation
import Loader
import Testing
import TestSupport
@testable import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

/// Issue 15 §5: `device serve` is one client at a time, but a silent client cannot hold it:
/// a second client is told busy, an idle client is disconnected.
@Suite("device serve: busy answer and idle timeout")
struct ServeLimitsTests {
    func connect(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { close(fd); throw TestSupportError.missing("cannot connect to 127.0.0.1:\(port)") }
        return fd
    }

    /// Reads until EOF or `limit` seconds pass; returns the bytes and whether EOF was seen.
    func readUntilEOF(_ fd: Int32, limit: Double) -> (bytes: [UInt8], eof: Bool) {
        var out: [UInt8] = []
        let end = Date().addingTimeInterval(limit)
        while Date() < end {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return (out, true) }
            out += buf[0..<n]
        }
        return (out, false)
    }

    func syncAnswered(_ fd: Int32) -> Bool {
        let frame = SLIP.encode(CommandPacket(.sync, data: LoaderProtocol.syncPayload).encode())
        _ = frame.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var got: [UInt8] = []
        let end = Date().addingTimeInterval(20)
        while Date() < end {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return false }
            got += buf[0..<n]
            var decoder = SLIPDecoder()
            for case let .frame(f) in decoder.feed(got) {
                if let r = try? ResponsePacket.decode(f), r.opcode == Opcode.sync.rawValue { return true }
            }
        }
        return false
    }

    @Test func secondClientIsToldBusyAndAnIdleClientIsDisconnected() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-serve").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let create = try Espforge.run(["device", "create", "--state", dir + "/dev"])
        #expect(create.status == 0, "\(create.err)")
        let server = try DeviceServerProcess(state: dir + "/dev", maxSeconds: 120, extra: ["--idle-timeout", "1"])
        defer { server.stop() }

        let first = try connect(server.port)
        defer { close(first) }
        #expect(syncAnswered(first))

        // A second client while the first is connected: one line, then closed.
        let second = try connect(server.port)
        let busy = readUntilEOF(second, limit: 20)
        close(second)
        #expect(busy.eof)
        #expect(String(decoding: busy.bytes, as: UTF8.self) == DeviceServer.busyMessage)

        // The first client goes silent: disconnected after the idle timeout.
        #expect(readUntilEOF(first, limit: 30).eof, "an idle client kept the device")

        // The device is free again.
        let third = try connect(server.port)
        defer { close(third) }
        #expect(syncAnswered(third))
    }
}
