import ESPCore

/// A transport that knows the chip's crystal frequency (the eFuse program timing depends on it).
public protocol CrystalFrequencyReporting {
    var crystalHz: Int { get }
}

/// What happened to one planned change.
public struct EFuseChangeResult: Sendable, Equatable, Codable {
    public var name: String
    public var secret: Bool
    /// Every bit of the change read back as 1 after its program cycle.
    public var stuck: Bool
    public var missingBits: Int
    public var bits: Int
}

public struct EFuseProtectionResult: Sendable, Equatable, Codable {
    public var kind: EFuseProtectionChange.Kind
    public var bit: Int
    public var stuck: Bool
}

/// The outcome of executing a plan: what actually stuck, from read-back.
public struct EFuseBurnReport: Sendable, Equatable {
    public var changes: [EFuseChangeResult]
    public var protections: [EFuseProtectionResult]
    /// Program cycles issued, including retries.
    public var programCycles: Int
    public var decodeErrors: Bool
    /// The chip as read after the final reload.
    public var after: EFuseSnapshot
    /// Bits that read back as 1 although neither the chip had them before nor the plan asked for
    /// them, per block (empty when none): a burn that went wrong (e.g. a corrupted register write).
    public var strayBits: [Int: Int] = [:]

    public var allStuck: Bool {
        changes.allSatisfy(\.stuck) && protections.allSatisfy(\.stuck) && !decodeErrors && strayBits.isEmpty
    }
}

public enum EFuseClientError: Error, Equatable, Sendable {
    case chipChanged
    case controllerBusy
    case unsupportedCrystal(Int)
    /// The program registers did not read back as loaded (the link corrupts register writes).
    case programRegistersCorrupted(block: Int)
    /// No two consecutive readings of the eFuses agreed (the link corrupts register reads).
    case unstableReadings(Int)
}

extension EFuseClientError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case .chipChanged:
            return Diagnostic("the chip's eFuses changed after the plan was made; nothing was burned",
                              hint: "run the command again so the plan is made against the current state")
        case .controllerBusy:
            return Diagnostic("the eFuse controller did not finish its command (EFUSE_CMD never read 0)",
                              hint: "check the connection and retry; the chip may have been reset")
        case .unsupportedCrystal(let hz):
            return Diagnostic("crystal frequency \(hz) Hz has no eFuse timing settings", hint: "the ESP32 uses 26 MHz or 40 MHz crystals")
        case .unstableReadings(let n):
            return Diagnostic("no two consecutive readings of the chip's eFuses agreed (\(n) readings); nothing was burned on them",
                              hint: "the link corrupts data (check the cable, lower --baud); run the command again")
        case .programRegistersCorrupted(let block):
            return Diagnostic("the eFuse program registers for BLOCK\(block) did not read back as written (3 tries); that cycle was not burned",
                              hint: "the link corrupts data (check the cable, lower --baud); run the command again — what is already burned stays")
        }
    }
}

/// The ESP32 eFuse client: reads, decodes and burns through register access only.
public struct EFuseClient {
    public let access: any RegisterAccess
    public let layout: EFuseLayout
    public let crystalHz: Int
    /// How often EFUSE_CMD is polled before giving up (each poll is one register read).
    public var maxIdlePolls = 200
    /// Readings of the eFuses before two consecutive ones must have agreed (see ``snapshot()``).
    public var maxSnapshotReads = 6

    public init(access: any RegisterAccess, layout: EFuseLayout = .esp32, crystalHz: Int? = nil) {
        self.access = access
        self.layout = layout
        self.crystalHz = crystalHz ?? (access as? CrystalFrequencyReporting)?.crystalHz ?? 40_000_000
    }

    var base: UInt32 { layout.registerBase }

    /// The chip's eFuses as the link delivered them twice in a row. Register reads carry no
    /// checksum, so one flipped bit on a noisy link would look like a chip that changed (and stop a
    /// burn half way) or like a stray bit; a reading is taken again until two consecutive ones agree
    /// (at most `maxSnapshotReads` readings), which a random corruption does not repeat.
    public func snapshot() throws -> EFuseSnapshot {
        try agreeing { try EFuseSnapshot.read(from: access, layout: layout) }
    }

    /// Readings until two in a row agree (at most `maxSnapshotReads`), see ``RegisterReadings.agreeing(maxReadings:_:)``.
    func agreeing<T: Equatable>(_ read: () throws -> T) throws -> T {
        guard let value = try RegisterReadings.agreeing(maxReadings: maxSnapshotReads, read) else {
            throw EFuseClientError.unstableReadings(maxSnapshotReads)
        }
        return value
    }

    public func summary(revealKeys: Bool = false) throws -> EFuseSummary {
        EFuseSummary(snapshot: try snapshot(), layout: layout, revealKeys: revealKeys)
    }

    public func plan(_ requests: [EFuseBurnRequest]) throws -> EFuseBurnPlan {
        try EFuseBurnPlanner.plan(requests, snapshot: try snapshot(), layout: layout)
    }

    /// Burns `plan`: per cycle, writes the block's program registers (and zeros into the other
    /// blocks' so nothing stray is burned), sets the timing, CONF=0x5A5A + CMD=2, waits, reloads
    /// (CONF=0x5AA5 + CMD=1), checks DEC_STATUS and reads the block back; a cycle whose bits did not
    /// all stick is retried (3 tries). Refuses to start if the chip no longer matches the plan.
    public func execute(_ plan: EFuseBurnPlan) throws -> EFuseBurnReport {
        guard try access.stillReads(plan.before, { try snapshot() }) else { throw EFuseClientError.chipChanged }
        let (sel0, sel1, dac) = try timing()
        var observed = plan.before.blocks
        var cycles = 0
        var decodeErrors = false
        for (block, words) in plan.cycles {
            for _ in 0..<3 {
                // Register writes carry no checksum: a bit flipped on the way would be burned for
                // ever, so the program registers are read back and must hold exactly the plan.
                try loadProgramRegisters(block: block, words: words)
                try update(EFuseController.dacConfOffset, mask: 0xFF, value: dac)
                try update(EFuseController.clkOffset, mask: 0x00FF, value: sel0)
                try update(EFuseController.clkOffset, mask: 0xFF00, value: sel1 << 8)
                try access.writeRegister(base + EFuseController.confOffset, EFuseController.confProgram)
                try access.writeRegister(base + EFuseController.cmdOffset, 2)
                cycles += 1
                try reload()
                if try access.readRegister(base + EFuseController.decStatusOffset) & 0xFFF != 0 { decodeErrors = true }
                // Two agreeing readings, as for snapshots: a flipped bit here would count as a
                // bit that did not stick (another cycle) or as a stray one (a burn gone wrong).
                let readBack: [UInt32] = try agreeing {
                    try (0..<layout.blockWordCounts[block]).map { w in
                        try access.readRegister(base + layout.readRegisterOffsets[block] + UInt32(4 * w))
                    }
                }
                observed[block] = readBack
                if zip(readBack, words).allSatisfy({ $0 & $1 == $1 }) { break }
            }
            // Before the block is judged as not burned as planned (bits missing, or set that were
            // neither there nor planned): the link brought back in step and the block read again
            // (agreeing readings), see ``LinkResynchronizing``; real fuses read the same after.
            let planned = zip(plan.before.blocks[block], words + [UInt32](repeating: 0, count: max(0, plan.before.blocks[block].count - words.count)))
                .map { $0 | $1 }
            let suspicious = zip(observed[block], words).contains { $0 & $1 != $1 } || zip(observed[block], planned).contains { $0 & ~$1 != 0 }
            if suspicious, let link = access as? LinkResynchronizing {
                try link.resynchronize()
                observed[block] = try agreeing {
                    try (0..<layout.blockWordCounts[block]).map { w in
                        try access.readRegister(base + layout.readRegisterOffsets[block] + UInt32(4 * w))
                    }
                }
            }
        }
        try reload()
        let after = try snapshot()
        // A change stuck when all its bits were seen set right after its cycle (before any read
        // protection of the same plan hid them).
        let results = plan.changes.map { c -> EFuseChangeResult in
            let missing = zip(c.mask, observed[c.block]).reduce(0) { $0 + ($1.0 & ~$1.1).nonzeroBitCount }
            return EFuseChangeResult(name: c.name, secret: c.secret, stuck: missing == 0, missingBits: missing, bits: c.bitCount)
        }
        let prot = plan.protections.map { p in
            EFuseProtectionResult(kind: p.kind, bit: p.bit,
                                  stuck: p.kind == .write ? after.isWriteProtected(bit: p.bit) : after.isReadProtected(bit: p.bit))
        }
        // Anything set that was neither there before nor planned: right after each block's
        // cycle (before read protection hides it) and, for the other blocks, in the final read.
        var planned = plan.before.blocks
        for (block, words) in plan.cycles {
            for (w, v) in words.enumerated() where w < planned[block].count { planned[block][w] |= v }
        }
        var stray: [Int: Int] = [:]
        let burnedBlocks = Set(plan.cycles.map(\.0))
        for b in 0..<min(planned.count, after.blocks.count) {
            let seen = burnedBlocks.contains(b) ? observed[b] : after.blocks[b]
            let extra = zip(seen, planned[b]).reduce(0) { $0 + ($1.0 & ~$1.1).nonzeroBitCount }
            if extra > 0 { stray[b] = extra }
        }
        var report = EFuseBurnReport(changes: results, protections: prot, programCycles: cycles,
                                     decodeErrors: decodeErrors || after.decodeStatus != 0, after: after)
        report.strayBits = stray
        return report
    }

    /// Loads the program registers (`words` for `block`, zeros for every other block) and reads
    /// them back; tries three times before giving up without burning.
    func loadProgramRegisters(block: Int, words: [UInt32]) throws {
        for _ in 0..<3 {
            var good = true
            for b in 0..<layout.blockCount {
                let data = b == block ? words : [UInt32](repeating: 0, count: layout.blockWordCounts[b])
                for (w, v) in data.enumerated() {
                    try access.writeRegister(base + layout.writeRegisterOffsets[b] + UInt32(4 * w), v)
                }
            }
            check: for b in 0..<layout.blockCount {
                let data = b == block ? words : [UInt32](repeating: 0, count: layout.blockWordCounts[b])
                for (w, v) in data.enumerated()
                where try access.readRegister(base + layout.writeRegisterOffsets[b] + UInt32(4 * w)) != v {
                    good = false
                    break check
                }
            }
            if good { return }
        }
        throw EFuseClientError.programRegistersCorrupted(block: block)
    }

    /// CLK_SEL0, CLK_SEL1, DAC_CLK_DIV for the APB (= crystal) frequency.
    func timing() throws -> (UInt32, UInt32, UInt32) {
        switch (crystalHz + 500_000) / 1_000_000 {
        case 26: return (250, 255, 52)
        case 40: return (160, 255, 80)
        case 80: return (80, 128, 100)
        default: throw EFuseClientError.unsupportedCrystal(crystalHz)
        }
    }

    func update(_ offset: UInt32, mask: UInt32, value: UInt32) throws {
        let old = try access.readRegister(base + offset)
        try access.writeRegister(base + offset, (old & ~mask) | (value & mask))
    }

    func waitIdle() throws {
        for _ in 0..<maxIdlePolls where try access.readRegister(base + EFuseController.cmdOffset) & 3 == 0 { return }
        throw EFuseClientError.controllerBusy
    }

    /// CONF=0x5AA5, CMD=1: the read registers reflect the fuse array again.
    public func reload() throws {
        try waitIdle()
        try access.writeRegister(base + EFuseController.confOffset, EFuseController.confRead)
        try access.writeRegister(base + EFuseController.cmdOffset, 1)
        try waitIdle()
    }
}
