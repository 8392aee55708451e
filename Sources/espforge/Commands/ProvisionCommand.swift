import ArgumentParser
import ESPCore
import Flasher
import Foundation
import Manifest
import NVS
import Partitions
import Provisioning
import Registry
import SecureBoot
import Transport
import ProductionLine

struct ProvisionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision", abstract: "Provision devices end to end from a manifest: identify, claim, write, first boot, verify, burn, record.",
        discussion: """
            Runs the per-device pipeline on every --port in parallel: connect → identify (MAC, \
            revision, flash, security eFuses) → claim the next identity of the manifest's NVS values \
            CSV atomically in the registry → build this device's NVS (encrypted with a fresh key) → \
            preflight → write (flash encryption `host`: a per-device key is burned and ciphertext \
            written; `on-chip`: plaintext, the bootloader encrypts on first boot) → first boot → \
            verify (Secure Boot digest, ABS_DONE_1, FLASH_CRYPT_CNT, key protection) → the manifest's \
            final eFuses → record. Without [nvs] values there is nothing to claim: claim and \
            build-nvs are recorded as skipped and the device's identity is its MAC. A board whose \
            record says provisioned and whose chip matches it is left alone ("already provisioned \
            as …", a pass); a secured board the registry does not know, or knows under another \
            manifest or key, is refused and logged as an event. Every step is recorded before and after it runs; --resume \
            continues each device after its last safe step. A device whose first boot fails is \
            stopped before any final eFuse and recorded as failed with the doctor's diagnosis.

            Ports: `virtual:DIR` (a device folder from `espforge device create`, driven in this \
            process, first boot by the boot simulator), a serial device (/dev/ttyUSB0: reset into \
            the loader over DTR/RTS, written through the flasher stub at --baud; first boot by an EN \
            pulse, then the console is watched at 115200 baud until the manifest's [first_boot] \
            ready_line — by default ESP-IDF's app start line — a boot loop, a failure the doctor \
            recognises, or the timeout) or socket://HOST:PORT (the same over TCP, e.g. `espforge \
            device serve`; the first boot is started with the ROM's run-firmware command). \
            `virtual:DIR?lines=auto[&faults=SPEC&seed=N]` is a virtual board on a serial line (DTR/RTS \
            auto-reset circuit), provisioned through the same serial path.

            Examples:
              espforge provision --manifest espforge.toml --port virtual:dev1 --port virtual:dev2
              espforge provision --manifest espforge.toml --port /dev/ttyUSB0 --port /dev/ttyUSB1 --baud 921600
            """
    )

    @Option(help: "The production manifest (espforge.toml).") var manifest: String = "espforge.toml"
    @Option(name: .customLong("port"), help: "A device port: virtual:DIR, /dev/ttyUSB0 or socket://HOST:PORT (repeat for several devices).") var ports: [String] = []
    @Option(help: "Serial and socket ports: UART rate for writing (CHANGE_BAUDRATE after SYNC).") var baud = 921_600
    @Option(help: "Serial ports: how to enter the loader: default-reset (DTR/RTS), usb-reset or no-reset.") var before = "default-reset"
    @Option(help: "Flasher stub in esptool's JSON format (default: $ESPFORGE_STUB, else esptool's in the active virtualenv, the oracle venv, pip's user or the system site-packages; no interpreter is run).")
    var stub: String?

    @Flag(name: .customLong("no-stub"), help: "Talk to the ROM loader only.") var noStub = false
    @Option(help: "Registry: a SQLite file, sqlite:PATH or postgres://… (default: the manifest's, else espforge-registry.sqlite).") var registry: String?
    @Flag(help: "Continue each device after its last safe step recorded in the registry.") var resume = false
    @Flag(help: "One JSON event per line instead of progress lines and a table.") var json = false
    @Option(name: .customLong("escrow-key"),
            help: "Escrow public key PEM (X25519 or RSA): seal every per-device key to it before use (overrides [escrow] public_key).")
    var escrowKey: String?

    @OptionGroup var pkcs11: PKCS11Options

    func run() async throws {
        guard !ports.isEmpty else { throw UsageError("no --port given", hint: "e.g. --port virtual:devices/dev1") }
        if pkcs11.hsmConfig != nil {
            throw UsageError("--hsm-config is for the secure-boot commands",
                             hint: "in the manifest write [signing] key = \"pkcs11:slot-id=SLOT;object=LABEL;type=private\" and pkcs11_module")
        }
        let loaded = try ProvisionSetup.load(manifestPath: manifest, pkcs11: pkcs11, escrowKey: escrowKey)
        guard Set(ports).count == ports.count else { throw UsageError("the same --port is given twice") }
        var link = LoaderLinkOptions()
        link.session.ports = BoardPorts.opener
        if ports.contains(where: { !$0.hasPrefix("virtual:") || $0.contains("?") }) {
            try SessionOptions.checkBaud(baud)
            link.session.baud = baud
            link.session.before = try SessionOptions.resetMode(before)
            link.session.stub = try loadStub(path: stub, noStub: noStub, json: json)
        }
        let code = try await ProvisionRun.run(loaded, ports: ports, registryURL: registry ?? loaded.registryURL,
                                                resume: resume, json: json, link: link)
        if code != 0 { throw ExitCode(code) }
    }
}

/// `provision` and `demo`: the library's line entry point (``ProvisionSetup``), rendered by ``ProvisionReport``.
enum ProvisionRun {
    /// Provisions every port in parallel; prints progress and the summary. Returns the exit code.
    static func run(_ loaded: ProvisionSetup.Loaded, ports: [String], registryURL: String?, resume: Bool, json: Bool,
                    link: LoaderLinkOptions = LoaderLinkOptions(), realtime: Bool = false, rngSeed: UInt64? = nil) async throws -> Int32 {
        let printer = Printer(json: json, ports: ports)
        var options = ProvisionSetup.RunOptions(registryURL: registryURL)
        (options.resume, options.link, options.realtime, options.rngSeed) = (resume, link, realtime, rngSeed)
        options.onEvent = { printer.event($0) }
        options.onPoolLoaded = { p in
            if let text = json ? try? Output.jsonLine(p) : ProvisionReport.poolLine(p) { printer.line(text) }
        }
        if let crash = ProcessInfo.processInfo.environment["ESPFORGE_TEST_CRASH_AFTER"], !crash.isEmpty {
            // Test-only: simulate a killed process right after a step was recorded ok.
            options.afterStep = { step, _ in if step.rawValue == crash { exit(137) } }
        }
        let results = try await ProvisionSetup.provision(loaded, ports: ports, options: options)
        if json {
            for r in results { printer.line(try Output.jsonLine(["summary": r])) }
        } else {
            printer.line("")
            printer.line(ProvisionReport.summaryTable(results))
        }
        for f in results where !f.ok {
            ErrorRenderer.writeStderr("espforge: device failed: " + Diagnostic.terminalSafe(ProvisionReport.failureLine(f)) + "\n")
        }
        return results.contains { !$0.ok } ? 1 : 0
    }
}

extension ProvisionSetup {
    /// The manifest with `pkcs11:` signing keys opened as the command line says (PIN file,
    /// environment, or a prompt on a terminal).
    static func load(manifestPath: String, pkcs11: PKCS11Options, escrowKey: String?) throws -> Loaded {
        try load(manifestPath: manifestPath, tokenSigner: { uri, module, pinFile in
            try TokenCLI.signer(uri, pkcs11, manifestModule: module, manifestPINFile: pinFile)
        }, escrowKey: escrowKey)
    }
}

/// Serialises output from the parallel device tasks. On a terminal: one live line per port,
/// redrawn in place; otherwise (pipes, CI logs) one line per finished step.
final class Printer: @unchecked Sendable {
    let json: Bool
    let live: Bool
    let lock = NSLock()
    var board: ProvisionReport.LiveBoard

    init(json: Bool, ports: [String] = []) {
        self.json = json
        live = !json && !ports.isEmpty && isatty(STDOUT_FILENO) == 1
        board = ProvisionReport.LiveBoard(ports: ports)
    }

    func event(_ e: ProvisionEvent) {
        if json {
            if let text = try? Output.jsonLine(e) { line(text) }
        } else if live {
            lock.withLock { FileHandle.standardOutput.write(Data(board.update(e).utf8)) }
        } else if let text = ProvisionReport.eventLine(e) {
            line(text)
        }
    }

    func line(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
