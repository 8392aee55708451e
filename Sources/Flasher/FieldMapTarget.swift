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
        let chip = FieldMapTarget(row: row, map: map, spec: spec, words: words, flashID: id,
                                  flashSize: (0x12...0x1C).contains(code) ? 1 << code : nil,
                                  chipRevision: summary.majorRevision * 100 + summary.minorRevision)
        return try body(chip, c)
    }

    /// Writes the checked entries through the ROM loader (uncompressed 1 KiB blocks, as esptool
    /// does there), each region checked by the ROM's MD5 afterwards. FLASH_BEGIN erases whole
    /// sectors: the bytes of the first and last sector outside a region are read first and
    /// written back, so nothing outside the region changes.
    static func writeThroughROM(_ c: LoaderClient, report: SafetyReport, flashSize: Int, port: String,
                                skipUnchanged: Bool = false, emit: (FlashEvent) -> Void) throws -> [RegionResult] {
        try c.spiSetParams(size: flashSize)
        let sector = LoaderSectorSize, block = LoaderProtocol.romWriteBlock
        var results: [RegionResult] = []
        for entry in report.entries where !entry.bytes.isEmpty {
            let start = entry.address / sector * sector
            let end = (entry.address + entry.bytes.count + sector - 1) / sector * sector
            guard end <= flashSize else {
                throw FlasherError.gaveUp(port: port, why: "\(entry.name) ends past the \(flashSize >> 20)MB flash")
            }
            let want = Array(Insecure.MD5.hash(data: entry.bytes))
            let md5 = want.map { String(format: "%02x", $0) }.joined()
            if skipUnchanged, try c.flashMD5(address: entry.address, size: entry.bytes.count) == want {
                results.append(RegionResult(address: entry.address, size: entry.bytes.count, name: entry.name, outcome: .unchanged,
                                            md5: md5, compressed: false, payloadBytes: 0))
                emit(FlashEvent(device: port, event: "unchanged", address: entry.address, size: entry.bytes.count, detail: "md5 \(md5)"))
                continue
            }
            let head = entry.address > start ? try c.readFlash(address: start, size: entry.address - start) : []
            let tailStart = entry.address + entry.bytes.count
            let tail = end > tailStart ? try c.readFlash(address: tailStart, size: end - tailStart) : []
            let data = head + entry.bytes + tail
            let blocks = (data.count + block - 1) / block
            try c.retrying(.flashBegin, le(UInt32(data.count), UInt32(blocks), UInt32(block), UInt32(start)),
                           timeout: max(c.timeout, 40 * Double(data.count) / 1e6))
            var body = data
            body += [UInt8](repeating: 0xFF, count: blocks * block - data.count)
            for seq in 0..<blocks {
                let packet = CommandPacket.dataBlock(.flashData, sequence: UInt32(seq),
                                                     payload: Array(body[seq * block..<(seq + 1) * block]))
                try c.retrying(.flashData, packet.data, checksum: packet.checksum)
                emit(FlashEvent(device: port, event: "progress", address: entry.address, size: entry.bytes.count,
                                done: min(entry.bytes.count, max(0, (seq + 1) * block - head.count))))
            }
            let got = try c.flashMD5(address: entry.address, size: entry.bytes.count)
            guard got == want else {
                throw FlasherError.badResponse(command: "SPI_FLASH_MD5", why: "\(entry.name) at \(hex(entry.address)) reads back differently")
            }
            results.append(RegionResult(address: entry.address, size: entry.bytes.count, name: entry.name, outcome: .written,
                                        md5: md5, compressed: false, payloadBytes: blocks * block))
            emit(FlashEvent(device: port, event: "written", address: entry.address, size: entry.bytes.count, detail: "md5 \(md5)"))
        }
        return results
    }
}

extension DeviceRunner {
    /// `flash` on a chip the flasher's session does not connect to (ESP32-S3/C3): the plan is
    /// checked by the same rules against the chip's own facts on a fresh connection. A refused plan
    /// throws ``FlasherError/refused(codes:)`` before a byte is written; a plan that passes is
    /// written through the ROM loader and verified by MD5 (no stub, no link adaptation yet).
    static func checkFieldMapChip(port: String, request: FlashRequest, options: SessionOptions,
                                  emit: @escaping (FlashEvent) -> Void, outcome: inout DeviceOutcome) throws -> [RegionResult] {
        // `--after` applies to this connection (the ESP32 session's port is closed already).
        return try FieldMapTarget.connect(port: port, options: options) { chip, c in
            emit(FlashEvent(device: port, event: "connected",
                            detail: "\(chip.spec.displayName), ROM loader (eFuses read through its field map)"))
            let report = FlashSafety.check(request, target: chip.target(source: "port \(port)"))
            emitFindings(report, port: port, emit: emit)
            if report.refused {
                outcome.refused = report.blockingCodes
                throw FlasherError.refused(codes: report.blockingCodes)
            }
            guard !request.encrypt else {
                throw FlasherError.romUnsupported("--encrypt on \(chip.spec.displayName) (the plan passes the rules; nothing was written)")
            }
            // The ROM takes CHANGE_BAUDRATE as on ESP32 (`--baud`), after the facts were read.
            if options.baud != c.baud { try c.changeBaud(options.baud) }
            return try FieldMapTarget.writeThroughROM(c, report: report, flashSize: chip.flashSize ?? 4 << 20, port: port,
                                                     skipUnchanged: options.skipUnchanged, emit: emit)
        }
    }

    static func emitFindings(_ plan: SafetyReport, port: String, emit: (FlashEvent) -> Void) {
        for f in plan.findings {
            let evidence = f.evidence.isEmpty ? "" : " (\(f.evidence.joined(separator: "; ")))"
            emit(FlashEvent(device: port, event: "finding", address: f.address,
                            detail: "\(f.code) \(f.severity.rawValue)\(f.overridden ? " (overridden by --force)" : ""): \(f.message)\(evidence) — \(f.explanation). Fix: \(f.fix)"))
        }
    }
}
