import ArgumentParser
import BootSimulator
import ESPCore
import Flasher
import Foundation
import ProductionLine
import Transport
import VirtualDevice

/// Connection options shared by `espforge chip` and `espforge flash`.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("port"), help: ArgumentHelp(
        "Serial device, socket://HOST:PORT or virtual:DIR (repeat for several devices).", valueName: "PORT"))
    var ports: [String] = []
    @Option(help: "UART rate after SYNC at 115200 (CHANGE_BAUDRATE), e.g. 921600; any rate the adapter takes.") var baud = 115_200
    @Option(help: "Before connecting: default-reset (DTR/RTS), usb-reset (USB-Serial-JTAG) or no-reset.") var before = "default-reset"
    @Option(help: "Afterwards: hard-reset (EN pulse) or no-reset.") var after = "hard-reset"
    @Option(help: "Flasher stub in esptool's JSON format (default: $ESPFORGE_STUB, else esptool's in the active virtualenv, the oracle venv, pip's user or the system site-packages; no interpreter is run).")
    var stub: String?
    @Flag(name: .customLong("no-stub"), help: "Talk to the ROM loader only.") var noStub = false
    @Option(help: "Response timeout in seconds.") var timeout = 3.0
    @Flag(help: "Print JSON (one event per line for flash commands).") var json = false

    func sessionOptions(needStub: Bool = true) throws -> SessionOptions {
        var o = try SessionOptions.parse(baud: baud, before: before, after: after, timeout: timeout)
        o.ports = BoardPorts.opener
        if needStub {
            if stub == nil, !noStub {
                // esptool's stub for the chip found on the port (esp32.json, esp32s3.json, …): looked
                // up once the session knows the chip; the `stub:` line names it.
                let json = json
                o.stubForChip = { chip in try StubLines.shared.load(chip: chip, json: json) }
            } else {
                o.stub = try loadStub(path: stub, noStub: noStub, json: json)
            }
        }
        return o
    }

    func singlePort() throws -> String {
        guard ports.count == 1 else {
            throw UsageError(ports.isEmpty ? "--port is required" : "this command takes exactly one --port",
                             hint: "e.g. --port /dev/ttyUSB0, --port socket://127.0.0.1:5555 or --port virtual:dev1")
        }
        return ports[0]
    }

    func allPorts() throws -> [String] {
        guard !ports.isEmpty else {
            throw UsageError("--port is required", hint: "e.g. --port /dev/ttyUSB0 (repeat --port for several devices)")
        }
        guard Set(ports).count == ports.count else { throw UsageError("the same --port is given twice") }
        return ports
    }
}

/// The flasher stub (``StubChoice``): `--stub FILE`, else one found in the known places (no
/// process is started), else nil (the ROM loader). Says which stub is used, or why the ROM loader
/// is: one line on stderr, or with `json` one `{"event":"stub",...}` line on stdout.
func loadStub(path: String?, noStub: Bool = false, json: Bool) throws -> StubImage? {
    let choice = try StubChoice.resolve(path: path, noStub: noStub)
    if json { printEventLine(choice) } else { ErrorRenderer.writeStderr(choice.line) }
    return choice.stub
}

/// The per-chip stubs of one command run: each chip's stub is looked up and its `stub:` line
/// printed once, however many devices of that chip the run has.
final class StubLines: @unchecked Sendable {
    static let shared = StubLines()
    private let lock = NSLock()
    private var chosen: [String: StubImage?] = [:]

    func load(chip: String, json: Bool) throws -> StubImage? {
        lock.lock()
        defer { lock.unlock() }
        if let known = chosen[chip] { return known }
        let choice = try StubChoice.resolve(forChip: chip)
        if json { printEventLine(choice) } else { ErrorRenderer.writeStderr(choice.line) }
        chosen[chip] = .some(choice.stub)
        return choice.stub
    }
}

/// One machine-readable event per line.
func printEventLine<T: Encodable>(_ value: T) {
    if let line = try? Output.jsonLine(value) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
}

/// Human progress (``FlashProgressBoard``): one line per device (redrawn in place on a
/// terminal) and the findings; with `json` the events themselves.
final class ProgressPrinter: @unchecked Sendable {
    let json: Bool
    private var board: FlashProgressBoard

    init(devices: [String], json: Bool) {
        self.json = json
        board = FlashProgressBoard(devices: devices, redraws: isatty(1) != 0)
    }

    func handle(_ e: FlashEvent) {
        if json { return printEventLine(e) }
        switch board.take(e) {
        case .none: break
        case .line(let text): print(text)
        case .redraw(let text): FileHandle.standardOutput.write(Data(text.utf8))
        case .stderr(let text): ErrorRenderer.writeStderr(text)
        }
    }
}
