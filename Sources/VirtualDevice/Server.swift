import ESPCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private var stopRequested: sig_atomic_t = 0

/// Serves one virtual device over a loopback TCP socket (for esptool's `socket://` ports) or a
/// pseudo-terminal. One client at a time, like a serial port; every new TCP connection finds the
/// chip freshly reset into ROM download mode. State is written back after every burst of traffic.
///
/// A TCP client that sends nothing for ``idleTimeout`` seconds is disconnected, so a stuck client
/// cannot hold the device forever. A second client connecting while one is served gets
/// ``busyMessage`` (one line of text) and is closed.
public final class DeviceServer {
    /// The line a second TCP client gets before it is closed.
    public static let busyMessage = "espforge: busy: this virtual device is serving another client (one at a time, like a serial port); try again later\n"
    /// Seconds without a byte from the TCP client before it is disconnected (nil: never).
    public var idleTimeout: Double? = 30
    /// Clients turned away as busy, and clients disconnected for idling (this run).
    public private(set) var busyRefusals = 0
    public private(set) var idleDisconnects = 0

    public let store: DeviceStore
    public let engine: ProtocolEngine
    public let faultPlan: FaultPlan?
    public let faultSeed: UInt64
    public let realtime: Bool
    private var lastStatsSave = Date.distantPast
    private var lastFlashSave = Date.distantPast

    public init(store: DeviceStore, engine: ProtocolEngine, faultPlan: FaultPlan?, faultSeed: UInt64, realtime: Bool) {
        self.store = store
        self.engine = engine
        self.faultPlan = faultPlan
        self.faultSeed = faultSeed
        self.realtime = realtime
        if let stuck = faultPlan?.stuckEFuseBits, !stuck.isEmpty { engine.stuckEFuseBits = stuck }
    }

    /// SIGINT/SIGTERM make the serve loops return after saving.
    public static func installSignalHandlers() {
        // A parent may have started us with signals blocked (the mask is inherited); unblock them.
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        signal(SIGTERM) { _ in stopRequested = 1 }
        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGPIPE, SIG_IGN)
    }

    /// Binds a loopback TCP listener; returns the socket and the bound port.
    public static func listen(host: String, port: Int) throws -> (fd: Int32, port: Int) {
        guard host == "127.0.0.1" || host == "localhost" else {
            throw DeviceError.network("refusing to listen on '\(host)'")
        }
        guard (0...65535).contains(port) else { throw DeviceError.network("port \(port) is out of range") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DeviceError.network("socket() failed: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, 4) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw DeviceError.network("cannot listen on \(host):\(port): \(why)")
        }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return (fd, Int(UInt16(bigEndian: bound.sin_port)))
    }

    /// Accepts clients until SIGTERM/SIGINT (or `maxSeconds` of wall time, if given).
    public func serveTCP(listenFD: Int32, maxSeconds: Double? = nil) throws {
        let started = Date()
        defer { close(listenFD) }
        while stopRequested == 0 {
            if let maxSeconds, Date().timeIntervalSince(started) > maxSeconds { break }
            var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            let n = poll(&pfd, 1, 250)
            if n <= 0 { continue }
            let client = accept(listenFD, nil, nil)
            if client < 0 { continue }
            var yes: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            try serveConnection(readFD: client, writeFD: client,
                                deadline: maxSeconds.map { started.addingTimeInterval($0) }, listenFD: listenFD)
            close(client)
        }
        try save(final: true)
    }

    /// Opens a pseudo-terminal and serves it until SIGTERM/SIGINT; `onReady` gets the slave path.
    public func servePTY(maxSeconds: Double? = nil, onReady: (String) -> Void) throws {
        let deadline = maxSeconds.map { Date().addingTimeInterval($0) }
        let pty = PTYFunctions()
        guard let pty else { throw DeviceError.network("pseudo-terminals are not available on this system") }
        let master = pty.openpt(O_RDWR | O_NOCTTY)
        guard master >= 0, pty.grant(master) == 0, pty.unlock(master) == 0, let name = pty.name(master) else {
            throw DeviceError.network("cannot open a pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        let path = String(cString: name)
        // Keep a slave descriptor open so the master does not see EIO between clients; make it raw.
        let slave = open(path, O_RDWR | O_NOCTTY)
        if slave >= 0 {
            var t = termios()
            tcgetattr(slave, &t)
            cfmakeraw(&t)
            tcsetattr(slave, TCSANOW, &t)
        }
        defer { if slave >= 0 { close(slave) }; close(master) }
        onReady(path)
        while stopRequested == 0 {
            if let deadline, Date() > deadline { break }
            try serveConnection(readFD: master, writeFD: master, deadline: deadline)
        }
        try save(final: true)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        return bytes.withUnsafeBytes { raw in
            while done < raw.count, let base = raw.baseAddress {
                let n = write(fd, base + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                done += n
            }
            return true
        }
    }

    /// Accepts a pending connection on `listenFD` and turns it away with ``busyMessage``.
    private func refuseBusy(_ listenFD: Int32) {
        let other = accept(listenFD, nil, nil)
        guard other >= 0 else { return }
        _ = writeAll(other, Array(Self.busyMessage.utf8))
        shutdown(other, Int32(SHUT_WR))
        close(other)
        busyRefusals += 1
    }

    /// One client session: bytes in → engine → bytes out, until EOF, a fault disconnect, the idle
    /// timeout (TCP: `listenFD` given) or stop. Meanwhile other clients on `listenFD` are told busy.
    func serveConnection(readFD: Int32, writeFD: Int32, deadline: Date? = nil, listenFD: Int32? = nil) throws {
        engine.beginConnection()
        var injector = faultPlan.map { FaultInjector(plan: $0, seed: faultSeed &+ UInt64(engine.device.stats.connections)) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        defer {
            engine.endConnection()
            if let injector { engine.recordFaults(injector.counters, spec: faultPlan?.spec, seed: faultSeed) }
            try? save(final: true)
        }
        var lastInput = Date()   // last traffic on this connection
        while stopRequested == 0 {
            if let deadline, Date() > deadline { return }
            if listenFD != nil, let idleTimeout, idleTimeout > 0, Date().timeIntervalSince(lastInput) > idleTimeout {
                idleDisconnects += 1
                return
            }
            var pfds = [pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)]
            if let listenFD { pfds.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&pfds, nfds_t(pfds.count), 250)
            if ready == 0 { try save(final: false); continue }
            if ready < 0 { if errno == EINTR { continue }; return }
            // The current client first: a host that closes and reconnects at once has its
            // close (EOF) and its new connection ready together; only a client that is still
            // there makes a newcomer busy.
            let clientReady = pfds[0].revents != 0
            if let listenFD, !clientReady, pfds.count > 1, pfds[1].revents & Int16(POLLIN) != 0 { refuseBusy(listenFD) }
            guard clientReady else { continue }
            let n = buffer.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            lastInput = Date()
            var input = Array(buffer[0..<n])
            if var inj = injector {
                let r = inj.corrupt(input)
                injector = inj
                input = r.bytes
                if r.disconnect { _ = engine.receive(input); return }
            }
            let before = engine.connection.virtualSeconds
            var out = engine.receive(input)
            var stalledSeconds = 0.0
            if var inj = injector {
                if inj.shouldReset(commands: engine.connection.commands) {
                    engine.resetToROM()
                    out += romBootBanner
                }
                let stallMS = out.isEmpty ? 0 : inj.stall()
                if stallMS > 0 {
                    stalledSeconds = Double(stallMS) / 1000
                    engine.stall(seconds: stalledSeconds)
                    usleep(useconds_t(stallMS) * 1000)
                }
                let r = inj.corrupt(out)
                out = r.bytes
                injector = inj
                if r.disconnect { _ = writeAll(writeFD, out); return }
            }
            if realtime {
                // An injected stall was slept already (above): not twice.
                let dt = engine.connection.virtualSeconds - before - stalledSeconds
                if dt > 0 { usleep(useconds_t(min(dt, 30) * 1_000_000)) }
            }
            if !out.isEmpty, !writeAll(writeFD, out) { return }
            lastInput = Date()   // idle counts from the last traffic either way
            // Flash to disk at most every 0.2 s while traffic flows (and after 250 ms of quiet, and
            // at the end): saving after every chunk made small write blocks cost more wall time
            // in the server than on the wire.
            // eFuse burns are saved at once: they are irreversible on a real chip, so a killed
            // server must never forget one.
            if engine.efusesDirty || Date().timeIntervalSince(lastFlashSave) > 0.2 {
                try save(final: false)
                lastFlashSave = Date()
            }
        }
    }

    /// Writes dirty flash sectors and eFuses; stats at most twice a second unless `final`.
    func save(final: Bool) throws {
        try store.saveFlashSectors(engine.device.flash, sectors: engine.takeDirtySectors())
        if engine.efusesDirty {
            try store.saveEFuses(of: engine.device)
            engine.efusesDirty = false
        }
        if final || Date().timeIntervalSince(lastStatsSave) > 0.5 {
            try store.saveStats(engine.stats)
            lastStatsSave = Date()
        }
    }
}

/// posix_openpt and friends, looked up at run time (the Glibc module does not export them).
private struct PTYFunctions {
    typealias IntFn = @convention(c) (Int32) -> Int32
    typealias NameFn = @convention(c) (Int32) -> UnsafeMutablePointer<CChar>?
    let openpt: IntFn, grant: IntFn, unlock: IntFn, name: NameFn

    init?() {
        let handle = dlopen(nil, RTLD_NOW)
        func sym(_ n: String) -> UnsafeMutableRawPointer? { dlsym(handle, n) }
        guard let o = sym("posix_openpt"), let g = sym("grantpt"), let u = sym("unlockpt"), let p = sym("ptsname") else {
            return nil
        }
        openpt = unsafeBitCast(o, to: IntFn.self)
        grant = unsafeBitCast(g, to: IntFn.self)
        unlock = unsafeBitCast(u, to: IntFn.self)
        name = unsafeBitCast(p, to: NameFn.self)
    }
}
