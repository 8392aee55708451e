import CSerial
import Foundation
import Loader
import Testing
import TestSupport
import Transport
import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

func makeDevice(_ label: String = "transport") throws -> URL {
    let dir = try TestEnvironment.temporaryDirectory(label)
    let dev = try Device.create(DeviceDescription(mac: "24:0a:c4:01:02:03"))
    try DeviceStore(directory: dir.path).create(dev, force: true)
    return dir
}

@Suite struct SerialPortTests {
    @Test func rawModeAndNonStandardBaudOnAPty() throws {
        let pty = try PseudoTerminal.open()
        defer { close(pty.master) }
        let port = try SerialPort(descriptor: pty.slave, name: pty.path, baud: 115_200)
        defer { port.close() }
        let t = try #require(port.attributes())
        #expect(t.c_lflag & tcflag_t(ICANON) == 0)
        #expect(t.c_lflag & tcflag_t(ECHO) == 0)
        #expect(t.c_iflag & tcflag_t(IXON) == 0)
        #expect(t.c_oflag & tcflag_t(OPOST) == 0)
        #expect(t.c_cflag & tcflag_t(CSIZE) == tcflag_t(CS8))
        #expect(t.c_cflag & tcflag_t(CLOCAL) != 0)
        #expect(port.configuredBaud == 115_200)
        for rate in [921_600, 250_000, 1_234_567, 74_880] {
            try port.setBaud(rate)
            #expect(port.configuredBaud == rate, "rate \(rate)")
        }
    }

    @Test func bytesPassUntranslated() throws {
        let pty = try PseudoTerminal.open()
        defer { close(pty.master) }
        let port = try SerialPort(descriptor: pty.slave, name: pty.path)
        defer { port.close() }
        // CR, LF, XON/XOFF, 0x7F and 0xC0 must arrive as they are (raw mode).
        let payload: [UInt8] = [0x0D, 0x0A, 0x11, 0x13, 0x7F, 0xC0, 0xDB, 0x00, 0xFF, 0x03, 0x1A]
        _ = payload.withUnsafeBytes { write(pty.master, $0.baseAddress, $0.count) }
        var got: [UInt8] = []
        for _ in 0..<20 where got.count < payload.count { got += try port.read(timeout: 0.2) }
        #expect(got == payload)
        try port.write(payload)
        var back = [UInt8](repeating: 0, count: 64)
        var n = 0
        for _ in 0..<20 where n < payload.count {
            var pfd = pollfd(fd: pty.master, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 200)
            let r = back.withUnsafeMutableBytes { read(pty.master, $0.baseAddress! + n, 64 - n) }
            if r > 0 { n += r }
        }
        #expect(Array(back[0..<n]) == payload)
        // Nothing more arrives: a read times out empty.
        #expect(try port.read(timeout: 0.05).isEmpty)
    }

    @Test func ptyHasNoModemLinesButNoResetNeedsNone() throws {
        let pty = try PseudoTerminal.open()
        defer { close(pty.master) }
        let port = try SerialPort(descriptor: pty.slave, name: pty.path)
        defer { port.close() }
        // --before no-reset never touches the lines.
        try ResetSequence.enterLoader(port, mode: .noReset, attempt: 0)
        // A pty rejects modem-line ioctls; the error says what to do.
        do {
            try port.setModemLines(dtr: true, rts: false)
        } catch let e as TransportError {
            #expect(e == .noModemLines(pty.path))
            #expect(e.diagnostic.hint?.contains("no-reset") == true)
        }
    }
}

@Suite struct PortNameTests {
    @Test(arguments: ["socket://", "socket://host", "socket://:80", "socket://h:99999", "virtual:", "virtual:d?bogus=1", "virtual:d?lines=manual",
                      "virtual:d?seed=x", "http://x", ""])
    func badNamesAreRejected(_ name: String) {
        #expect(throws: TransportError.self) { _ = try VirtualPorts.opener().open(name) }
    }

    @Test func resetModeNames() {
        #expect(ResetMode.parse("default_reset") == .defaultReset)
        #expect(ResetMode.parse("no-reset") == .noReset)
        #expect(ResetMode.parse("usb-reset") == .usbReset)
        #expect(ResetMode.parse("sometimes") == nil)
        #expect(AfterMode.parse("hard_reset") == .hardReset)
    }

    /// Transport knows no virtual device: `virtual:` names need an injected opener.
    @Test func virtualNamesNeedAnInjectedOpener() throws {
        #expect(throws: TransportError.virtualUnavailable("virtual:dev1?lines=auto")) {
            _ = try PortOpener().open("virtual:dev1?lines=auto")
        }
        let address = try VirtualPortAddress.parse("virtual:some/dir?faults=disconnect-after=3&seed=7&lines=auto")
        #expect(address == VirtualPortAddress(name: "virtual:some/dir?faults=disconnect-after=3&seed=7&lines=auto",
                                              directory: "some/dir", faults: "disconnect-after=3", seed: 7, resetLines: true))
        let seen = FolderLog()
        let custom = PortOpener(virtual: { a in
            seen.add(a.directory)
            throw TransportError.openFailed(a.name, "test opener")
        })
        #expect(throws: TransportError.openFailed("virtual:d2", "test opener")) { _ = try custom.open("virtual:d2") }
        #expect(seen.all == ["d2"])
    }

    @Test func missingSerialDeviceSaysWhy() {
        #expect(throws: TransportError.self) { _ = try PortOpener().open("/dev/does-not-exist-espforge") }
    }
}

@Suite struct VirtualPortTests {
    @Test func syncGetsEightRepliesAndStatePersists() throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = try VirtualPorts.opener().open("virtual:" + dir.path)
        #expect(port.kind == .virtual)
        try port.write(SLIP.encode(CommandPacket(.sync, data: LoaderProtocol.syncPayload).encode()))
        var d = SLIPDecoder()
        let frames = d.frames(try port.read(timeout: 0))
        #expect(frames.count == 8)
        #expect(try ResponsePacket.decode(frames[0]).value == LoaderProtocol.romSyncValue)
        // Nothing more: a read finds nothing without waiting.
        #expect(try port.read(timeout: 5).isEmpty)
        port.close()
        let stats = try DeviceStore(directory: dir.path).load().stats
        #expect(stats.connections == 1)
        #expect(stats.total.commands == 1)
    }

    @Test func disconnectFaultClosesAndReopenWorks() throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = try VirtualPorts.opener().open("virtual:\(dir.path)?faults=disconnect-after=10&seed=1")
        #expect(throws: TransportError.closed(port.name)) {
            try port.write(SLIP.encode(CommandPacket(.sync, data: LoaderProtocol.syncPayload).encode()))
            _ = try port.read(timeout: 0)
        }
        try port.reopen()
        try port.write([0xC0])
        port.close()
    }

    /// `?lines=auto`: the board's auto-reset circuit on DTR (IO0) and RTS (EN), both active low.
    @Test func autoResetLinesEnterTheLoaderOrBootTheFirmware() throws {
        let dir = try makeDevice()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folders = FolderLog()
        let opener = VirtualPorts.opener(firmware: { dir in
            folders.add(dir)
            return { _ in FirmwareRun(console: Array("I (31) boot: hello from flash\r\n".utf8), seconds: 0.25) }
        })
        let port = try opener.open("virtual:\(dir.path)?lines=auto")
        #expect(folders.all == [dir.path], "the firmware factory is asked for the port's own folder")
        #expect(port.kind == .serial)
        // The classic download-mode sequence: EN rises while IO0 is held low → ROM banner.
        try ResetSequence.classic(port, attempt: 0, sleep: { _ in })
        #expect(String(decoding: try port.read(timeout: 0), as: UTF8.self).contains("waiting for download"))
        // Lines that do not release EN do nothing.
        try port.setModemLines(dtr: true, rts: nil)
        #expect(try port.read(timeout: 0).isEmpty)
        // Hard reset: EN pulse with IO0 released → the chip boots from flash and prints.
        try ResetSequence.hardReset(port, sleep: { _ in })
        #expect(String(decoding: try port.read(timeout: 0), as: UTF8.self) == "I (31) boot: hello from flash\r\n")
        port.close()
        let stats = try DeviceStore(directory: dir.path).load().stats
        #expect(stats.total.firmwareRuns == 1 && stats.total.firmwareSeconds == 0.25)
        // Without ?lines=auto the lines are ignored (the port is not a serial one).
        let plain = try opener.open("virtual:\(dir.path)")
        #expect(plain.kind == .virtual)
        try ResetSequence.hardReset(plain, sleep: { _ in })
        #expect(try plain.read(timeout: 0).isEmpty)
        plain.close()
    }
}

@Suite(.serialized) struct PtyServeTests {
    /// `espforge device serve --pty`, then `espforge chip info --port /dev/pts/N --before no-reset`.
    @Test func chipInfoOverAPtyServedDevice() throws {
        let dir = try makeDevice("pty")
        defer { try? FileManager.default.removeItem(at: dir) }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Espforge.path)
        server.arguments = ["device", "serve", "--state", dir.path, "--pty", "--max-seconds", "60"]
        let out = Pipe()
        server.standardOutput = out
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        var line = ""
        let fd = out.fileHandleForReading.fileDescriptor
        var byte: UInt8 = 0
        while !line.hasSuffix("\n"), read(fd, &byte, 1) == 1 { line.append(Character(UnicodeScalar(byte))) }
        #expect(line.hasPrefix("pty /dev/"))
        let path = String(line.dropFirst(4)).trimmingCharacters(in: .whitespacesAndNewlines)
        let r = try Espforge.run(["chip", "info", "--port", path, "--before", "no-reset", "--after", "no-reset", "--json", "--baud", "230400"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("\"mac\" : \"24:0a:c4:01:02:03\""))
        #expect(r.out.contains("ESP32-D0WD-V3"))
        // A write and a verify over the same pty (ROM loader, custom baud).
        let file = dir.appendingPathComponent("data.bin")
        var rng = SeededRandom(seed: 9)
        try Data(rng.bytes(20_000)).write(to: file)
        let w = try Espforge.run(["flash", "write", "--port", path, "--before", "no-reset", "--after", "no-reset", "--no-stub",
                                  "--baud", "460800", "0x20000", file.path])
        #expect(w.status == 0, "\(w.err)")
        let v = try Espforge.run(["flash", "verify", "--port", path, "--before", "no-reset", "--no-stub", "0x20000", file.path])
        #expect(v.status == 0 && v.out.contains("OK"), "\(v.err)")
    }
}

/// Records modem-line changes and sleeps instead of touching hardware.
final class RecordingPort: ChipPort {
    let name = "recording"
    let kind: PortKind
    var calls: [String] = []
    init(kind: PortKind = .serial) { self.kind = kind }
    func write(_ bytes: [UInt8]) throws {}
    func read(timeout: Double) throws -> [UInt8] { [] }
    func setBaud(_ baud: Int) throws { calls.append("baud \(baud)") }
    func setModemLines(dtr: Bool?, rts: Bool?) throws {
        func s(_ b: Bool?) -> String { b.map { $0 ? "1" : "0" } ?? "-" }
        calls.append("dtr=\(s(dtr)) rts=\(s(rts))")
    }
    func flushInput() { calls.append("flush") }
    func reopen() throws {}
    func close() {}
}

@Suite struct ResetSequenceTests {
    @Test func classicResetHoldsIO0LowWhileENRises() throws {
        let p = RecordingPort()
        var sleeps: [Double] = []
        try ResetSequence.classic(p, attempt: 0) { sleeps.append($0) }
        // EN low (RTS) with IO0 high, then IO0 low (DTR) as EN is released, then IO0 released.
        #expect(p.calls == ["dtr=0 rts=1", "dtr=1 rts=0", "dtr=0 rts=-"])
        #expect(sleeps == [0.1, 0.05])
        sleeps = []
        try ResetSequence.classic(RecordingPort(), attempt: 1) { sleeps.append($0) }
        #expect(sleeps == [0.1, 0.55])
    }

    @Test func usbJTAGAndHardReset() throws {
        let p = RecordingPort()
        try ResetSequence.usbJTAG(p) { _ in }
        #expect(p.calls.first == "dtr=0 rts=0" && p.calls.last == "dtr=0 rts=0")
        #expect(p.calls.contains("dtr=1 rts=0") && p.calls.contains("dtr=0 rts=1"))
        let h = RecordingPort()
        try ResetSequence.hardReset(h) { _ in }
        #expect(h.calls == ["dtr=0 rts=1", "dtr=- rts=0"])
    }

    @Test func socketsAndNoResetTouchNoLines() throws {
        for kind in [PortKind.socket, .virtual] {
            let p = RecordingPort(kind: kind)
            try ResetSequence.enterLoader(p, mode: .defaultReset, attempt: 0)
            #expect(p.calls.isEmpty)
        }
        let s = RecordingPort()
        try ResetSequence.enterLoader(s, mode: .noReset, attempt: 0)
        #expect(s.calls.isEmpty)
    }
}

/// Folders a firmware factory or opener was asked for (thread-safe).
final class FolderLog: @unchecked Sendable {
    private let lock = NSLock()
    private var folders: [String] = []
    func add(_ folder: String) { lock.lock(); folders.append(folder); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return folders }
}
