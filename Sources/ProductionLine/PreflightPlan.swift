import Diagnostics
import EFuse
import ESPCore
import Foundation
import VirtualDevice

/// `espforge preflight` as a library call: load the plan, read the target's facts, run the safety
/// rules (the same engine as `flash` and `provision`), and optionally simulate the first power-on.
public enum PreflightRun {
    public static func run(_ request: PreflightRequest) throws -> PreflightOutcome {
        var loaded = try loadPlan(request)
        let target = try resolveTarget(request, buildChip: loaded.chip)
        loaded.plan.options = mergedOptions(request, loaded.plan.options)
        let report = SafetyRules.check(plan: loaded.plan, target: target)
        var outcome = PreflightOutcome(target: target, plan: loaded.plan, report: report)
        // A plan the simulation cannot write (e.g. a file past the end of flash) still gets its findings.
        if request.simulate {
            do { outcome.simulation = try simulate(loaded.plan, target: target, request: request) } catch { outcome.simulationError = error }
        }
        return outcome
    }

    /// Writes the plan into a copy of the target device and powers it on.
    static func simulate(_ plan: FlashPlan, target: TargetFacts, request: PreflightRequest) throws -> FirstBootPrediction {
        let simulator = FirstBootAdapter(rngSeed: request.rngSeed)
        if let state = request.state { return try simulator.simulateFirstBoot(plan: plan, stateDirectory: state, sdkconfig: plan.sdkconfig) }
        // Flags only: a blank virtual device of that revision and flash size, in a temporary folder.
        let chip = target.chip.name
        guard VirtualChip.supportedNames.contains(chip) else {
            throw UsageError("--simulate supports the ESP32, ESP32-S3 and ESP32-C3", hint: "the boot simulator models those chips' ROM and bootloader")
        }
        let size = target.flashSize ?? 4 << 20
        let fieldMap = VirtualChip.named(chip)
        let revision = target.chipRevision ?? (fieldMap == nil ? 300 : 0)
        var description = DeviceDescription(chip: chip, chipRevision: revision / 100, package: fieldMap == nil ? 1 : 0,
                                            mac: fieldMap.map { Device.defaultMAC(seed: 1, oui: $0.macOUI) } ?? "24:0a:c4:00:00:01",
                                            flashSize: size, flashID: (Device.jedecSizeCode(for: size) << 16) | 0x40EF)
        if fieldMap != nil, target.chipRevision != nil { description.minorRevision = revision % 100 }
        let device = try Device.create(description)
        if fieldMap == nil, let ef = target.efuses, ef != SecurityFuseFacts(esp32: device.efuses) {
            FileHandle.standardError.write(Data("espforge: --simulate without --state starts from factory eFuses (--efuse-summary is only used by the static checks)\n".utf8))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("espforge-preflight-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DeviceStore(directory: dir).create(device, force: false)
        return try simulator.simulateFirstBoot(plan: plan, stateDirectory: dir, sdkconfig: plan.sdkconfig)
    }

    struct LoadedPlan {
        var plan: FlashPlan
        var chip: String?
    }

    static func loadPlan(_ r: PreflightRequest) throws -> LoadedPlan {
        var entries: [PlanEntry] = []
        var plan = FlashPlan(entries: [])
        var chipName: String?
        if let buildDir = r.buildDir {
            let contents = try BuildDirectory.load(buildDir, sdkconfigOverride: r.sdkconfig) { path in
                try FileIO.readIfPresent(path, limit: .flashContents)
            }
            plan = contents.plan
            entries = plan.entries
            chipName = contents.chip
        } else if let sdkconfig = r.sdkconfig {
            plan.sdkconfig = SDKConfig(text: try FileIO.readText(sdkconfig, limit: .configText))
            plan.partitionTableOffset = plan.sdkconfig?.partitionTableOffset
        }
        guard r.pairs.count % 2 == 0 else {
            throw UsageError("ADDR FILE arguments must come in pairs", hint: "e.g. 0x1000 bootloader.bin 0x8000 partitions.bin")
        }
        for i in stride(from: 0, to: r.pairs.count, by: 2) {
            guard let addr = NumberParsing.integer(r.pairs[i]), addr >= 0 else {
                throw UsageError("'\(r.pairs[i])' is not a flash address", hint: "write it as 0x1000 or 4096")
            }
            entries.removeAll { $0.address == addr }
            entries.append(PlanEntry(address: addr, name: r.pairs[i + 1], bytes: try FileIO.read(r.pairs[i + 1], limit: .flashContents),
                                     encrypted: r.encrypt))
        }
        guard !entries.isEmpty else { throw UsageError("nothing to check", hint: "give ADDR FILE pairs or --build-dir") }
        var offset = plan.partitionTableOffset
        if let t = r.partitionTableOffset {
            guard let v = NumberParsing.integer(t), v >= 0 else { throw UsageError("'\(t)' is not an offset") }
            offset = v
        }
        return LoadedPlan(plan: FlashPlan(entries: entries, options: plan.options, partitionTableOffset: offset,
                                          sdkconfig: plan.sdkconfig), chip: chipName)
    }

    static func mergedOptions(_ r: PreflightRequest, _ fromBuild: FlashOptions) -> FlashOptions {
        var o = fromBuild
        if let m = r.writeFlashMode { o.mode = FlashOptions.value(m) }
        if let f = r.writeFlashFreq { o.frequency = FlashOptions.value(f) }
        if let s = r.writeFlashSize { o.size = FlashOptions.value(s) }
        o.encryptAll = o.encryptAll || r.encrypt
        return o
    }

    /// Where the target facts come from: a chip read through its loader, a virtual device folder,
    /// or flags (flags and --efuse-summary override what was read).
    static func resolveTarget(_ r: PreflightRequest, buildChip: String?) throws -> TargetFacts {
        var facts: TargetFacts
        if let port = r.port {
            guard r.state == nil else { throw UsageError("give either --port or --state, not both") }
            facts = try ChipTarget.read(port: port, before: r.before)
        } else if let state = r.state {
            let device = try DeviceStore(directory: state).load()
            guard let spec = ChipSpec.named(device.description.chip) else {
                throw UsageError("unknown chip '\(device.description.chip)' in \(state)/device.json")
            }
            if let cells = device.cells, let map = EFuseFieldMap.named(spec.name) {
                // ESP32-S3/C3: the blocks through the chip's field map, as `--port` reads them.
                let summary = EFuseFieldMapSummary(words: cells, map: map)
                facts = TargetFacts(chip: spec, flashSize: device.description.flashSize,
                                    chipRevision: summary.majorRevision * 100 + summary.minorRevision,
                                    efuses: SecurityFuseFacts(words: cells, map: map), source: "state \(state)")
            } else {
                let ef = SecurityFuseFacts(esp32: device.efuses)
                facts = TargetFacts(chip: spec, flashSize: device.description.flashSize,
                                    chipRevision: device.description.chipRevision * 100 + (ef.waferVersionMinor ?? 0),
                                    efuses: ef, source: "state \(state)")
            }
        } else {
            let name = r.chip ?? buildChip ?? "esp32"
            guard let spec = ChipSpec.named(name) else {
                throw UsageError("unknown chip '\(name)'", hint: "choose one of: " + ChipSpec.all.map(\.name).joined(separator: ", "))
            }
            facts = TargetFacts(chip: spec, source: "flags")
        }
        if let flashSize = r.flashSize {
            guard let s = NumberParsing.size(flashSize), s > 0 else { throw UsageError("'\(flashSize)' is not a size", hint: "e.g. --flash-size 4MB") }
            facts.flashSize = s
        }
        if let chipRev = r.chipRevision {
            guard let rev = TargetFacts.parseRevision(chipRev) else { throw UsageError("'\(chipRev)' is not a chip revision", hint: "e.g. --chip-rev 3 or 3.1") }
            facts.chipRevision = rev
        }
        if let efuseSummary = r.efuseSummary {
            let bytes = try FileIO.read(efuseSummary, limit: .efuseJSON)
            guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
                throw UsageError(Diagnostic("not a JSON object", file: efuseSummary, hint: "write it with `espefuse summary --format json --file FILE`"))
            }
            do {
                // ESP32-S3/C3 summaries are read through the chip's field map.
                if let map = EFuseFieldMap.named(facts.chip.name) {
                    facts.efuses = try SecurityFuseFacts(espefuseSummary: obj, map: map)
                } else {
                    facts.efuses = try SecurityFuseFacts(espefuseSummary: obj)
                }
            } catch {
                throw FileContextError(file: efuseSummary, underlying: error)
            }
        }
        if let efuseFile = r.efuseFile {
            guard r.efuseSummary == nil else { throw UsageError("give either --efuse-summary or --efuse-file, not both") }
            guard EFuseFieldMap.named(facts.chip.name) != nil else {
                throw UsageError("--efuse-file reads ESP32-S3 / ESP32-C3 eFuse files; the target is \(facts.chip.displayName)",
                                 hint: "pass --chip esp32s3 or --chip esp32c3 (for an ESP32 use --efuse-summary or --port)")
            }
            let read = try SecurityFuseFacts.read(efuseFile: efuseFile, chip: facts.chip.name)
            facts.efuses = read.facts
            if r.chipRevision == nil { facts.chipRevision = read.summary.majorRevision * 100 + read.summary.minorRevision }
            facts.source += ", eFuses from \(efuseFile)"
        }
        return facts
    }
}
