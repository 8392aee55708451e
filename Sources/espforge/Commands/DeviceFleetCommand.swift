import ArgumentParser
import ESPCore
import Foundation
import ProductionLine
import VirtualDevice

struct DeviceFleet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet", abstract: "Serve station slots on loopback where virtual boards are put in and taken out, as an operator would.",
        discussion: """
            Every slot is a socket:// port on 127.0.0.1 that stays the same all run; a slot is \
            empty (connections refused) until a board is in. Each board is a fresh virtual ESP32 \
            with its own MAC, in DIR/boards/bNNN. A board is taken out --dwell seconds after the \
            station shows its result (its first probe after working on it); the next one goes in after a short pause.

            --defects N makes N boards defective (kinds spread over the failing ones), or name them: \
            reheadered=1,flash-2mb=1,old-revision=1,secured=1,flaky=1,pulled=1. reheadered: the \
            bootloader's header rewritten after signing (the seed's failure, at first boot); \
            flash-2mb: 2 MB flash; old-revision: ESP32 v1; secured: secured by another line; flaky: \
            a noisy link (--faults; still provisionable); pulled: taken out while its flash is written.

            Printed at start: `slot N socket://127.0.0.1:PORT` per slot. At the end DIR/truth.json \
            says which board went where with which defect and expected outcome, and a summary is \
            printed. Stop early with SIGTERM or Ctrl-C.

            Example:
              espforge device fleet --dir fleet --slots 8 --boards 40 --defects 3 --sdkconfig line/sdkconfig
            """
    )

    @Option(help: "Folder for the boards and truth.json.") var dir: String
    @Option(help: "Number of slots.") var slots = 8
    @Option(help: "Number of boards put through the slots.") var boards = 40
    @Option(help: "Defective boards: a count, or kind=N,… (see above).") var defects: String?
    @Option(help: "Seed (MACs, which boards are defective, operator pauses, faults).") var seed: UInt64 = 1
    @Flag(help: "Serve at a real chip's speed (each board sleeps its virtual time).") var realtime = false
    @Option(help: "The project's sdkconfig, remembered by every board (its first boot).") var sdkconfig: String?
    @Option(help: "Link faults of flaky boards.") var faults = "drop=0.00002,flip=0.00002,stall=0.01:30"
    @Option(help: "Seconds the operator takes to pull a board once the station shows its result.") var dwell = 0.3
    @Option(name: .customLong("pull-after"), help: "Pulled boards lose their link after this many bytes.") var pullAfter = 40_000
    @Flag(help: "Print the truth as JSON at the end.") var json = false

    func run() throws {
        var plan = FleetPlan(directory: dir, slots: slots, boards: boards)
        plan.defects = try defects.map { try BoardDefect.parse($0) } ?? []
        plan.seed = seed
        plan.realtime = realtime
        plan.sdkconfig = try sdkconfig.map { try FileIO.readText($0, limit: .configText) }
        plan.flakyFaults = faults
        guard dwell > 0, dwell <= 60 else { throw UsageError("--dwell must be between 0 and 60 seconds") }
        plan.dwell = dwell
        plan.pullAfterBytes = pullAfter
        let fleet = try BoardFleet(plan: plan)
        let urls = try fleet.start()
        for (i, u) in urls.enumerated() { print("slot \(i + 1) \(u)") }
        fflush(nil)
        // SIGINT/SIGTERM: no more boards; the ones in slots finish their connection.
        signal(SIGPIPE, SIG_IGN)
        let signals = StopSignals { fleet.stop() }
        let truth = fleet.wait()
        signals.cancel()
        let data = try truth.json()
        try FileIO.write(data, to: dir + "/truth.json")
        print(json ? String(decoding: data, as: UTF8.self) : truth.summary(truthPath: dir + "/truth.json"))
    }
}
