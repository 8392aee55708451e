import ESPCore
import FlashEncryption
import ImageFormat
import Partitions
import SecureBoot

/// One safety rule: a stable code, a name and a check. Rules are data: add one to
/// ``Preflight/rules`` or ``WriteRules/rules`` and give it a new code (never reuse one).
public struct SafetyRule: Sendable {
    public let code: String
    public let name: String
    /// One line: what the rule looks for (shown by `--list-rules`).
    public let summary: String
    public let check: @Sendable (PreflightContext) -> [Finding]

    public init(code: String, name: String, summary: String, check: @escaping @Sendable (PreflightContext) -> [Finding]) {
        self.code = code
        self.name = name
        self.summary = summary
        self.check = check
    }
}

public typealias PreflightRule = SafetyRule

/// A complete dry run of the first power-on, provided by the boot simulator (wired in by the
/// command-line tool): apply `plan` to a copy of the device state in `stateDirectory` (never
/// changing it) and power the copy on, following the reset after in-place encryption.
public protocol FirstBootSimulating: Sendable {
    func simulateFirstBoot(plan: FlashPlan, stateDirectory: String, sdkconfig: SDKConfig?) throws -> FirstBootPrediction
}

/// What the simulator predicts for the first power-ons.
public struct FirstBootPrediction: Sendable, Codable {
    /// Console output per power cycle (the first power-on, then the reset after in-place encryption).
    public var bootLogs: [String]
    /// The app that ended up running, or nil when none booted.
    public var bootedPartition: String?
    /// eFuses the bootloader burned, as `NAME before→after` (keys are never shown).
    public var burnedEFuses: [String]
    /// Regions encrypted in place, as `name (0xOFFSET, 0xLENGTH bytes)`.
    public var encryptedRegions: [String]
    /// `app-started`, `rom-halted`, `no-bootable-app` or `bootloader-halted`.
    public var result: String?
    /// Why no app started (nil when one did).
    public var reason: String?
    /// The last ESP-IDF error code the bootloader reported (e.g. 8194).
    public var errorCode: Int?
    public var secureBootEnabled: Bool?
    public var flashEncryptionEnabled: Bool?
    /// How each plan entry was written to the copy (plaintext, encrypted, header rewritten).
    public var writes: [String]
    /// With no sdkconfig: the bootloader options inferred from the plan, one sentence each.
    public var assumptions: [String] = []

    public init(bootLogs: [String], bootedPartition: String?, burnedEFuses: [String], encryptedRegions: [String],
                result: String? = nil, reason: String? = nil, errorCode: Int? = nil, secureBootEnabled: Bool? = nil,
                flashEncryptionEnabled: Bool? = nil, writes: [String] = []) {
        self.bootLogs = bootLogs
        self.bootedPartition = bootedPartition
        self.burnedEFuses = burnedEFuses
        self.encryptedRegions = encryptedRegions
        self.result = result
        self.reason = reason
        self.errorCode = errorCode
        self.secureBootEnabled = secureBootEnabled
        self.flashEncryptionEnabled = flashEncryptionEnabled
        self.writes = writes
    }
}

/// The PF rules: static checks of a flash plan against a target, before anything is written.
/// They run with the write rules (``WriteRules``) in the one engine, ``SafetyRules``.
public enum Preflight {
    /// The PF rules, in code order.
    public static let rules: [PreflightRule] = [
        signedHeaderRewrite, headerFlashSize, signatureInvalid, keyMismatch, efuseKeyDigest,
        bootloaderOverlapsTable, tableOffset, pastFlashEnd, appTooLarge, minRevision,
        secureBootUnsupported, plaintextToEncrypted, nvsFlags, flashCryptCount, downloadMode,
        wrongOffset, unsignedUnderSecureBoot, chipMismatch,
    ] + KeyPurposeRules.rules

    static func paramText(_ chip: ChipSpec, _ mode: UInt8, _ b3: UInt8) -> String {
        HeaderFlashParameters(modeCode: mode, sizeFreqByte: b3, chip: chip).description
    }

    /// `DIO 40m 2MB (byte 2 = 0x02, byte 3 = 0x10)`: the values and the header bytes that hold them.
    static func headerText(_ chip: ChipSpec, _ mode: UInt8, _ b3: UInt8) -> String {
        paramText(chip, mode, b3) + " (byte 2 = " + NumberParsing.hex(mode, width: 2) + ", byte 3 = " + NumberParsing.hex(b3, width: 2) + ")"
    }

    // MARK: PF001

    static let signedHeaderRewrite = PreflightRule(
        code: "PF001", name: "signed-header-rewrite",
        summary: "flash options would rewrite the header of a signed bootloader (the seed)") { ctx in
        guard let bl = ctx.bootloader, let img = bl.image, let chip = img.chip else { return [] }
        if ctx.headerSizeDetectUnknown, bl.isSigned || ctx.secureBootExpected, ctx.rewrittenHeader(for: bl) == nil {
            return [Finding(code: "PF001", severity: .error, rule: "signed-header-rewrite",
                message: "--flash-size detect would put the chip's flash size into the header of the signed bootloader at \(hex(bl.entry.address))",
                evidence: ["header now: \(paramText(chip, img.flashModeCode, img.flashSizeFreq))", "write options: --flash-size detect"],
                explanation: "on every board whose flash is not \(chip.flashSize(code: img.flashSizeCode)?.name ?? "the signed size") the header changes after signing and the signature no longer verifies: the same files work on one board and fail on another.",
                fix: "write signed images with --flash-size keep; build and sign one bootloader per flash size",
                file: bl.entry.name, address: bl.entry.address)]
        }
        guard let new = ctx.rewrittenHeader(for: bl) else { return [] }
        let before = headerText(chip, img.flashModeCode, img.flashSizeFreq)
        let after = headerText(chip, new.mode, new.sizeFreq)
        let evidence = ["write options: \(ctx.plan.options.rewriteText)",
                        "header now: \(before)", "header after the write: \(after)"]
        if bl.isSigned || ctx.secureBootExpected {
            return [Finding(code: "PF001", severity: .error, rule: "signed-header-rewrite",
                message: "the flash options \(ctx.plan.options.rewriteText) would rewrite header bytes 2..3 of the \(bl.isSigned ? "signed " : "")bootloader at \(hex(bl.entry.address))",
                evidence: evidence + (bl.isSigned ? ["signature block 0 covers header bytes 2..3"] : ["Secure Boot V2 is configured: the bootloader must stay as signed"]),
                explanation: "esptool rewrites the flash mode/frequency/size bytes of an image written at the bootloader offset (and, since v4, its appended SHA-256) but knows nothing of Secure Boot signatures: the signed digest no longer matches, the first boot logs \"Sig block 0 invalid: Image digest does not match\" and \"Secure Boot v2 failed (8194)\", and Secure Boot is never enabled.",
                fix: "write signed images with --flash-mode keep --flash-freq keep --flash-size keep (idf.py does for signed builds); if boards differ in flash size, build and sign one bootloader per flash size (CONFIG_ESPTOOLPY_FLASHSIZE) instead of retargeting a signed one",
                file: bl.entry.name, address: bl.entry.address)]
        }
        // An appended SHA-256 covers the header: FP002 (write rules) decides.
        guard !img.hashAppended else { return [] }
        return [Finding(code: "PF001", severity: .info, rule: "signed-header-rewrite",
            message: "the bootloader header at \(hex(bl.entry.address)) will be rewritten by the flash options (unsigned image, harmless)",
            evidence: evidence,
            explanation: "the image is neither signed nor hashed, so header bytes 2..3 may be adapted; nothing signed is affected.",
            fix: "nothing to do; sign only after the header is final", file: bl.entry.name, address: bl.entry.address)]
    }

    // MARK: PF002

    static let headerFlashSize = PreflightRule(
        code: "PF002", name: "header-flash-size",
        summary: "image header flash size larger than the target's flash") { ctx in
        guard let size = ctx.target.flashSize else { return [] }
        var out: [Finding] = []
        for e in ctx.entries where e.kind == .bootloaderImage || e.kind == .appImage {
            guard let img = e.image, let chip = img.chip else { continue }
            let effective = ctx.rewrittenHeader(for: e) ?? (img.flashModeCode, img.flashSizeFreq)
            guard let headerSize = chip.flashSize(code: effective.1 & 0xF0), headerSize.value > size else { continue }
            out.append(Finding(code: "PF002", severity: .error, rule: "header-flash-size",
                message: "the \(e.kind.rawValue) at \(hex(e.entry.address)) says the flash is \(headerSize.name), the target has \(size >> 20)MB",
                evidence: ["header byte 3 = \(hex(effective.1)) (size nibble \(hex(effective.1 & 0xF0)) = \(headerSize.name))",
                           "target flash: \(size) bytes (\(ctx.target.source))"],
                explanation: "the bootloader and the app configure the flash from this header; a size larger than the chip lets partitions and reads run past the real end and makes the app's flash probe fail.",
                fix: e.isSigned
                    ? "build and sign this image for \(size >> 20)MB (CONFIG_ESPTOOLPY_FLASHSIZE=\"\(size >> 20)MB\"); a signed header cannot be changed without re-signing"
                    : "rebuild with CONFIG_ESPTOOLPY_FLASHSIZE=\"\(size >> 20)MB\", or retarget the unsigned image: espforge image retarget --flash-size \(size >> 20)MB",
                file: e.entry.name, address: e.entry.address))
        }
        return out
    }

    // MARK: PF003

    static let signatureInvalid = PreflightRule(
        code: "PF003", name: "signature-invalid",
        summary: "Secure Boot V2 signature block damaged, digest mismatch or RSA-PSS failure") { ctx in
        var out: [Finding] = []
        for e in ctx.entries where e.isSigned {
            // The blocks the chip checks (ESP32: block 0; S3/C3: up to three, to the first damaged one).
            guard let inspection = e.signature, !inspection.checks.isEmpty else { continue }
            var problems: [String] = []
            var valid: [Int] = []
            var anyDigestMismatch = false
            for check in inspection.checks.prefix(ctx.honouredBlocks) {
                let i = check.index
                var p: [String] = []
                if !check.block.crcValid { p.append("block \(i) CRC32 stored \(hex(check.block.storedCRC)), computed \(hex(check.block.computedCRC))") }
                if !check.digestMatches {
                    p.append("block \(i) image digest \(check.block.imageDigest.hexString.prefix(16))… ≠ SHA-256 of the content \(check.contentDigest.bytes.hexString.prefix(16))…")
                    anyDigestMismatch = true
                }
                if check.signatureValid == false { p.append("block \(i) RSA-PSS/ECDSA signature does not verify with the block's key") }
                if p.isEmpty { valid.append(i) } else { problems += p }
            }
            guard !problems.isEmpty else { continue }
            var explanation = "the bootloader (and, once Secure Boot is on, the ROM) rejects this image: \"Sig block 0 invalid\" and error 8194 (ESP_ERR_IMAGE_INVALID)."
            var fix = "sign the final image again (espforge secure-boot sign) and flash exactly that file"
            if anyDigestMismatch {
                let forensic = HeaderForensics.analyzeSigned(e.entry.bytes)
                if case let .headerRewritten(built, found, rehashed) = forensic.verdict {
                    problems.append("header rewritten after signing: built as \(built), found as \(found)"
                                    + (rehashed ? "; the appended SHA-256 was recomputed too" : "; the appended SHA-256 still matches the original header"))
                    explanation += " The content matches the signature exactly when header bytes 2..3 are put back: the flash parameters were changed after signing."
                    fix = "flash the image as it was signed (--flash-size keep --flash-mode keep --flash-freq keep); for a different flash size build and sign a separate image"
                }
            }
            if !valid.isEmpty {
                // Another checked block verifies (S3/C3): the image can still boot through it.
                out.append(Finding(code: "PF003", severity: .warning, rule: "signature-invalid",
                    message: "a signature block of the \(e.kind.rawValue) at \(hex(e.entry.address)) is not valid; block \(valid.map(String.init).joined(separator: ", ")) still verifies",
                    evidence: problems,
                    explanation: "the chip skips a block that does not verify and tries the next, so the image verifies through a valid block whose key is trusted; with SECURE_BOOT_AGGRESSIVE_REVOKE a failing block of a trusted key revokes that key (PF024).",
                    fix: fix, file: e.entry.name, address: e.entry.address, overridable: true))
                continue
            }
            out.append(Finding(code: "PF003", severity: .error, rule: "signature-invalid",
                message: "the signature of the \(e.kind.rawValue) at \(hex(e.entry.address)) is not valid",
                evidence: problems, explanation: explanation, fix: fix, file: e.entry.name, address: e.entry.address,
                overridable: !ctx.secureBootEnabled))
        }
        return out
    }

    // MARK: PF004

    static let keyMismatch = PreflightRule(
        code: "PF004", name: "key-mismatch",
        summary: "bootloader and app signed with different keys") { ctx in
        // The bootloader trusts the keys of the blocks the chip honours (ESP32: block 0 only).
        guard let bl = ctx.bootloader, case let blKeys = ctx.honouredKeyDigests(bl), !blKeys.isEmpty else { return [] }
        var out: [Finding] = []
        for app in ctx.apps where app.isSigned {
            let appKeys = app.signature?.checks.map(\.block.keyDigest) ?? []
            if appKeys.contains(where: { blKeys.contains($0) }) { continue }
            out.append(Finding(code: "PF004", severity: .error, rule: "key-mismatch",
                message: "the app at \(hex(app.entry.address)) is not signed with the bootloader's key",
                evidence: blKeys.enumerated().map { "bootloader block \($0.offset) key digest \($0.element.hexString)" }
                    + appKeys.enumerated().map { "app block \($0.offset) key digest \($0.element.hexString)" },
                explanation: "on first boot the bootloader requires one of the app's signature blocks to use a key whose digest matches its own (\"No application key digest matches the bootloader key digest.\"), and fails with Secure Boot v2 failed (-1).",
                fix: "sign bootloader and every app with the same key (espforge secure-boot sign --key KEY.pem)",
                file: app.entry.name, address: app.entry.address))
        }
        return out
    }

    // MARK: PF005

    static let efuseKeyDigest = PreflightRule(
        code: "PF005", name: "efuse-key-digest",
        summary: "signing key digest differs from the digest burned in BLK2 (or BLK2 is read-protected)") { ctx in
        // The ESP32's one digest in BLK2; key-purpose chips are checked by PF019-PF021.
        guard let ef = ctx.efuses, ef.keyBlocks == nil, ef.block2Used || ef.absDone1 else { return [] }
        var out: [Finding] = []
        for e in ctx.entries where e.isSigned && (e.kind == .bootloaderImage || e.kind == .appImage) {
            guard let keys = e.signature?.checks.map(\.block.keyDigest), !keys.isEmpty else { continue }
            if ef.block2ReadProtected {
                out.append(Finding(code: "PF005", severity: .error, rule: "efuse-key-digest",
                    message: "BLK2 (Secure Boot digest) is read-protected, so no signature can be checked against it",
                    evidence: ["RD_DIS bit 1 set"],
                    explanation: "a read-protected BLK2 reads as zeros; every signature check fails and the chip cannot boot signed images.",
                    fix: "this chip cannot run Secure Boot V2; set it aside", file: e.entry.name, address: e.entry.address,
                    overridable: !ctx.secureBootEnabled))
                break
            }
            if !keys.contains(ef.block2) {
                out.append(Finding(code: "PF005", severity: .error, rule: "efuse-key-digest",
                    message: "the \(e.kind.rawValue) at \(hex(e.entry.address)) is signed with a key whose digest is not the one burned in BLK2",
                    evidence: ["BLK2 = \(ef.block2.hexString)"] + keys.enumerated().map { "block \($0.offset) key digest = \($0.element.hexString)" },
                    explanation: "the ROM (for the bootloader) and the bootloader (for apps) only accept signatures made with the key whose SHA-256 digest is in BLK2: \"Sig block 0 signed with untrusted key\" and \"secure boot verification failed\" from the ECO3 ROM, or error 8194.",
                    fix: "sign with the key matching BLK2 (espforge secure-boot digest --key KEY.pem must print the BLK2 value)",
                    file: e.entry.name, address: e.entry.address, overridable: !ctx.secureBootEnabled))
            }
        }
        return out
    }

    // MARK: PF006

    static let bootloaderOverlapsTable = PreflightRule(
        code: "PF006", name: "bootloader-overlaps-table",
        summary: "bootloader (with its signature sector) runs into the partition table") { ctx in
        guard let bl = ctx.bootloader, bl.isImage else { return [] }
        let start = bl.entry.address
        var length = bl.entry.bytes.count
        var note = "bootloader file is \(length) bytes"
        if !bl.isSigned, ctx.secureBootExpected, let img = bl.image {
            length = ((img.imageEnd + 4095) & ~4095) + SignatureSector.size
            note = "after signing the bootloader will be \(length) bytes (image padded to 4 KiB + 4096-byte signature sector)"
        }
        guard start + length > ctx.tableOffset else { return [] }
        let known = ctx.tableOffsetKnown
        return [Finding(code: "PF006", severity: known ? .error : .warning, rule: "bootloader-overlaps-table",
            message: "the bootloader at \(hex(start)) ends at \(hex(start + length)), past the partition table at \(hex(ctx.tableOffset))"
                + (known ? "" : " (the default offset; the plan neither configures nor writes a table)"),
            evidence: [note, "space before the table: \(ctx.tableOffset - start) bytes"]
                + (known ? [] : ["pass --partition-table-offset (CONFIG_PARTITION_TABLE_OFFSET) to check against the real one"]),
            explanation: "writing it overwrites the partition table (or the table overwrites the signature sector); first-boot encryption also refuses a bootloader longer than the space before the table (ESP_ERR_INVALID_SIZE).",
            fix: "move the partition table up (CONFIG_PARTITION_TABLE_OFFSET=0x10000 and shift the partitions), or shrink the bootloader (log level, optimisation for size)",
            file: bl.entry.name, address: start)]
    }

    // MARK: PF007

    static let tableOffset = PreflightRule(
        code: "PF007", name: "partition-table-offset",
        summary: "partition table offset misaligned, too low, or not where the bootloader looks") { ctx in
        var out: [Finding] = []
        let off = ctx.tableOffset
        if off % PartitionTable.sectorSize != 0 || off < ctx.target.chip.bootloaderOffset + PartitionTable.sectorSize {
            out.append(Finding(code: "PF007", severity: .error, rule: "partition-table-offset",
                message: "partition table offset \(hex(off)) is \(off % 0x1000 != 0 ? "not a multiple of 0x1000" : "below the end of the first bootloader sector")",
                evidence: ["CONFIG_PARTITION_TABLE_OFFSET / table address = \(hex(off))"],
                explanation: "the table occupies one 4 KiB flash sector; an unaligned offset shares a sector with other data and the bootloader build rejects it.",
                fix: "use a 4 KiB aligned offset above the bootloader, e.g. 0x8000 (default) or 0x10000",
                address: off))
        }
        if let at = ctx.tableEntryAddress, ctx.tableOffsetConfigured, at != off {
            out.append(Finding(code: "PF007", severity: .error, rule: "partition-table-offset",
                message: "the plan writes the partition table at \(hex(at)), but the bootloader was built to read it at \(hex(off))",
                evidence: ["CONFIG_PARTITION_TABLE_OFFSET=\(hex(off))", "partition table file written at \(hex(at))"],
                explanation: "the bootloader finds no table (\"Failed to verify partition table\") and boots nothing.",
                fix: "write the table at \(hex(off)), or rebuild with CONFIG_PARTITION_TABLE_OFFSET=\(hex(at))",
                address: at))
        }
        return out
    }

    // MARK: PF008

    static let pastFlashEnd = PreflightRule(
        code: "PF008", name: "past-flash-end",
        summary: "partitions or written files past the end of flash") { ctx in
        guard let (size, source) = ctx.flashSize else { return [] }
        var out: [Finding] = []
        for p in ctx.partitionTable?.entries ?? [] where p.end > size {
            out.append(Finding(code: "PF008", severity: .error, rule: "past-flash-end",
                message: "partition '\(p.name)' (\(hex(p.offset))..\(hex(p.end))) ends past the \(size >> 20)MB flash",
                evidence: ["partition end \(hex(p.end)) > flash size \(hex(size)) (\(source))"],
                explanation: "the bootloader rejects the table (\"partition … exceeds flash chip size\") or the app cannot use the partition.",
                fix: "shrink or move the partition below \(hex(size)), or use a board with more flash",
                address: Int(p.offset)))
        }
        for e in ctx.entries where e.entry.end > size {
            out.append(Finding(code: "PF008", severity: .error, rule: "past-flash-end",
                message: "\(e.entry.name) at \(hex(e.entry.address)) (\(e.entry.bytes.count) bytes) ends past the \(size >> 20)MB flash",
                evidence: ["write end \(hex(e.entry.end)) > flash size \(hex(size)) (\(source))"],
                explanation: "the write fails (or wraps around on some flash chips and overwrites the bootloader).",
                fix: "check the address and the file", file: e.entry.name, address: e.entry.address))
        }
        return out
    }

    // MARK: PF009

    static let appTooLarge = PreflightRule(
        code: "PF009", name: "larger-than-partition",
        summary: "app (or any file) larger than the partition it is written to") { ctx in
        var out: [Finding] = []
        for e in ctx.entries {
            guard let p = ctx.partition(containing: e.entry.address), e.entry.end > p.end else { continue }
            out.append(Finding(code: "PF009", severity: .error, rule: "larger-than-partition",
                message: "\(e.entry.name) (\(e.entry.bytes.count) bytes) does not fit partition '\(p.name)' (\(p.size) bytes from \(hex(p.offset)))",
                evidence: ["write \(hex(e.entry.address))..\(hex(e.entry.end))", "partition '\(p.name)' \(hex(p.offset))..\(hex(p.end))"]
                    + (e.isSigned ? ["the length includes the 4096-byte signature sector"] : []),
                explanation: "the overflow overwrites the next partition, and the bootloader rejects an image longer than its partition (\"Image length … doesn't fit in partition length …\").",
                fix: "enlarge '\(p.name)' in the partition table, or make the app smaller",
                file: e.entry.name, address: e.entry.address))
        }
        return out
    }

    // MARK: PF010

    static let minRevision = PreflightRule(
        code: "PF010", name: "min-chip-revision",
        summary: "image requires a newer chip revision than the target") { ctx in
        guard let rev = ctx.target.chipRevision else { return [] }
        var out: [Finding] = []
        for e in ctx.entries {
            guard let img = e.image else { continue }
            let need = img.minRevisionFull != 0 ? Int(img.minRevisionFull) : Int(img.minRevision) * 100
            guard need > rev else { continue }
            out.append(Finding(code: "PF010", severity: .error, rule: "min-chip-revision",
                message: "the \(e.kind.rawValue) at \(hex(e.entry.address)) requires chip revision \(revisionText(need)), the target is \(revisionText(rev))",
                evidence: ["extended header min_chip_rev = \(img.minRevision), min_chip_rev_full = \(img.minRevisionFull)"],
                explanation: "the bootloader refuses it: \"Image requires chip rev >= \(revisionText(need)), but chip is \(revisionText(rev))\".",
                fix: "lower CONFIG_ESP32_REV_MIN and rebuild, or use chips of revision \(revisionText(need)) or newer (Secure Boot V2 on ESP32 needs v3.0)",
                file: e.entry.name, address: e.entry.address))
        }
        return out
    }

    // MARK: PF011

    static let secureBootUnsupported = PreflightRule(
        code: "PF011", name: "secure-boot-v2-unsupported",
        summary: "Secure Boot V2 on a chip revision without it (ESP32 below v3.0, ESP32-C3 below v0.3) or with the ESP32's 3/4 coding scheme") { ctx in
        guard let profile = ctx.security else { return [] }
        let wanted = ctx.secureBootExpected || ctx.entries.contains { $0.isSigned }
        guard wanted else { return [] }
        var out: [Finding] = []
        let minimum = profile.minSecureBootV2Revision
        if let rev = ctx.target.chipRevision, rev < minimum {
            let chip = ctx.target.chip.displayName
            out.append(Finding(code: "PF011", severity: .error, rule: "secure-boot-v2-unsupported",
                message: "Secure Boot V2 needs \(chip) revision \(revisionText(minimum)) or newer; the target is \(revisionText(rev))",
                evidence: ["chip revision \(revisionText(rev)) (\(ctx.target.source))"],
                explanation: "the ROM of earlier revisions has no Secure Boot V2 (RSA-PSS) verification; the bootloader cannot enable Secure Boot V2.",
                fix: profile.policy.honouredBlocks == 1 ? "use ESP32 v3 (ECO3) chips, or Secure Boot V1 on older ones"
                    : "use \(chip) chips of revision \(revisionText(minimum)) or newer"))
        }
        if let ef = ctx.efuses, ef.codingSchemeIsThreeQuarters {
            out.append(Finding(code: "PF011", severity: .error, rule: "secure-boot-v2-unsupported",
                message: "the target uses the 3/4 eFuse coding scheme; Secure Boot V2 needs coding scheme NONE",
                evidence: ["CODING_SCHEME = 1 (3/4)"],
                explanation: "the 256-bit key digest does not fit BLK2 under 3/4 coding: the bootloader stops with \"Secure Boot v2 failed (262)\" (ESP_ERR_NOT_SUPPORTED).",
                fix: "use chips with coding scheme NONE for Secure Boot V2"))
        }
        return out
    }

    // MARK: PF012

    static let plaintextToEncrypted = PreflightRule(
        code: "PF012", name: "encryption-mismatch",
        summary: "plaintext written to an encrypted chip, or ciphertext to one that reads plaintext") { ctx in
        guard let ef = ctx.efuses else { return [] }
        let names = ctx.security ?? .esp32
        var out: [Finding] = []
        let layout = ctx.encryptionLayout
        for e in ctx.entries {
            let encryptedWrite = e.entry.encrypted || ctx.plan.options.encryptAll
            let expectation: EncryptionExpectation
            if e.entry.address == ctx.target.chip.bootloaderOffset { expectation = .ifValidImage }
            else if e.entry.address == ctx.tableOffset { expectation = .ifValidPartitionTable }
            // Without a partition table in the plan nothing says which areas stay plaintext:
            // a plaintext image or table is taken as bound for an encrypted area (FE001's rule).
            else if let layout { expectation = layout.area(containing: e.entry.address)?.expectation ?? .never }
            else { expectation = .ifValidImage }
            let plaintextStructure = e.isImage || e.kind == .partitionTable
            if ef.flashEncryptionEnabled, !encryptedWrite, expectation != .never, plaintextStructure {
                out.append(Finding(code: "PF012", severity: .error, rule: "encryption-mismatch",
                    message: "plaintext \(e.kind.rawValue) written to \(hex(e.entry.address)) on a chip with flash encryption on",
                    evidence: ["\(names.cryptCounter) = \(hex(ef.flashCryptCount)) (odd: encryption enabled)",
                               "first bytes \(Array(e.entry.bytes.prefix(4)).hexString) are plaintext (\(e.kind.rawValue))"],
                    explanation: "the chip decrypts everything it reads from this region: a plaintext bootloader gives \"flash read err, 1000\", a plaintext table \"invalid magic number\", a plaintext app \"invalid magic byte\".",
                    fix: ef.disableDLEncrypt
                        ? "encrypt on the host with the device key (espforge flash-encryption encrypt) and write the ciphertext; --encrypt is disabled on this chip (\(names.downloadEncryptDisable))"
                        : "write with --encrypt (development mode), or write host-encrypted ciphertext",
                    file: e.entry.name, address: e.entry.address))
            }
            if !ef.flashEncryptionEnabled, encryptedWrite {
                out.append(Finding(code: "PF012", severity: .error, rule: "encryption-mismatch",
                    message: "\(e.entry.name) is written with --encrypt to \(hex(e.entry.address)), but flash encryption is off on the chip",
                    evidence: ["\(names.cryptCounter) = \(hex(ef.flashCryptCount)) (even: encryption disabled)"],
                    explanation: "the chip stores ciphertext but reads flash as plaintext, so the bootloader sees garbage (\"invalid header\").",
                    fix: "write plaintext and let the first boot encrypt it, or enable flash encryption first (or --force)",
                    file: e.entry.name, address: e.entry.address, overridable: true))
            }
        }
        return out
    }

    // MARK: PF013

    static let nvsFlags = PreflightRule(
        code: "PF013", name: "nvs-encryption-flags",
        summary: "NVS partition flagged encrypted, or nvs_keys not flagged encrypted") { ctx in
        guard let t = ctx.partitionTable else { return [] }
        var out: [Finding] = []
        for p in t.entries where p.type == PartitionEntry.Kind.data {
            if p.subtype == PartitionEntry.DataSubtype.nvs, p.isEncrypted {
                out.append(Finding(code: "PF013", severity: .error, rule: "nvs-encryption-flags",
                    message: "NVS partition '\(p.name)' is flagged encrypted",
                    evidence: ["partition '\(p.name)' data/nvs flags = \(hex(p.flags))"],
                    explanation: "first-boot flash encryption would encrypt it with the flash key, and NVS cannot work on flash-encrypted pages (it rewrites single words).",
                    fix: "remove the `encrypted` flag; protect NVS with NVS encryption (an nvs_keys partition) instead",
                    address: Int(p.offset)))
            }
            if p.subtype == PartitionEntry.DataSubtype.nvsKeys, !p.isEncrypted {
                out.append(Finding(code: "PF013", severity: .warning, rule: "nvs-encryption-flags",
                    message: "nvs_keys partition '\(p.name)' is not flagged encrypted",
                    evidence: ["partition '\(p.name)' data/nvs_keys flags = \(hex(p.flags))"],
                    explanation: "the NVS keys must be stored under flash encryption; ESP-IDF documents the flag as required and older releases only encrypt flagged partitions, leaving the keys readable and unreadable by the app after encryption.",
                    fix: "add the `encrypted` flag to the nvs_keys partition",
                    address: Int(p.offset)))
            }
        }
        return out
    }

    // MARK: PF014

    static let flashCryptCount = PreflightRule(
        code: "PF014", name: "flash-crypt-cnt",
        summary: "FLASH_CRYPT_CNT exhausted or write-protected, or set without a key (ESP32; PF025 for S3/C3)") { ctx in
        guard let ef = ctx.efuses, ef.keyBlocks == nil else { return [] }
        var out: [Finding] = []
        let cnt = ef.flashCryptCount & 0x7F
        let evidence = ["FLASH_CRYPT_CNT = \(hex(cnt)) (\(cnt.nonzeroBitCount) of 7 bits burned)"]
        let wantsFE = ctx.sdk?.flashEncryption ?? false
        if cnt != 0 && !ef.flashEncryptionKeyPresent {
            out.append(Finding(code: "PF014", severity: .error, rule: "flash-crypt-cnt",
                message: "FLASH_CRYPT_CNT is set but BLK1 holds no flash encryption key",
                evidence: evidence + ["BLK1 is all zero and not read-protected"],
                explanation: "the bootloader skips key generation once FLASH_CRYPT_CNT is non-zero, so the chip would encrypt and decrypt with an empty key.",
                fix: "burn a key into BLK1 first (espefuse burn-key flash_encryption), or use another chip"))
        }
        if cnt == 0x7F && ctx.entries.contains(where: { ($0.isImage || $0.kind == .partitionTable) && !$0.entry.encrypted && !ctx.plan.options.encryptAll }) {
            out.append(Finding(code: "PF014", severity: .error, rule: "flash-crypt-cnt",
                message: "FLASH_CRYPT_CNT is exhausted (0x7f): flash encryption is permanently on and the plan writes plaintext",
                evidence: evidence,
                explanation: "no bit is left to switch encryption off for a plaintext re-flash; plaintext images will never boot on this chip.",
                fix: "write ciphertext made with the device's key, or --encrypt if download-mode encryption is still allowed"))
        }
        if wantsFE, !ef.flashEncryptionEnabled, ef.flashCryptCountWriteProtected {
            out.append(Finding(code: "PF014", severity: .error, rule: "flash-crypt-cnt",
                message: "flash encryption is configured but FLASH_CRYPT_CNT is write-protected while off",
                evidence: evidence + ["WR_DIS bit 2 set"],
                explanation: "the bootloader cannot enable encryption (\"CRYPT_CNT is write protected\") and stops.",
                fix: "this chip cannot enable flash encryption; disable CONFIG_SECURE_FLASH_ENC_ENABLED for it or use another chip"))
        }
        return out
    }

    // MARK: PF015

    static let downloadMode = PreflightRule(
        code: "PF015", name: "download-mode",
        summary: "download-mode eFuses make the planned write impossible") { ctx in
        guard let ef = ctx.efuses, !ctx.plan.entries.isEmpty else { return [] }
        let names = ctx.security ?? .esp32
        var out: [Finding] = []
        if ef.uartDownloadDisabled {
            out.append(Finding(code: "PF015", severity: .error, rule: "download-mode",
                message: "UART download mode is disabled on the target: nothing can be written over the serial port",
                evidence: ["\(names.downloadDisable) = 1"],
                explanation: "the ROM no longer enters the serial loader; esptool cannot connect.",
                fix: "update through OTA from the running app; this chip cannot be flashed over UART again"))
        }
        let encrypted = ctx.plan.options.encryptAll || ctx.plan.entries.contains { $0.encrypted }
        if encrypted, ef.disableDLEncrypt {
            out.append(Finding(code: "PF015", severity: .error, rule: "download-mode",
                message: "the plan writes with --encrypt, but download-mode encryption is disabled",
                evidence: ["\(names.downloadEncryptDisable) = 1"],
                explanation: "in release mode the ROM refuses encrypted writes from the serial loader (files encrypted on the host and written as they are still work).",
                fix: "encrypt the files on the host with the device key and write the ciphertext without --encrypt"))
        }
        return out
    }

    // MARK: PF016

    static let wrongOffset = PreflightRule(
        code: "PF016", name: "wrong-offset",
        summary: "bootloader not at the chip's bootloader offset, or an app not at an app partition") { ctx in
        let blOffset = ctx.target.chip.bootloaderOffset
        var out: [Finding] = []
        for e in ctx.entries {
            if e.kind == .bootloaderImage, e.entry.address != blOffset {
                out.append(Finding(code: "PF016", severity: .error, rule: "wrong-offset",
                    message: "bootloader image written at \(hex(e.entry.address)); the \(ctx.target.chip.displayName) ROM loads it from \(hex(blOffset))",
                    evidence: ["\(e.entry.name): bootloader image (no app descriptor, RAM-only segments)"],
                    explanation: "the ROM finds nothing at \(hex(blOffset)) (\"invalid header: 0xffffffff\") or an old bootloader.",
                    fix: "write the bootloader at \(hex(blOffset)) (or pass --force if this really is data)",
                    file: e.entry.name, address: e.entry.address, overridable: true))
            }
            if e.entry.address == blOffset, e.kind == .appImage {
                out.append(Finding(code: "PF016", severity: .error, rule: "wrong-offset",
                    message: "an app image is written at the bootloader offset \(hex(blOffset))",
                    evidence: ["\(e.entry.name): app image (app descriptor / flash-mapped segments)"],
                    explanation: "the ROM would try to run the app as the second-stage bootloader.",
                    fix: "write the bootloader at \(hex(blOffset)) and the app at its partition offset", file: e.entry.name, address: e.entry.address))
            }
            if e.kind == .appImage, e.entry.address != blOffset, let t = ctx.partitionTable {
                let starts = t.entries.filter { $0.type == PartitionEntry.Kind.app }.map { Int($0.offset) }
                if !starts.contains(e.entry.address) {
                    out.append(Finding(code: "PF016", severity: .error, rule: "wrong-offset",
                        message: "app image at \(hex(e.entry.address)) is not at the start of an app partition",
                        evidence: ["app partitions start at " + starts.map { hex($0) }.joined(separator: ", ")],
                        explanation: "the bootloader looks for apps only at partition starts and will not find this one.",
                        fix: "write the app at one of: " + starts.map { hex($0) }.joined(separator: ", "),
                        file: e.entry.name, address: e.entry.address))
                }
            }
        }
        return out
    }

    // MARK: PF017

    static let unsignedUnderSecureBoot = PreflightRule(
        code: "PF017", name: "unsigned-under-secure-boot",
        summary: "unsigned bootloader or app where Secure Boot V2 is configured, enabled or its digest burned") { ctx in
        let digestBurned = ctx.efuses?.secureBootDigestBurned ?? false
        let names = ctx.security ?? .esp32
        guard ctx.secureBootExpected || digestBurned else { return [] }
        var out: [Finding] = []
        for e in ctx.entries where (e.kind == .bootloaderImage || e.kind == .appImage) && !e.isSigned {
            let why = ctx.secureBootEnabled ? "\(names.secureBootFlag) is burned"
                : (ctx.sdk?.secureBootV2 ?? false) ? "CONFIG_SECURE_BOOT_V2_ENABLED=y" : "a key digest is burned in \(names.digestLocation)"
            out.append(Finding(code: "PF017", severity: .error, rule: "unsigned-under-secure-boot",
                message: "the \(e.kind.rawValue) at \(hex(e.entry.address)) has no Secure Boot V2 signature, but \(why)",
                evidence: ["no signature sector at \(hex(e.image?.signatureSectorOffset ?? 0)) in \(e.entry.name)"],
                explanation: "unsigned images are rejected (\"No signature block magic byte found at signature sector\" and \"secure boot verification failed\" from the ECO3 ROM for the bootloader, error 8194 for apps).",
                fix: "sign it: espforge secure-boot sign --key KEY.pem \(e.entry.name) -o signed.bin",
                file: e.entry.name, address: e.entry.address, overridable: !ctx.secureBootEnabled))
        }
        return out
    }

    // MARK: PF018

    static let chipMismatch = PreflightRule(
        code: "PF018", name: "chip-mismatch",
        summary: "image built for another chip") { ctx in
        var out: [Finding] = []
        for e in ctx.entries {
            guard let img = e.image, img.chipID != ctx.target.chip.imageChipID else { continue }
            let built = ChipSpec.withImageChipID(img.chipID)?.displayName ?? "chip id \(img.chipID)"
            out.append(Finding(code: "PF018", severity: .error, rule: "chip-mismatch",
                message: "\(e.entry.name) is built for \(built), the target is \(ctx.target.chip.displayName)",
                evidence: ["extended header chip_id = \(img.chipID)"],
                explanation: "the bootloader refuses images for another chip (\"mismatch chip ID\").",
                fix: "build for \(ctx.target.chip.name) (idf.py set-target \(ctx.target.chip.name)) (or --force)",
                file: e.entry.name, address: e.entry.address, overridable: true))
        }
        return out
    }
}
