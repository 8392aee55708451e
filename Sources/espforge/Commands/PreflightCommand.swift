import ArgumentParser
import Diagnostics
import EFuse
import ESPCore
import Foundation
import ProductionLine
import VirtualDevice

struct PreflightCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Check a flash plan against the target chip before anything is written.",
        discussion: """
            The plan is ADDR FILE pairs or an ESP-IDF build folder (--build-dir: flasher_args.json, \
            sdkconfig, partition table). The target comes from a virtual device (--state DIR: chip, \
            revision, flash size and eFuses) or from flags (--chip, --flash-size, --chip-rev, and \
            optionally --efuse-summary FILE written by `espefuse summary --format json`). The flash \
            options are the ones the write will use (--write-flash-mode/--write-flash-freq/\
            --write-flash-size, default keep; with --build-dir the build's own flash settings). \
            --port reads a chip through its ROM loader (serial port, socket://, virtual:DIR): chip, \
            revision, flash size from the flash id, and the eFuses; nothing is written.

            --simulate is a dry run of the first power-on: the plan is written into a copy of the \
            device (--state DIR, which is never changed; with flags only, a blank ESP32 of the given \
            revision and flash size), as esptool would write it (plaintext, or encrypted with the \
            chip's key for files marked encrypted in flasher_args.json or with --encrypt; the \
            bootloader header rewritten by --write-flash-*), and the copy is powered on with the \
            boot simulator (`espforge device boot`) under the plan's sdkconfig (else the one \
            remembered in DIR), following the reset after in-place encryption. Both boot logs and the \
            predicted outcome are printed: the app that booted or why none did, the eFuses burned, \
            the regions encrypted. Exit status 2 when the static checks pass but no app would boot.

            Every finding has a stable code (PF001…), a severity, the offending bytes or fields and a \
            fix; --list-rules prints them all. Exit status 1 if any finding is an error.

            Example:
              espforge preflight --build-dir build --chip esp32 --flash-size 4MB --chip-rev 3
              espforge preflight --state dev1 --write-flash-size 4MB 0x1000 bootloader-signed.bin 0x8000 partitions.bin 0x60000 app-signed.bin
              espforge preflight --simulate --state dev1 --sdkconfig sdkconfig 0x1000 bootloader.bin 0x10000 partitions.bin 0x60000 app.bin
            """
    )

    @Argument(help: "ADDR FILE pairs to be written (instead of or in addition to --build-dir).")
    var pairs: [String] = []

    @Option(name: .customLong("build-dir"), help: "ESP-IDF build folder (flasher_args.json, sdkconfig).")
    var buildDir: String?
    @Option(help: "sdkconfig to use (default: found next to the build folder).")
    var sdkconfig: String?
    @Option(name: .customLong("partition-table-offset"), help: "CONFIG_PARTITION_TABLE_OFFSET (default: from sdkconfig, else where the plan writes a table).")
    var partitionTableOffset: String?

    // Target.
    @Option(help: "Virtual device state folder to check against (chip, revision, flash size, eFuses).")
    var state: String?
    @Option(help: "Port of the target chip to read (serial device, socket://HOST:PORT or virtual:DIR).")
    var port: String?
    @Option(help: "With --port: how to enter the loader: default-reset (DTR/RTS), usb-reset or no-reset.")
    var before = "default-reset"
    @Option(help: "Target chip: esp32, esp32s3, esp32c3.")
    var chip: String?
    @Option(name: .customLong("flash-size"), help: "Target flash size, e.g. 4MB.")
    var flashSize: String?
    @Option(name: .customLong("chip-rev"), help: "Target chip revision: 3, 3.0, v3.1 or 301.")
    var chipRev: String?
    @Option(name: .customLong("efuse-summary"), help: "`espefuse summary --format json` output of the target.")
    var efuseSummary: String?

    // Write options.
    @Option(name: .customLong("write-flash-mode"), help: "--flash-mode the write will use (default keep).")
    var writeFlashMode: String?
    @Option(name: .customLong("write-flash-freq"), help: "--flash-freq the write will use (default keep).")
    var writeFlashFreq: String?
    @Option(name: .customLong("write-flash-size"), help: "--flash-size the write will use (default keep).")
    var writeFlashSize: String?
    @Flag(help: "The write uses --encrypt (the chip encrypts every file).")
    var encrypt = false

    @Flag(help: "Also write the plan into a copy of the device and power it on (first-boot dry run).")
    var simulate = false
    @Option(name: .customLong("rng-seed"), help: ArgumentHelp("Seed for the simulated RNG (tests only).", visibility: .hidden))
    var rngSeed: UInt64?
    @Flag(name: .customLong("list-rules"), help: "List the rules and exit.")
    var listRules = false
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        if listRules {
            let rows = Preflight.rules.map { RuleRow(code: $0.code, name: $0.name, summary: $0.summary) }
            if json { return try Output.printJSON(rows) }
            for r in rows { print("\(r.code)  \(r.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(r.summary)") }
            return
        }
        var plan = try loadPlan()
        let target = try resolveTarget(buildChip: plan.chip)
        plan.plan.options = mergedOptions(plan.plan.options)
        let report = Preflight.run(plan: plan.plan, target: target)
        // A plan the simulation cannot write (e.g. a file past the end of flash) still gets its findings.
        var simulation: FirstBootPrediction?
        var simulationError: (any Error)?
        if simulate {
            do { simulation = try runSimulation(plan.plan, target: target) } catch { simulationError = error }
        }
        if json {
            try Output.printJSON(PreflightJSON(target: TargetJSON(target), passed: report.passed, errors: report.errors,
                                               warnings: report.warnings, findings: report.findings, simulation: simulation,
                                               simulationError: simulationError.map { ($0 as? any DiagnosticConvertible)?.diagnostic.description ?? "\($0)" }))
            if simulationError != nil, report.passed { throw ExitCode(1) }
        } else {
            print("preflight: \(plan.plan.entries.count) file(s) against \(target.chip.displayName)"
                  + (target.flashSize.map { ", \($0 >> 20)MB flash" } ?? "")
                  + (target.chipRevision.map { ", rev v\($0 / 100).\($0 % 100)" } ?? "")
                  + " (\(target.source))")
            for f in report.findings { printFinding(f) }
            print(report.findings.isEmpty ? "no findings: the plan passes every rule (\(report.rulesRun) rules)"
                  : "\(report.errors) error(s), \(report.warnings) warning(s)")
            if let simulation { printSimulation(simulation) }
            if let simulationError { throw simulationError }
        }
        if !report.passed { throw ExitCode(1) }
        if let simulation, simulation.bootedPartition == nil { throw ExitCode(2) }
    }

    /// Writes the plan into a copy of the target device and powers it on.
    func runSimulation(_ plan: FlashPlan, target: TargetFacts) throws -> FirstBootPrediction {
        let simulator = FirstBootAdapter(rngSeed: rngSeed)
        if let state { return try simulator.simulateFirstBoot(plan: plan, stateDirectory: state, sdkconfig: plan.sdkconfig) }
        // Flags only: a blank virtual device of that revision and flash size, in a temporary folder.
        guard target.chip.name == "esp32" else {
            throw UsageError("--simulate supports the ESP32 only", hint: "the boot simulator models the ESP32 ROM and bootloader")
        }
        let size = target.flashSize ?? 4 << 20
        let description = DeviceDescription(chip: "esp32", chipRevision: (target.chipRevision ?? 300) / 100, package: 1,
                                            mac: "24:0a:c4:00:00:01", flashSize: size,
                                            flashID: (Device.jedecSizeCode(for: size) << 16) | 0x40EF)
        let device = try Device.create(description)
        if let ef = target.efuses, ef != SecurityFuseFacts(esp32: device.efuses) {
            FileHandle.standardError.write(Data("espforge: --simulate without --state starts from factory eFuses (--efuse-summary is only used by the static checks)\n".utf8))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("espforge-preflight-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DeviceStore(directory: dir).create(device, force: false)
        return try simulator.simulateFirstBoot(plan: plan, stateDirectory: dir, sdkconfig: plan.sdkconfig)
    }

    func printSimulation(_ s: FirstBootPrediction) {
        print("")
        print("simulated first power-on (a copy of the device; nothing was written to it):")
        if !s.assumptions.isEmpty {
            print("  no sdkconfig: the bootloader's options are inferred from the plan:")
            for a in s.assumptions { print("    \(a)") }
        }
        for w in s.writes { print("  wrote \(w)") }
        for (i, log) in s.bootLogs.enumerated() {
            print("--- power cycle \(i + 1)" + (i == 0 ? " (first power-on)" : " (reset by the bootloader)"))
            print(log, terminator: "")
        }
        print("---")
        if let p = s.bootedPartition {
            print("predicted: app started from \(p)")
        } else {
            print("predicted: no app starts (\(s.result ?? "?")): \(s.reason ?? "")" + (s.errorCode.map { ", last error \($0)" } ?? ""))
        }
        print("eFuses burned: " + (s.burnedEFuses.isEmpty ? "none" : s.burnedEFuses.joined(separator: ", ")))
        print("encrypted in place: " + (s.encryptedRegions.isEmpty ? "nothing" : s.encryptedRegions.joined(separator: ", ")))
    }

    func printFinding(_ f: Finding) {
        print("\(f.severity.rawValue.uppercased()) \(f.code) \(f.rule): \(f.message)")
        for e in f.evidence { print("    \(e)") }
        print("  why: \(f.explanation)")
        print("  fix: \(f.fix)")
    }

    struct LoadedPlan {
        var plan: FlashPlan
        var chip: String?
    }

    func loadPlan() throws -> LoadedPlan {
        var entries: [PlanEntry] = []
        var plan = FlashPlan(entries: [])
        var chipName: String?
        if let buildDir {
            let contents = try BuildDirectory.load(buildDir, sdkconfigOverride: sdkconfig) { path in
                try FileIO.readIfPresent(path, limit: .flashContents)
            }
            plan = contents.plan
            entries = plan.entries
            chipName = contents.chip
        } else if let sdkconfig {
            plan.sdkconfig = SDKConfig(text: try FileIO.readText(sdkconfig, limit: .configText))
            plan.partitionTableOffset = plan.sdkconfig?.partitionTableOffset
        }
        guard pairs.count % 2 == 0 else {
            throw UsageError("ADDR FILE arguments must come in pairs", hint: "e.g. 0x1000 bootloader.bin 0x8000 partitions.bin")
        }
        var i = 0
        while i < pairs.count {
            guard let addr = NumberParsing.integer(pairs[i]), addr >= 0 else {
                throw UsageError("'\(pairs[i])' is not a flash address", hint: "write it as 0x1000 or 4096")
            }
            entries.removeAll { $0.address == addr }
            entries.append(PlanEntry(address: addr, name: pairs[i + 1], bytes: try FileIO.read(pairs[i + 1], limit: .flashContents), encrypted: encrypt))
            i += 2
        }
        guard !entries.isEmpty else {
            throw UsageError("nothing to check", hint: "give ADDR FILE pairs or --build-dir")
        }
        var offset = plan.partitionTableOffset
        if let t = partitionTableOffset {
            guard let v = NumberParsing.integer(t), v >= 0 else { throw UsageError("'\(t)' is not an offset") }
            offset = v
        }
        return LoadedPlan(plan: FlashPlan(entries: entries, options: plan.options, partitionTableOffset: offset,
                                          sdkconfig: plan.sdkconfig), chip: chipName)
    }

    func mergedOptions(_ fromBuild: FlashOptions) -> FlashOptions {
        var o = fromBuild
        if let m = writeFlashMode { o.mode = FlashOptions.value(m) }
        if let f = writeFlashFreq { o.frequency = FlashOptions.value(f) }
        if let s = writeFlashSize { o.size = FlashOptions.value(s) }
        o.encryptAll = o.encryptAll || encrypt
        return o
    }

    /// Where the target facts come from: a chip read through its loader, a virtual device folder,
    /// or flags (flags and --efuse-summary override what was read).
    func resolveTarget(buildChip: String?) throws -> TargetFacts {
        var facts: TargetFacts
        if let port {
            guard state == nil else { throw UsageError("give either --port or --state, not both") }
            facts = try ChipTarget.read(port: port, before: try parseResetMode(before))
        } else if let state {
            let device = try DeviceStore(directory: state).load()
            guard let spec = ChipSpec.named(device.description.chip) else {
                throw UsageError("unknown chip '\(device.description.chip)' in \(state)/device.json")
            }
            let ef = SecurityFuseFacts(esp32: device.efuses)
            facts = TargetFacts(chip: spec, flashSize: device.description.flashSize,
                                chipRevision: device.description.chipRevision * 100 + (ef.waferVersionMinor ?? 0),
                                efuses: ef, source: "state \(state)")
        } else {
            let name = chip ?? buildChip ?? "esp32"
            guard let spec = ChipSpec.named(name) else {
                throw UsageError("unknown chip '\(name)'", hint: "choose one of: " + ChipSpec.all.map(\.name).joined(separator: ", "))
            }
            facts = TargetFacts(chip: spec, source: "flags")
        }
        if let flashSize {
            guard let s = NumberParsing.size(flashSize), s > 0 else { throw UsageError("'\(flashSize)' is not a size", hint: "e.g. --flash-size 4MB") }
            facts.flashSize = s
        }
        if let chipRev {
            guard let r = TargetFacts.parseRevision(chipRev) else { throw UsageError("'\(chipRev)' is not a chip revision", hint: "e.g. --chip-rev 3 or 3.1") }
            facts.chipRevision = r
        }
        if let efuseSummary {
            let bytes = try FileIO.read(efuseSummary, limit: .efuseJSON)
            guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
                throw UsageError(Diagnostic("not a JSON object", file: efuseSummary, hint: "write it with `espefuse summary --format json --file FILE`"))
            }
            do { facts.efuses = try SecurityFuseFacts(espefuseSummary: obj) } catch {
                throw FileContextError(file: efuseSummary, underlying: error)
            }
        }
        return facts
    }
}

struct RuleRow: Codable {
    var code: String
    var name: String
    var summary: String
}

struct TargetJSON: Codable {
    var chip: String
    var flashSize: Int?
    var chipRevision: Int?
    var source: String
    var efuses: SecurityFuseFacts?
    init(_ t: TargetFacts) {
        chip = t.chip.name
        flashSize = t.flashSize
        chipRevision = t.chipRevision
        source = t.source
        efuses = t.efuses
    }
}

struct PreflightJSON: Codable {
    var target: TargetJSON
    var passed: Bool
    var errors: Int
    var warnings: Int
    var findings: [Finding]
    var simulation: FirstBootPrediction?
    /// Why the plan could not be simulated (the static findings usually say it too).
    var simulationError: String?
}
