import Diagnostics
import EFuse
import ESPCore
import Loader
import Transport

/// What the safety rules need from an ESP32-S3 / ESP32-C3 on a port, read through its ROM loader
/// (nothing written but the SPI1 registers of one RDID): the chip (GET_SECURITY_INFO's chip id,
/// else the magic word), every eFuse block through the chip's field map (read until two readings
/// agree, as the ESP32 path does), the flash size from the JEDEC id and the wafer revision.
public struct FieldMapTarget {
    public var row: FieldMapChipFacts
    public var map: EFuseFieldMap
    public var spec: ChipSpec
    public var words: EFuseBlockWords
    public var flashID: UInt32
    /// From the JEDEC id's capacity code; nil when the code is not a size.
    public var flashSize: Int?
    /// major·100 + minor.
    public var chipRevision: Int

    /// The facts the one rule engine (``SafetyRules``) checks a plan against.
    public func target(source: String) -> TargetFacts {
        TargetFacts(chip: spec, flashSize: flashSize, chipRevision: chipRevision,
                    efuses: SecurityFuseFacts(words: words, map: map), source: source)
    }

    /// Connects to the ROM loader on `port` and reads the chip. Throws
    /// ``FlasherError/unknownChip(magic:)`` for a chip without a field map (the ESP32 has its own path).
    public static func read(port portName: String, options: SessionOptions) throws -> FieldMapTarget {
        let port = try options.ports.open(portName)
        defer {
            if options.after == .hardReset, port.kind == .serial { try? ResetSequence.hardReset(port) }
            port.close()
        }
        let c = LoaderClient(port: port)
        c.timeout = options.timeout
        var synced = false
        let rounds = options.before == .noReset || port.kind != .serial ? 1 : 4
        for attempt in 0..<rounds where !synced {
            try ResetSequence.enterLoader(port, mode: options.before, attempt: attempt)
            do {
                try c.sync(attempts: 7)
                synced = true
            } catch FlasherError.noSync { continue }
        }
        guard synced else { throw FlasherError.noSync(port: portName, attempts: rounds * 7) }
        guard let row = ChipProbe.detectFieldMapChip(c), let map = EFuseFieldMap.named(row.name),
              let spec = ChipSpec.named(row.name) else {
            throw FlasherError.unknownChip(magic: (try? c.readRegister(ChipProbe.romMagicAddress)) ?? 0)
        }
        let words = try ChipProbe.readBlocks(c, map: map)
        try c.spiAttach()
        let id = try ChipProbe.flashID(c, row)
        let code = Int((id >> 16) & 0xFF)
        let summary = EFuseFieldMapSummary(words: words, map: map)
        return FieldMapTarget(row: row, map: map, spec: spec, words: words, flashID: id,
                              flashSize: (0x12...0x1C).contains(code) ? 1 << code : nil,
                              chipRevision: summary.majorRevision * 100 + summary.minorRevision)
    }
}

extension DeviceRunner {
    /// `flash` on a chip the flasher's session does not write to (ESP32-S3/C3): the plan is
    /// checked by the same rules against the chip's own facts on a fresh connection. A refused plan
    /// throws ``FlasherError/refused(codes:)`` (nothing written); a plan that passes is not written
    /// either — the session writes to ESP32 only so far — and says so.
    static func checkFieldMapChip(port: String, request: FlashRequest, options: SessionOptions,
                                  emit: @escaping (FlashEvent) -> Void, outcome: inout DeviceOutcome) throws {
        var readOptions = options
        readOptions.after = .noReset
        let chip = try FieldMapTarget.read(port: port, options: readOptions)
        emit(FlashEvent(device: port, event: "connected", detail: "\(chip.spec.displayName), ROM loader (eFuses read through its field map)"))
        let report = FlashSafety.check(request, target: chip.target(source: "port \(port)"))
        emitFindings(report, port: port, emit: emit)
        if report.refused {
            outcome.refused = report.blockingCodes
            throw FlasherError.refused(codes: report.blockingCodes)
        }
        throw FlasherError.gaveUp(port: port, why: "the plan passes the safety rules for this \(chip.spec.displayName), "
                                  + "but espforge's flasher writes to ESP32 only so far; nothing was written "
                                  + "(esptool write-flash can write this plan)")
    }

    static func emitFindings(_ plan: SafetyReport, port: String, emit: (FlashEvent) -> Void) {
        for f in plan.findings {
            let evidence = f.evidence.isEmpty ? "" : " (\(f.evidence.joined(separator: "; ")))"
            emit(FlashEvent(device: port, event: "finding", address: f.address,
                            detail: "\(f.code) \(f.severity.rawValue)\(f.overridden ? " (overridden by --force)" : ""): \(f.message)\(evidence) — \(f.explanation). Fix: \(f.fix)"))
        }
    }
}
