import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `espforge device serve --state DIR --listen 127.0.0.1:0` in the background, for tests that drive
/// a virtual device with Espressif's own tools over `socket://`. Reads the `listening on
/// 127.0.0.1:PORT` line (bounded wait); `stop()` signals only this server, by PID (SIGTERM saves
/// the state), with a bounded wait before SIGKILL.
public final class DeviceServerProcess {
    public let port: Int
    private let process: Process

    public init(state: String, maxSeconds: Int = 120, extra: [String] = []) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Espforge.path)
        p.arguments = ["device", "serve", "--state", state, "--listen", "127.0.0.1:0",
                       "--max-seconds", String(maxSeconds)] + extra
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        let fd = out.fileHandleForReading.fileDescriptor
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !text.contains("\n") {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 200) > 0 else { continue }
            var buf = [UInt8](repeating: 0, count: 256)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            text += String(decoding: buf[0..<n], as: UTF8.self)
        }
        let prefix = "listening on 127.0.0.1:"
        guard let line = text.split(separator: "\n").first, line.hasPrefix(prefix),
              let port = Int(line.dropFirst(prefix.count)) else {
            Self.stop(p)
            throw TestSupportError.missing("`device serve` did not report its port (got '\(text)')")
        }
        self.port = port
    }

    /// `socket://127.0.0.1:PORT`.
    public var url: String { "socket://127.0.0.1:\(port)" }

    public func stop() { Self.stop(process) }

    deinit { stop() }

    private static func stop(_ p: Process) {
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning, Date() < deadline { usleep(20_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
    }
}
