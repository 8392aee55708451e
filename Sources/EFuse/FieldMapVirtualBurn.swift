import ESPCore

/// The eFuse controller registers a program cycle leaves behind in the register space (what a
/// host-side burn through PGM_DATA / PGM_CHECK_VALUE / CONF / CMD writes, and what an
/// `espefuse --virt` file therefore holds after a burn): the eight PGM_DATA registers cleared,
/// the three PGM_CHECK_VALUE registers holding the Reed–Solomon check value of the last
/// BLOCK1…BLOCK10 programmed, CONF back at the read op code, the programming timing set up for
/// the 40 MHz crystal. Offsets from the controller base, from ``FieldMapControllerRegisters``.
public struct EFuseProgramRegisters: Sendable, Equatable {
    public let pgmData: Int
    public let checkValue: Int
    public let conf: Int
    public let cmd: Int
    /// Register offset and the bits a burn sets in it (DAC clock divider, power-on and power-off
    /// counts for a 40 MHz crystal).
    public let timing: [(offset: Int, bits: UInt32)]
    public let readOpCode: UInt32

    public static func == (a: Self, b: Self) -> Bool {
        a.pgmData == b.pgmData && a.checkValue == b.checkValue && a.conf == b.conf && a.cmd == b.cmd
            && a.readOpCode == b.readOpCode && a.timing.map(\.offset) == b.timing.map(\.offset)
            && a.timing.map(\.bits) == b.timing.map(\.bits)
    }

    public static func of(chip: String) -> EFuseProgramRegisters? { table[chip] }

    /// Built from ``FieldMapControllerRegisters`` (the one table of S3/C3 controller offsets) and
    /// the field values of ``FieldMapProgramTiming`` as espefuse's virtual file shows them.
    static let table: [String: EFuseProgramRegisters] = Dictionary(uniqueKeysWithValues: FieldMapControllerRegisters.all.map { r in
        (r.chip, EFuseProgramRegisters(pgmData: Int(r.programData), checkValue: Int(r.checkValue), conf: Int(r.conf), cmd: Int(r.cmd),
                                       timing: [(Int(r.dacConf), 0x28), (Int(r.writeTiming1), 0x3000), (Int(r.writeTiming2), 0x190)],
                                       readOpCode: r.readOpCode))
    })
}

/// One burn request on a field-map chip, as the `efuse` commands take them.
extension FieldMapBurnPlan {
    /// Prints the plan (never key material) under `eFuse burn plan for TITLE:` and says whether
    /// to stop before burning (``EFuseBurnRun/stopBeforeBurning``): nil means go on and burn.
    func show(title: String, confirmed: Bool, dryRun: Bool, emit: (String) -> Void) -> EFuseBurnRun.Outcome? {
        emit("eFuse burn plan for \(title):")
        lines.forEach { emit("  " + $0) }
        notes.forEach { emit("  note: " + $0) }
        return EFuseBurnRun.stopBeforeBurning(planIsEmpty: isEmpty, dryRun: dryRun, confirmed: confirmed,
                                              emptyLine: "nothing to burn", emit: emit)
    }
}

public enum FieldMapBurnOperation: Sendable {
    case burn([(name: String, value: String)])
    case burnKeys([FieldMapBurnPlanner.KeyRequest], noReadProtect: Bool, noWriteProtect: Bool)
    case burnKeyDigests([FieldMapBurnPlanner.KeyRequest], noWriteProtect: Bool)
    case writeProtect([String])
    case readProtect([String])

    public func plan(words: EFuseBlockWords, map: EFuseFieldMap) throws(FieldMapBurnError) -> FieldMapBurnPlan {
        switch self {
        case let .burn(pairs): return try FieldMapBurnPlanner.burnFields(pairs, words: words, map: map)
        case let .burnKeys(k, r, w): return try FieldMapBurnPlanner.burnKeys(k, noReadProtect: r, noWriteProtect: w, words: words, map: map)
        case let .burnKeyDigests(k, w): return try FieldMapBurnPlanner.burnKeyDigests(k, noWriteProtect: w, words: words, map: map)
        case let .writeProtect(n): return try FieldMapBurnPlanner.writeProtect(n, words: words, map: map)
        case let .readProtect(n): return try FieldMapBurnPlanner.readProtect(n, words: words, map: map)
        }
    }
}

extension EFuseVirtualFile {
    /// `file` (an `espefuse --virt` file) after `plan` is burned: the blocks' read registers as
    /// ``FieldMapBurnPlan/applied(to:map:hideReadProtected:)`` gives them, the program-cycle
    /// registers as ``EFuseProgramRegisters`` describes; every other byte as it was. An empty
    /// plan leaves the file as it is.
    public static func burned(_ file: [UInt8], plan: FieldMapBurnPlan, map: EFuseFieldMap,
                              name: String = "eFuse file") throws(EFuseFieldMapError) -> [UInt8] {
        let before = try decode(file, map: map, name: name)
        guard !plan.isEmpty else { return file }
        var regs = [UInt8](file.reversed())
        func put(_ offset: Int, _ v: UInt32) {
            for i in 0..<4 { regs[offset + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) }
        }
        func get(_ offset: Int) -> UInt32 { regs[offset..<(offset + 4)].loadLE(UInt32.self) }
        let after = plan.applied(to: before, map: map)
        for b in 0..<map.blockCount {
            let base = Int(map.readRegisterOffset(block: b))
            for w in 0..<map.blockWordCounts[b] { put(base + 4 * w, after.word(b, w)) }
        }
        if let p = EFuseProgramRegisters.of(chip: map.chip) {
            for t in p.timing { put(t.offset, get(t.offset) | t.bits) }
            for w in 0..<8 { put(p.pgmData + 4 * w, 0) }
            // Blocks are programmed highest first; the check value of the last coded one stays.
            if let last = plan.programOrder.last(where: { $0 != 0 }) {
                var data = plan.bits[last]
                data += [UInt32](repeating: 0, count: max(0, 8 - data.count))
                for (k, v) in EFuseReedSolomon.checkWords(data).enumerated() { put(p.checkValue + 4 * k, v) }
            }
            put(p.conf, p.readOpCode)
            put(p.cmd, 0)
        }
        return regs.reversed()
    }
}

/// `espforge efuse burn|burn-key|burn-key-digest|write-protect|read-protect --chip C --virt-file F`
/// as one library call: plan against the file as it is, show the plan (never key material),
/// stop unless confirmed, write the file atomically, read it back and say what stuck.
public enum FieldMapVirtualBurn {
    public static func run(_ operation: FieldMapBurnOperation, chip: String, file path: String, confirmed: Bool,
                           dryRun: Bool = false, emit: (String) -> Void) throws -> EFuseBurnRun.Outcome {
        guard let map = EFuseFieldMap.named(chip) else { throw EFuseFieldMapError.unknownChip(chip) }
        let file: [UInt8]
        do { file = try BoundedFile.read(path, limit: EFuseVirtualFile.limit) } catch { throw EFuseFieldMapError.file(error) }
        let words = try EFuseVirtualFile.decode(file, map: map, name: path)
        let plan = try operation.plan(words: words, map: map)
        if let stop = plan.show(title: "\(map.chip.uppercased()) virtual eFuse file \(path)", confirmed: confirmed, dryRun: dryRun, emit: emit) {
            return stop
        }
        let out = try EFuseVirtualFile.burned(file, plan: plan, map: map, name: path)
        // 0600: the file can hold keys left readable (USER, --no-read-protect).
        do { try AtomicFile.write(out, to: path, mode: AtomicFile.secretMode) } catch { throw EFuseFieldMapError.file(error) }
        let (_, back) = try EFuseVirtualFile.read(path, chip: chip)
        let lines = readBack(plan: plan, before: words, after: back, map: map)
        lines.lines.forEach(emit)
        if lines.allStuck { emit("all requested bits read back as burned") }
        return .burned(allStuck: lines.allStuck)
    }

    /// Per block: the planned bits that read back set; a read-protected block is checked through
    /// its RD_DIS bit (its data reads as zero, as on the chip).
    public static func readBack(plan: FieldMapBurnPlan, before: EFuseBlockWords, after: EFuseBlockWords,
                                map: EFuseFieldMap) -> (lines: [String], allStuck: Bool) {
        var lines: [String] = []
        var ok = true
        let rd = map.field(named: "RD_DIS").map { after.integer($0) } ?? 0
        for b in plan.programOrder {
            let name = map.blockNames[b]
            if let bit = map.blockReadProtectBits[b], rd & (1 << UInt64(bit)) != 0 {
                lines.append("\(name): read-protected now (RD_DIS bit \(bit)); its data reads as zero and cannot be checked")
                continue
            }
            let want = plan.bits[b].reduce(0) { $0 + $1.nonzeroBitCount }
            let got = zip(plan.bits[b], (0..<plan.bits[b].count).map { after.word(b, $0) })
                .reduce(0) { $0 + ($1.0 & $1.1).nonzeroBitCount }
            lines.append("\(name): \(got) of \(want) new bits read back set")
            if got != want { ok = false }
        }
        return (lines, ok)
    }
}
