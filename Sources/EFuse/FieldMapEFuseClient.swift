import ESPCore

/// The eFuse programming timing of the S3/C3 controllers (40 MHz crystal only): register field
/// masks and values espefuse 5.6.0 sets before a burn (facts read from its sources). The register
/// offsets come from ``FieldMapControllerRegisters`` (the one table of controller offsets).
public struct FieldMapProgramTiming: Sendable, Equatable {
    public enum Register: Sendable, Equatable {
        case dacConf, writeTiming1, writeTiming2

        public func offset(in r: FieldMapControllerRegisters) -> UInt32 {
            switch self {
            case .dacConf: return r.dacConf
            case .writeTiming1: return r.writeTiming1
            case .writeTiming2: return r.writeTiming2
            }
        }
    }

    public struct Setting: Sendable, Equatable {
        public let register: Register
        public let mask: UInt32
        public let value: UInt32
    }

    public let crystalHz: Int
    public let settings: [Setting]

    /// DAC_CONF: DAC_NUM (bits 16:9) = 0xFF and DAC_CLK_DIV (bits 7:0) = 0x28; WR_TIM_CONF1:
    /// PWR_ON_NUM (bits 23:8) = 0x3000; WR_TIM_CONF2: PWR_OFF_NUM (bits 15:0) = 0x190.
    public static let crystal40MHz = FieldMapProgramTiming(crystalHz: 40_000_000, settings: [
        Setting(register: .dacConf, mask: 0xFF << 9, value: 0xFF << 9),
        Setting(register: .dacConf, mask: 0xFF, value: 0x28),
        Setting(register: .writeTiming1, mask: 0xFFFF << 8, value: 0x3000 << 8),
        Setting(register: .writeTiming2, mask: 0xFFFF, value: 0x190),
    ])

    public static func forCrystal(_ hz: Int) -> FieldMapProgramTiming? {
        (hz + 500_000) / 1_000_000 == 40 ? .crystal40MHz : nil
    }
}

public enum FieldMapEFuseClientError: Error, Equatable, Sendable {
    case unknownChip(String)
    case unsupportedCrystal(chip: String, hz: Int)
}

extension FieldMapEFuseClientError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .unknownChip(c):
            return Diagnostic("chip '\(c)' has no eFuse field map", hint: "eFuses over a port are burned on the ESP32, ESP32-S3 and ESP32-C3")
        case let .unsupportedCrystal(chip, hz):
            return Diagnostic("crystal frequency \(hz) Hz has no eFuse timing settings on the \(chip.uppercased()); nothing was burned",
                              hint: "the \(chip.uppercased()) burns eFuses with a 40 MHz crystal only")
        }
    }
}

/// What one block of a plan did.
public struct FieldMapBlockResult: Sendable, Equatable, Codable {
    public var block: Int
    public var name: String
    /// New bits the plan asked for, and those that did not read back set right after the cycle.
    public var bits: Int
    public var missingBits: Int
    /// Set bits that were neither there before nor planned.
    public var strayBits: Int
    /// Program cycles spent on the block (a block whose bits did not all stick is burned again,
    /// three cycles at most, as espefuse does).
    public var cycles: Int
    /// Reed–Solomon / repeat errors the controller reported after the last cycle.
    public var codingErrors: Int
    /// Programmed but not read back: the same cycle burned a bit that makes the ROM loader stop
    /// answering register reads (the name of that field).
    public var unverified: String? = nil
    public var stuck: Bool { missingBits == 0 && strayBits == 0 && codingErrors == 0 }
}

/// The outcome of a live S3/C3 burn: what the chip read back.
public struct FieldMapBurnReport: Sendable, Equatable {
    public var blocks: [FieldMapBlockResult]
    public var programCycles: Int
    /// The chip as read after the final reload (read-protected blocks as zero); nil when the
    /// loader no longer answers (see ``FieldMapBlockResult/unverified``).
    public var after: EFuseBlockWords?
    /// Blocks read-protected once the plan was burned (their data reads as zero now).
    public var readProtectedAfter: [Int]
    /// Every block read back with all its bits (blocks not read back count as stuck: see ``verified``).
    public var allStuck: Bool { blocks.allSatisfy(\.stuck) }
    /// Every block was read back.
    public var verified: Bool { blocks.allSatisfy { $0.unverified == nil } }

    /// One line per block (never key material: counts only).
    public var lines: [String] {
        blocks.map { r in
            if let field = r.unverified {
                return "SENT \(r.name): \(r.bits) new bits programmed, not read back: \(field) is burned, so the ROM loader no longer answers register reads (expected; reset the chip to see the result)"
            }
            var s = "\(r.stuck ? "OK  " : "FAIL") \(r.name): \(r.bits - r.missingBits) of \(r.bits) new bits read back set"
            if r.strayBits > 0 { s += ", \(r.strayBits) unplanned bits set" }
            if r.codingErrors > 0 { s += ", controller reports \(r.codingErrors) coding errors" }
            if r.cycles > 1 { s += " (\(r.cycles) program cycles)" }
            if readProtectedAfter.contains(r.block), r.block != 0 { s += "; read-protected now, checked right after its cycle" }
            return s
        }
    }
}

/// The ESP32-S3 / ESP32-C3 eFuse client: reads and burns the blocks of an ``EFuseFieldMap``
/// through register access only (the ROM loader's READ_REG / WRITE_REG, a socket, an in-process
/// virtual device). The controller's register offsets are ``FieldMapControllerRegisters``.
///
/// A burn, per block of ``FieldMapBurnPlan/programOrder`` (highest block first, BLOCK0 with the
/// protection bits last), as the chip and espefuse do it: timing for the 40 MHz crystal, the
/// program registers cleared, the block's words into PGM_DATA0…, for BLOCK1…10 the Reed–Solomon
/// check value into PGM_CHECK_VALUE0…2 (both read back before programming: register writes carry
/// no checksum), CONF = program op code, CMD = PGM_CMD | block << 2, wait for CMD to clear, the
/// program registers cleared, CONF = read op code, CMD = READ_CMD, wait; then the controller's
/// error counts and the block read back. A block whose planned bits did not all read back set is
/// burned again (three cycles at most).
public struct FieldMapEFuseClient {
    public let access: any RegisterAccess
    public let map: EFuseFieldMap
    public let registers: FieldMapControllerRegisters
    public let crystalHz: Int
    /// How often CMD is polled before giving up (each poll is one register read).
    public var maxIdlePolls = 200
    /// Readings of the eFuses before two consecutive ones must have agreed.
    public var maxSnapshotReads = 6

    public init(access: any RegisterAccess, chip: String, crystalHz: Int? = nil) throws(FieldMapEFuseClientError) {
        guard let map = EFuseFieldMap.named(chip), let regs = FieldMapControllerRegisters.named(map.chip) else {
            throw .unknownChip(chip)
        }
        self.access = access
        self.map = map
        registers = regs
        self.crystalHz = crystalHz ?? (access as? CrystalFrequencyReporting)?.crystalHz ?? 40_000_000
    }

    var base: UInt32 { map.controllerBase }

    func agreeing<T: Equatable>(_ read: () throws -> T) throws -> T {
        guard let value = try RegisterReadings.agreeing(maxReadings: maxSnapshotReads, read) else {
            throw EFuseClientError.unstableReadings(maxSnapshotReads)
        }
        return value
    }

    func readBlock(_ b: Int) throws -> [UInt32] {
        let first = base + map.readRegisterOffset(block: b)
        return try (0..<map.blockWordCounts[b]).map { try access.readRegister(first + UInt32(4 * $0)) }
    }

    /// Every block as the read registers show it (read-protected blocks as zero), each block read
    /// until two consecutive readings of it agree: a flipped bit on the link does not repeat. (Per
    /// block: on a noisy link two clean readings of one block come far sooner than of all eleven.)
    public func snapshot() throws -> EFuseBlockWords {
        let blocks = try (0..<map.blockCount).map { b in try agreeing { try readBlock(b) } }
        return try EFuseBlockWords(map: map, blocks: blocks)
    }

    public func summary(revealKeys: Bool = false) throws -> EFuseFieldMapSummary {
        EFuseFieldMapSummary(words: try snapshot(), map: map, revealKeys: revealKeys)
    }

    /// The plan for `operation` against the chip as it is now, and that state.
    public func plan(_ operation: FieldMapBurnOperation) throws -> (plan: FieldMapBurnPlan, before: EFuseBlockWords) {
        let before = try snapshot()
        return (try operation.plan(words: before, map: map), before)
    }

    /// Burns `plan`, made against `before`. Refuses, before any register is written, when the
    /// crystal has no timing or the chip no longer reads as `before`.
    public func execute(_ plan: FieldMapBurnPlan, before: EFuseBlockWords) throws -> FieldMapBurnReport {
        guard let timing = FieldMapProgramTiming.forCrystal(crystalHz) else {
            throw FieldMapEFuseClientError.unsupportedCrystal(chip: map.chip, hz: crystalHz)
        }
        guard try access.stillReads(before, { try snapshot() }) else { throw EFuseClientError.chipChanged }
        var results: [FieldMapBlockResult] = []
        var total = 0
        for b in plan.programOrder {
            let want = plan.bits[b]
            var result = FieldMapBlockResult(block: b, name: map.blockNames[b], bits: want.reduce(0) { $0 + $1.nonzeroBitCount },
                                             missingBits: 0, strayBits: 0, cycles: 0, codingErrors: 0)
            var seen: [UInt32] = []
            for _ in 0..<3 {
                try setUp(timing)
                try loadProgramRegisters(block: b, words: want)
                try waitIdle()
                try access.writeRegister(base + registers.conf, registers.programOpCode)
                try access.writeRegister(base + registers.cmd, registers.programCommand | UInt32(b) << 2)
                result.cycles += 1
                total += 1
                do {
                    try waitIdle()
                    try clearProgramRegisters()
                    try reload()
                    result.codingErrors = try codingErrors(block: b)
                    // Two agreeing readings: a flipped bit would look like a bit that did not stick
                    // (another cycle) or a stray one.
                    seen = try agreeing { try readBlock(b) }
                } catch {
                    // After DIS_DOWNLOAD_MODE / ENABLE_SECURITY_DOWNLOAD the ROM checks the
                    // reloaded eFuses and stops answering READ_REG: burned, not verifiable.
                    guard let field = silencingField(plan, block: b) else { throw error }
                    result.unverified = field
                    results.append(result)
                    return FieldMapBurnReport(blocks: results, programCycles: total, after: nil, readProtectedAfter: [])
                }
                if zip(seen, want).allSatisfy({ $0 & $1 == $1 }) && result.codingErrors == 0 { break }
            }
            let planned = (0..<want.count).map { before.word(b, $0) | want[$0] }
            func judge() {
                result.missingBits = zip(want, seen).reduce(0) { $0 + ($1.0 & ~$1.1).nonzeroBitCount }
                result.strayBits = zip(seen, planned).reduce(0) { $0 + ($1.0 & ~$1.1).nonzeroBitCount }
            }
            judge()
            if result.missingBits > 0 || result.strayBits > 0, let link = access as? LinkResynchronizing {
                // Before a block is reported as not burned as planned: the link brought back in
                // step and the block read again (agreeing readings). Replies that answered the
                // wrong request agree with each other until then; real fuses read the same after.
                try link.resynchronize()
                seen = try agreeing { try readBlock(b) }
                judge()
            }
            results.append(result)
        }
        let after: EFuseBlockWords
        do {
            try reload()
            after = try snapshot()
        } catch {
            guard silencingField(plan, block: 0) != nil else { throw error }
            return FieldMapBurnReport(blocks: results, programCycles: total, after: nil, readProtectedAfter: [])
        }
        let rd = map.field(named: "RD_DIS").map { after.integer($0) } ?? 0
        let hidden = map.blockReadProtectBits.enumerated().compactMap { b, bit in
            bit.flatMap { rd & (1 << UInt64($0)) != 0 ? b : nil }
        }
        return FieldMapBurnReport(blocks: results, programCycles: total, after: after, readProtectedAfter: hidden)
    }

    /// Fields that make the ROM loader stop answering register reads once burned and reloaded.
    public static let loaderSilencingFields = ["DIS_DOWNLOAD_MODE", "ENABLE_SECURITY_DOWNLOAD"]

    /// The first loader-silencing field `plan` burns in `block`, if any.
    func silencingField(_ plan: FieldMapBurnPlan, block: Int) -> String? {
        Self.loaderSilencingFields.first { name in
            guard let f = map.field(named: name), f.block == block else { return false }
            return (0..<f.width).contains { i in
                let abs = f.startBit + i
                return abs / 32 < plan.bits[block].count && plan.bits[block][abs / 32] & (1 << UInt32(abs % 32)) != 0
            }
        }
    }

    /// espefuse's controller setup before each cycle: timing, program registers cleared.
    func setUp(_ timing: FieldMapProgramTiming) throws {
        for s in timing.settings {
            let address = base + s.register.offset(in: registers)
            let old = try access.readRegister(address)
            try access.writeRegister(address, (old & ~s.mask) | (s.value & s.mask))
        }
        try clearProgramRegisters()
    }

    func clearProgramRegisters() throws {
        try waitIdle()
        for w in 0..<8 { try access.writeRegister(base + registers.programData + UInt32(4 * w), 0) }
    }

    /// The block's words into PGM_DATA (and, for BLOCK1…10, the check value into
    /// PGM_CHECK_VALUE), read back until they hold exactly that (three tries).
    func loadProgramRegisters(block: Int, words: [UInt32]) throws {
        var regs: [(UInt32, UInt32)] = words.enumerated().map { (registers.programData + UInt32(4 * $0.offset), $0.element) }
        if block != 0 {
            let data = words + [UInt32](repeating: 0, count: max(0, 8 - words.count))
            regs += EFuseReedSolomon.checkWords(data).enumerated().map { (registers.checkValue + UInt32(4 * $0.offset), $0.element) }
        }
        for _ in 0..<3 {
            for (off, v) in regs { try access.writeRegister(base + off, v) }
            var good = true
            for (off, v) in regs where try access.readRegister(base + off) != v {
                good = false
                break
            }
            if good { return }
        }
        throw EFuseClientError.programRegistersCorrupted(block: block)
    }

    /// The controller's error count for `block` after a reload: BLOCK0's repeat-error bits, the
    /// RS error count (3 bits) and fail bit of BLOCK1…10 (4 bits per block in RD_RS_ERR0/1).
    func codingErrors(block: Int) throws -> Int {
        if block == 0 {
            return try registers.repeatErrors.reduce(0) { $0 + (try access.readRegister(base + $1)).nonzeroBitCount }
        }
        let i = block - 1, reg = registers.rsErrors[min(i / 8, registers.rsErrors.count - 1)]
        let v = (try access.readRegister(base + reg) >> UInt32(4 * (i % 8))) & 0xF
        return Int(v & 7) + (v & 8 != 0 ? 1 : 0)
    }

    /// Waits until CMD shows neither READ_CMD nor PGM_CMD (two idle readings in a row, as
    /// espefuse checks: the first may come while the eFuse clock settles).
    func waitIdle() throws {
        let busy = registers.programCommand | registers.readCommand
        var idle = 0
        for _ in 0..<maxIdlePolls {
            if try access.readRegister(base + registers.cmd) & busy == 0 {
                idle += 1
                if idle == 2 { return }
            } else {
                idle = 0
            }
        }
        throw EFuseClientError.controllerBusy
    }

    /// CONF = read op code, CMD = READ_CMD: the read registers reflect the fuses again.
    public func reload() throws {
        try waitIdle()
        try access.writeRegister(base + registers.conf, registers.readOpCode)
        try access.writeRegister(base + registers.cmd, registers.readCommand)
        try waitIdle()
    }
}

/// `espforge efuse burn|burn-key|burn-key-digest|write-protect|read-protect --port P` on an
/// ESP32-S3/C3 as one library call: plan against the chip as it reads now, show the plan (never
/// key material), stop unless confirmed, burn, read back and say what stuck.
public enum FieldMapPortBurn {
    public static func run(_ operation: FieldMapBurnOperation, client: FieldMapEFuseClient, portName: String,
                           confirmed: Bool, dryRun: Bool = false, emit: (String) -> Void) throws -> EFuseBurnRun.Outcome {
        let (plan, before) = try client.plan(operation)
        if let stop = plan.show(title: "\(client.map.chip.uppercased()) on \(portName)", confirmed: confirmed, dryRun: dryRun, emit: emit) {
            return stop
        }
        let report = try client.execute(plan, before: before)
        report.lines.forEach(emit)
        if !report.verified {
            emit("burned as planned; the chip no longer answers in download mode, so what stuck cannot be read back here")
        } else if report.allStuck {
            emit("all requested bits read back as burned")
        }
        return .burned(allStuck: report.allStuck)
    }
}
