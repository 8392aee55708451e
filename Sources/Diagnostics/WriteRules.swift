import ESPCore
import ImageFormat

/// The write rules: region geometry (RG), flash-parameter requests (FP) and a note on data for an
/// encrypted chip (FE004). They run with the PF rules in ``SafetyRules``; the checks both engines
/// used to make once each (signature, key digest, encryption, offsets, chip) are PF rules now —
/// docs/errors.md lists the old codes and the PF codes that replaced them.
public enum WriteRules {
    public static let rules: [SafetyRule] = [flashParamsHashed, flashParamsInvalid, assumedCiphertext,
                                             regionOverlap, regionUnaligned, regionEmpty]

    /// The flash sector: a write erases whole sectors.
    static let sectorSize = 0x1000

    // MARK: FP002

    static let flashParamsHashed = SafetyRule(
        code: "FP002", name: "flash-params-hashed",
        summary: "flash options would rewrite the header of an unsigned bootloader with an appended SHA-256 (--force recomputes it)") { ctx in
        guard let bl = ctx.bootloader, let img = bl.image, img.hashAppended, !bl.isSigned, !ctx.secureBootExpected,
              let chip = img.chip, let new = ctx.rewrittenHeader(for: bl) else { return [] }
        let built = Preflight.headerText(chip, img.flashModeCode, img.flashSizeFreq)
        let wanted = Preflight.headerText(chip, new.mode, new.sizeFreq)
        return [Finding(code: "FP002", severity: .error, rule: "flash-params-hashed",
            message: "refusing to change the flash parameters of \(bl.entry.name) at \(hex(bl.entry.address)), which carries an appended SHA-256",
            evidence: ["write options: \(ctx.plan.options.rewriteText)", "header now: \(built)", "header after the write: \(wanted)"],
            explanation: "the appended SHA-256 covers the header; rewriting it means the digest must be recomputed, so the image on flash is no longer the one that was built (and tested)",
            fix: "build the image with the wanted parameters, or pass --force to rewrite the header and recompute the SHA-256",
            file: bl.entry.name, address: bl.entry.address, overridable: true)]
    }

    // MARK: FP003

    static let flashParamsInvalid = SafetyRule(
        code: "FP003", name: "flash-params-invalid",
        summary: "a --flash-mode/--flash-freq/--flash-size value the chip does not know") { ctx in
        let chip = ctx.target.chip, o = ctx.plan.options
        var invalid: [String] = []
        if let m = o.mode, chip.flashMode(named: m) == nil { invalid.append("flash mode '\(m)'") }
        if let s = o.size, s.lowercased() != "detect", chip.flashSize(named: s) == nil { invalid.append("flash size '\(s)'") }
        if let f = o.frequency, chip.flashFrequency(named: f) == nil { invalid.append("flash frequency '\(f)'") }
        guard !invalid.isEmpty else { return [] }
        return [Finding(code: "FP003", severity: .error, rule: "flash-params-invalid",
            message: "\(invalid.joined(separator: ", ")) is not valid for \(chip.displayName)",
            explanation: "the header can only hold the chip's codes",
            fix: "use one of: modes \(chip.flashModes.map(\.name).joined(separator: "/")), sizes \(chip.flashSizes.prefix(5).map(\.name).joined(separator: "/"))…, freqs \(chip.flashFrequencies.map(\.name).joined(separator: "/"))")]
    }

    // MARK: FE004

    static let assumedCiphertext = SafetyRule(
        code: "FE004", name: "assumed-ciphertext",
        summary: "data for a chip with flash encryption on that is not recognisable plaintext (taken as ciphertext; a note)") { ctx in
        guard let ef = ctx.efuses, ef.flashEncryptionEnabled, !ctx.plan.options.encryptAll else { return [] }
        return ctx.entries.filter { !$0.entry.encrypted && !$0.isImage && $0.kind != .partitionTable && !$0.entry.bytes.isEmpty }.map { e in
            Finding(code: "FE004", severity: .info, rule: "assumed-ciphertext",
                    message: "\(e.entry.name) at \(hex(e.entry.address)) is not recognisable plaintext; assumed to be ciphertext for this chip's key",
                    explanation: "flash encryption is on (FLASH_CRYPT_CNT = \(hex(ef.flashCryptCount))): the chip decrypts what it reads",
                    fix: "", file: e.entry.name, address: e.entry.address)
        }
    }

    // MARK: RG001, RG003, RG004

    static let regionOverlap = SafetyRule(
        code: "RG001", name: "region-overlap",
        summary: "two files of the plan overlap") { ctx in
        let sorted = ctx.plan.entries
        var out: [Finding] = []
        for (r, next) in zip(sorted, sorted.dropFirst()) where next.address < r.end {
            out.append(Finding(code: "RG001", severity: .error, rule: "region-overlap",
                message: "\(r.name) (\(hex(r.address))-\(hex(r.end - 1))) overlaps \(next.name) starting at \(hex(next.address))",
                explanation: "the later write would overwrite part of the earlier one; the result depends on order",
                fix: "fix the addresses (check the partition table offsets)", file: next.name, address: next.address))
        }
        return out
    }

    static let regionUnaligned = SafetyRule(
        code: "RG003", name: "region-unaligned",
        summary: "a file does not start on a 4 KiB sector boundary") { ctx in
        ctx.plan.entries.filter { $0.address % sectorSize != 0 }.map { r in
            Finding(code: "RG003", severity: .error, rule: "region-unaligned",
                message: "\(r.name) at \(hex(r.address)) does not start on a 4 KiB sector boundary",
                explanation: "flash is erased in 4 KiB sectors, so the bytes before \(hex(r.address)) in that sector would be erased too",
                fix: "write at a multiple of 0x1000 (or merge the neighbouring data into one file)", file: r.name, address: r.address)
        }
    }

    static let regionEmpty = SafetyRule(
        code: "RG004", name: "region-empty",
        summary: "an empty file") { ctx in
        ctx.plan.entries.filter { $0.bytes.isEmpty }.map { r in
            Finding(code: "RG004", severity: .error, rule: "region-empty", message: "\(r.name) is empty",
                    explanation: "an empty region writes nothing and usually means a wrong file",
                    fix: "check the file name", file: r.name, address: r.address)
        }
    }
}
