import ArgumentParser
import ESPCore
import Flasher
import Foundation
import Manifest
import ProductionLine
import Provisioning
import Registry
import StationDashboard

struct StationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "station", abstract: "Run a provisioning station all shift: boards in, provisioned, result shown, boards out.",
        discussion: """
            Slots come from --port (repeat; NAME=PORT names a slot, else S1, S2, …) or the \
            manifest's [station] slots = [{ name = "A1", port = "/dev/serial/by-path/…" }, …]. Each \
            slot waits for a board (serial: the device node appears and the ROM loader answers; \
            socket://: a connection succeeds), provisions it with the same pipeline as `provision` \
            (registry, resume from the last recorded step, boards already provisioned left alone), \
            shows the result, and waits until the board is taken out (node gone, link closed or \
            another MAC) before taking the next. A slot whose link fails --faulty-after times in a \
            row is marked faulty and skipped; the others go on.

            Ctrl-C / SIGTERM: no more boards; boards being provisioned stop before their next step \
            (at most --stop-timeout seconds), then a summary. A second signal stops at once. Every \
            finished step is recorded, so an interrupted board resumes where it stopped.

            On a terminal: a live table (slot, state, step, progress, MAC, identity, elapsed, last \
            result) and the shift's counters; piped: one line per event; --json: one JSON event per line.

            Example:
              espforge station --manifest espforge.toml --port A1=/dev/ttyUSB0 --port A2=/dev/ttyUSB1
              espforge device fleet --dir fleet --slots 8 --boards 40 --defects 3 &   # virtual boards
            """
    )

    @Option(help: "The production manifest (espforge.toml).") var manifest: String = "espforge.toml"
    @Option(name: .customLong("port"), help: "A slot: PORT or NAME=PORT (repeat); default: the manifest's [station] slots.") var ports: [String] = []
    @Option(help: "UART rate for writing (CHANGE_BAUDRATE after SYNC).") var baud = 921_600
    @Option(help: "Serial ports: how to enter the loader: default-reset (DTR/RTS), usb-reset or no-reset.") var before = "default-reset"
    @Option(help: "Flasher stub in esptool's JSON format (default: found as `provision` finds it).") var stub: String?
    @Flag(name: .customLong("no-stub"), help: "Talk to the ROM loader only.") var noStub = false
    @Option(help: "Registry: a SQLite file, sqlite:PATH or postgres://… (default: the manifest's).") var registry: String?
    @Flag(help: "One JSON event per line.") var json = false
    @Option(name: .customLong("escrow-key"), help: "Escrow public key PEM (overrides [escrow] public_key).") var escrowKey: String?
    @Option(name: .customLong("stop-timeout"), help: "Seconds a stop waits for in-flight boards to reach a safe step.") var stopTimeout = 120.0
    @Option(name: .customLong("faulty-after"), help: "Link errors in a row that mark a slot faulty.") var faultyAfter = 3
    @Option(name: .customLong("removal-poll"), help: "Seconds between checks that a finished board was taken out.") var removalPoll = 1.5
    @Option(name: .customLong("max-boards"), help: "Stop (as on Ctrl-C) once this many boards have a result.") var maxBoards: Int?
    @Option(name: .customLong("max-seconds"), help: "Stop (as on Ctrl-C) after this many seconds (a safety net for scripts).") var maxSeconds: Double?
    @Option(help: "Serve the read-only web dashboard on HOST:PORT (e.g. 127.0.0.1:8080; other addresses need --dashboard-token-file).") var dashboard: String?
    @Option(name: .customLong("dashboard-token-file"), help: "File holding the dashboard's bearer token (mode 0600).") var dashboardTokenFile: String?
    @OptionGroup var pkcs11: PKCS11Options

    func run() async throws {
        let loaded = try ProvisionSetup.load(manifestPath: manifest, pkcs11: pkcs11, escrowKey: escrowKey)
        let slots = try StationSlot.parse(ports: ports, manifestSlots: loaded.stationSlots)
        var link = LoaderLinkOptions()
        try SessionOptions.checkBaud(baud)
        link.session.baud = baud
        link.session.before = try SessionOptions.resetMode(before)
        link.session.stub = try loadStub(path: stub, noStub: noStub, json: json)
        guard faultyAfter >= 1 else { throw UsageError("--faulty-after must be 1 or more") }
        guard removalPoll > 0, removalPoll <= 60 else { throw UsageError("--removal-poll must be between 0 and 60 seconds") }
        guard stopTimeout >= 0 else { throw UsageError("--stop-timeout must be 0 or more seconds") }
        var options = Station.Options(link: link)
        options.policy.faultyAfter = faultyAfter
        options.policy.removalPoll = removalPoll
        options.stopTimeout = stopTimeout

        let dashboardConfig = try DashboardConfig.parse(dashboard, tokenFile: dashboardTokenFile)
        let view = StationView(mode: json ? .json : isatty(STDOUT_FILENO) == 1 ? .live : .lines)
        let registryHandle = try await openRegistry(url: registry ?? loaded.registryURL)
        var run = ProvisionSetup.RunOptions()
        run.resume = true
        run.onPoolLoaded = { p in view.note("pool \(p.pool): \(p.added) identities added (\(p.total) in the pool, \(p.claimed) claimed)") }
        let provisioner = try await ProvisionSetup.prepare(loaded, registry: registryHandle, options: run)
        let station = Station(slots: slots, provisioner: provisioner, options: options, stationName: loaded.job.station)
        let limit = maxBoards
        station.addObserver { event in
            view.show(event, station)
            if let limit, station.reachedLimit(event, boards: limit) { station.requestStop(.graceful) }
        }
        let signals = StopSignals { station.requestStop() }
        view.start(station)
        var server: Task<Void, Never>?
        if let dashboardConfig {
            let board = StationDashboard(station: station, registry: registryHandle, config: dashboardConfig)
            server = Task {
                do {
                    try await board.run { port in view.note("dashboard: http://\(dashboardConfig.host):\(port)/") }
                } catch {
                    view.note("dashboard stopped: \((error as? DiagnosticConvertible)?.diagnostic.message ?? "\(error)")")
                }
            }
        }
        if let maxSeconds { station.stopAfter(seconds: maxSeconds) }
        let end = await station.run()
        signals.cancel()
        server?.cancel()
        view.finish(end)
        try? await registryHandle.close()
        if end.stopping == .immediate { throw ExitCode(130) }
    }
}
