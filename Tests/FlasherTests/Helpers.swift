import EFuse
import ESPCore
import Flasher
import Foundation
import TestSupport
import Testing
import Transport
import VirtualDevice

/// A fresh virtual device folder; `configure` may burn eFuses first.
func makeDevice(_ label: String = "flasher", mac: String = "24:0a:c4:11:22:33",
                configure: (inout EFuseArray) -> Void = { _ in }) throws -> URL {
    let dir = try TestEnvironment.temporaryDirectory(label)
    var dev = try Device.create(DeviceDescription(mac: mac))
    configure(&dev.efuses)
    try DeviceStore(directory: dir.path).create(dev, force: true)
    return dir
}

func set(_ a: inout EFuseArray, _ name: String, _ value: UInt64) {
    if let f = EFuseLayout.esp32.field(named: name) { a.factorySet(f, value: value) }
}

func setBlock2(_ a: inout EFuseArray, _ digest: [UInt8]) {
    var words = [UInt32](repeating: 0, count: 8)
    for i in 0..<min(32, digest.count) { words[i / 4] |= UInt32(digest[i]) << (8 * UInt32(i % 4)) }
    _ = a.program(block: 2, words: words, layout: .esp32)
}

/// A (non-zero) flash encryption key in BLOCK1, as a chip with flash encryption on has.
func setFlashKey(_ a: inout EFuseArray) {
    _ = a.program(block: 1, words: (1...8).map { UInt32($0) * 0x0101_0101 }, layout: .esp32)
}

func flashContents(_ dir: URL) throws -> [UInt8] {
    try DeviceStore(directory: dir.path).load().flash.bytes
}

func stats(_ dir: URL) throws -> DeviceStats { try DeviceStore(directory: dir.path).load().stats }

func esptoolStub() throws -> StubImage? {
    guard let path = StubImage.locate() else { return nil }
    return try StubImage.parse(json: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), source: path)
}

/// Connects through `port` with esptool's stub at 921600 baud, writes `data` as `app` at 0x10000
/// and closes without a reset: the session (for its link report) and the results.
func writeApp(_ data: [UInt8], through port: ChipPort) throws -> (FlashSession, [RegionResult]) {
    let session = FlashSession(openPort: port, options: options(stub: try esptoolStub(), baud: 921_600))
    try session.connect()
    let plan = FlashSafety.check(FlashRequest(regions: [FlashRegion(address: 0x10000, data: data, name: "app")]),
                                  facts: try #require(session.facts))
    let results = try session.write(plan)
    session.finishWithoutReset()
    return (session, results)
}

func options(stub: StubImage?, baud: Int = 921_600, compress: Bool = true) -> SessionOptions {
    var o = SessionOptions()
    o.ports = VirtualPorts.opener()
    o.stub = stub
    o.baud = baud
    o.compress = compress
    o.before = .noReset
    o.after = .noReset
    o.timeout = 2
    return o
}

/// Starts `espforge device serve --listen 127.0.0.1:0`; returns the process and port.
func serve(_ dir: URL, faults: String? = nil, seed: UInt64 = 1) throws -> (Process, Int) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: Espforge.path)
    var args = ["device", "serve", "--state", dir.path, "--listen", "127.0.0.1:0", "--max-seconds", "120"]
    if let faults { args += ["--faults", faults, "--seed", String(seed)] }
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    var line = ""
    var byte: UInt8 = 0
    let fd = out.fileHandleForReading.fileDescriptor
    while !line.hasSuffix("\n"), read(fd, &byte, 1) == 1 { line.append(Character(UnicodeScalar(byte))) }
    guard let port = Int(line.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") else {
        p.terminate()
        throw TestSupportError.missing("server port in '\(line)'")
    }
    return (p, port)
}

func stop(_ p: Process) {
    p.terminate()
    p.waitUntilExit()
}

/// `count` outcomes, failed with `probability`, spread evenly (expected counts, no randomness).
func evenFailures(probability: Double, count: Int) -> [Bool] {
    var owed = 0.0
    return (0..<count).map { _ in
        owed += probability
        guard owed >= 1 else { return false }
        owed -= 1
        return true
    }
}
