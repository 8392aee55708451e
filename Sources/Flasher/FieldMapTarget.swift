import Crypto
import Diagnostics
import Foundation
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
    public static func read(port: String, options: SessionOptions) throws -> FieldMapTarget {
        try connect(port: port, options: options) { chip, _ in chip }
    }

    /// Connects, reads the chip and runs `body` on the open connection (ROM loader, SPI attached).
    public static func connect<T>(port portName: String, options: SessionOptions,
                                  _ body: (FieldMapTarget, LoaderClient) throws -> T) throws -> T {
        let port = try options.ports.open(portName)
        defer {
            if options.after == .hardReset, port.kind == .serial { try? ResetSequence.hardReset(port) }
            port.close()
        }
        let c = LoaderClient(port: port)
        c.timeout = options.timeout
        try c.enterLoaderAndSync(before: options.before, portName: portName)
        guard let row = ChipProbe.detectFieldMapChip(c), let map = EFuseFieldMap.named(row.name),
              let spec = ChipSpec.named(row.name) else {
            throw FlasherError.unknownChip(magic: (try? c.readRegister(ChipProbe.romMagicAddress)) ?? 0)
        }
        let words = try ChipProbe.readBlocks(c, map: map)
        try c.spiAttach()
        let id = try ChipProbe.flashID(c, row)
        let code = Int((id >> 16) & 0xFF)
        let summary = EFuseFieldMapSummary(words: words, map: map)
        let chip = FieldMapTarget(row: row, map: map, spec: spec, words: words, flashID: id,
                                  flashSize: (0x12...0x1C).contains(code) ? 1 << code : nil,
                                  chipRevision: summary.majorRevision * 100 + summary.minorRevision)
        return try body(chip, c)
    }
}

extension DeviceRunner {
    static func emitFindings(_ plan: SafetyReport, port: String, emit: (FlashEvent) -> Void) {
        for f in plan.findings {
            let evidence = f.evidence.isEmpty ? "" : " (\(f.evidence.joined(separator: "; ")))"
            emit(FlashEvent(device: port, event: "finding", address: f.address,
                            detail: "\(f.code) \(f.severity.rawValue)\(f.overridden ? " (overridden by --force)" : ""): \(f.message)\(evidence) — \(f.explanation). Fix: \(f.fix)"))
        }
    }
}
