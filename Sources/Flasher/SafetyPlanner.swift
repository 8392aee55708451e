import ESPCore
import ImageFormat
import SecureBoot

/// One file to write at one flash address.
public struct FlashRegion: Sendable, Equatable {
    public var address: Int
    public var data: [UInt8]
    /// Where it came from (file name), for messages.
    public var name: String

    public init(address: Int, data: [UInt8], name: String) {
        self.address = address
        self.data = data
        self.name = name
    }

    public var end: Int { address + data.count }
}

/// What the user asked for.
public struct FlashRequest: Sendable {
    public var regions: [FlashRegion]
    /// nil = `keep` (the default): the image headers are written as built.
    public var flashMode: String?
    public var flashFrequency: String?
    public var flashSize: String?
    public var encrypt: Bool
    public var force: Bool

    public init(regions: [FlashRegion], flashMode: String? = nil, flashFrequency: String? = nil, flashSize: String? = nil,
                encrypt: Bool = false, force: Bool = false) {
        self.regions = regions
        self.flashMode = flashMode
        self.flashFrequency = flashFrequency
        self.flashSize = flashSize
        self.encrypt = encrypt
        self.force = force
    }
}

/// A rule's verdict on the plan. Codes are stable (scripts and factory software match on them).
public struct Finding: Sendable, Codable, Equatable {
    public enum Severity: String, Sendable, Codable { case error, warning, info }
    public var code: String
    public var severity: Severity
    /// Flash address the finding is about, if any.
    public var address: Int?
    public var message: String
    public var explanation: String
    public var fix: String
    /// `--force` may override it (only where overriding cannot destroy the chip).
    public var overridable: Bool
    /// It was an error and `--force` overrode it.
    public var overridden: Bool = false

    /// Blocks the plan.
    public var blocks: Bool { severity == .error && !overridden }
}

/// The checked plan: the regions exactly as they will be written, and the findings.
public struct FlashPlan: Sendable {
    public var regions: [FlashRegion]
    public var findings: [Finding]
    public var refused: Bool { findings.contains { $0.blocks } }
    public var blockingCodes: [String] { findings.filter(\.blocks).map(\.code) }
}

/// The safety rules, as a pure function of the request and the chip's facts. Nothing is sent
/// to a chip unless `plan(...).refused` is false.
///
/// Codes:
/// - `FP001 flash-params-signed`: changing mode/freq/size of an image with a Secure Boot signature (never).
/// - `FP002 flash-params-hashed`: the same for an image with an appended SHA-256 (`--force` re-computes it).
/// - `FP003 flash-params-invalid`: a value the chip does not know.
/// - `RG001 region-overlap`, `RG002 region-past-end`, `RG003 region-unaligned`, `RG004 region-empty`.
/// - `FE001 plaintext-on-encrypted-chip`, `FE002 encrypt-download-disabled`,
///   `FE003 encrypt-without-flash-encryption`, `FE004 assumed-ciphertext` (info).
/// - `SB001 bootloader-key-mismatch`, `SB002 bootloader-unsigned`, `SB003 secure-boot-digest-unreadable`,
///   `SB004 bootloader-signature-damaged` (block CRC wrong: not "unsigned"), `SB005 bootloader-signature-invalid`
///   (signed with the burned key, but the image digest or RSA-PSS signature does not match — the
///   same check as preflight's PF003, ``SecureBootVerifier/inspect(image:sectorOffset:)``).
/// - `BL001 bootloader-offset`, `BL002 image-chip-mismatch`.
public enum SafetyPlanner {
    public static func plan(_ request: FlashRequest, facts: ChipFacts) -> FlashPlan {
        var findings: [Finding] = []
        var regions = request.regions
        let chip = facts.spec

        func add(_ code: String, _ sev: Finding.Severity, _ addr: Int?, _ msg: String, _ why: String, _ fix: String,
                 overridable: Bool) {
            var f = Finding(code: code, severity: sev, address: addr, message: msg, explanation: why, fix: fix,
                            overridable: overridable)
            if sev == .error, overridable, request.force { f.overridden = true }
            findings.append(f)
        }

        // Region geometry.
        let sorted = regions.enumerated().sorted { $0.element.address < $1.element.address }
        for (i, r) in sorted.map(\.element).enumerated() {
            if r.data.isEmpty {
                add("RG004", .error, r.address, "\(r.name) is empty", "an empty region writes nothing and usually means a wrong file",
                    "check the file name", overridable: false)
            }
            if r.address % LoaderSectorSize != 0 {
                add("RG003", .error, r.address, "\(r.name) at \(hex(r.address)) does not start on a 4 KiB sector boundary",
                    "flash is erased in 4 KiB sectors, so the bytes before \(hex(r.address)) in that sector would be erased too",
                    "write at a multiple of 0x1000 (or merge the neighbouring data into one file)", overridable: false)
            }
            if r.end > facts.flashSize {
                add("RG002", .error, r.address,
                    "\(r.name) (\(hex(r.address))-\(hex(r.end - 1))) ends past the \(facts.flashSize >> 20)MB flash (last byte \(hex(facts.flashSize - 1)))",
                    "the flash chip is smaller than the layout this file was built for",
                    "use a layout for \(facts.flashSize >> 20)MB or a board with more flash", overridable: false)
            }
            if i + 1 < sorted.count {
                let next = sorted[i + 1].element
                if next.address < r.end {
                    add("RG001", .error, next.address,
                        "\(r.name) (\(hex(r.address))-\(hex(r.end - 1))) overlaps \(next.name) starting at \(hex(next.address))",
                        "the later write would overwrite part of the earlier one; the result depends on order",
                        "fix the addresses (check the partition table offsets)", overridable: false)
                }
            }
        }

        // Flash parameters (default keep): only the image at the bootloader offset carries them
        // for the ROM; it is the header the seed's tool rewrote.
        let wantsChange = request.flashMode != nil || request.flashFrequency != nil || request.flashSize != nil
        if wantsChange, let idx = regions.firstIndex(where: { $0.address == chip.bootloaderOffset && $0.data.first == ESPImage.magic }) {
            let r = regions[idx]
            if let image = try? ESPImage(r.data) {
                var newMode = image.flashModeCode, newSize = image.flashSizeCode, newFreq = image.flashFrequencyCode
                var invalid: [String] = []
                if let m = request.flashMode { if let c = chip.flashMode(named: m) { newMode = c.code } else { invalid.append("flash mode '\(m)'") } }
                if let s = request.flashSize { if let c = chip.flashSize(named: s) { newSize = c.code } else { invalid.append("flash size '\(s)'") } }
                if let f = request.flashFrequency { if let c = chip.flashFrequency(named: f) { newFreq = c.code } else { invalid.append("flash frequency '\(f)'") } }
                if !invalid.isEmpty {
                    add("FP003", .error, r.address, "\(invalid.joined(separator: ", ")) is not valid for \(chip.displayName)",
                        "the header can only hold the chip's codes",
                        "use one of: modes \(chip.flashModes.map(\.name).joined(separator: "/")), sizes \(chip.flashSizes.prefix(5).map(\.name).joined(separator: "/"))…, freqs \(chip.flashFrequencies.map(\.name).joined(separator: "/"))",
                        overridable: false)
                } else if newMode != image.flashModeCode || (newSize | newFreq) != image.flashSizeFreq {
                    let built = "byte 2 = \(hex2(image.flashModeCode)) (\(describeMode(chip, image.flashModeCode))), byte 3 = \(hex2(image.flashSizeFreq)) (\(describeSizeFreq(chip, image.flashSizeFreq)))"
                    let wanted = "byte 2 = \(hex2(newMode)) (\(describeMode(chip, newMode))), byte 3 = \(hex2(newSize | newFreq)) (\(describeSizeFreq(chip, newSize | newFreq)))"
                    let signed = image.hasSignatureSector && image.signatureSectorOffset < r.data.count
                        && r.data[image.signatureSectorOffset] == SignatureBlock.magic
                    if signed {
                        add("FP001", .error, r.address,
                            "refusing to change the flash parameters of the signed image \(r.name) at \(hex(r.address)): header bytes 2-3 are built as \(built); the request would write \(wanted)",
                            "the Secure Boot V2 signature (sector at file offset \(hex(image.signatureSectorOffset))) covers the header; a rewritten header no longer matches it and a chip with Secure Boot enabled will not boot it",
                            "drop --flash-mode/--flash-freq/--flash-size (the default `keep` writes the image as signed), or rebuild the bootloader with the wanted parameters and sign it again",
                            overridable: false)
                    } else if image.hashAppended {
                        add("FP002", .error, r.address,
                            "refusing to change the flash parameters of \(r.name) at \(hex(r.address)), which carries an appended SHA-256: header bytes 2-3 are built as \(built); the request would write \(wanted)",
                            "the appended SHA-256 covers the header; rewriting it means the digest must be recomputed, so the image on flash is no longer the one that was built (and tested)",
                            "build the image with the wanted parameters, or pass --force to rewrite the header and recompute the SHA-256",
                            overridable: true)
                        if request.force, let out = try? ImageRetarget.retarget(r.data, parameters: FlashParameters(
                            mode: request.flashMode, frequency: request.flashFrequency, size: request.flashSize), stripSignature: false) {
                            regions[idx].data = out
                        }
                    } else if let out = try? ImageRetarget.retarget(r.data, parameters: FlashParameters(
                        mode: request.flashMode, frequency: request.flashFrequency, size: request.flashSize), stripSignature: false) {
                        regions[idx].data = out
                        add("FP000", .info, r.address, "flash parameters of \(r.name) changed: \(built) -> \(wanted)",
                            "the image is neither signed nor hashed, so its header may be adapted", "", overridable: false)
                    }
                }
            }
        }

        // Images: chip, bootloader placement, Secure Boot.
        for r in regions where r.data.first == ESPImage.magic {
            guard let image = try? ESPImage(r.data) else { continue }
            if let ic = image.chip, ic.name != chip.name {
                add("BL002", .error, r.address, "\(r.name) at \(hex(r.address)) is an \(ic.displayName) image, the chip is \(chip.displayName)",
                    "the ROM/bootloader of this chip cannot run it", "use the build for \(chip.displayName)", overridable: true)
            }
            let looksLikeBootloader = image.bootloaderDescriptor != nil
                || (!image.segments.isEmpty && image.segments.allSatisfy { !chip.isFlashMapped($0.loadAddress) } && image.appDescriptor == nil)
            if looksLikeBootloader, r.address != chip.bootloaderOffset {
                add("BL001", .error, r.address,
                    "\(r.name) looks like a second-stage bootloader but is written at \(hex(r.address)); \(chip.displayName) loads it from \(hex(chip.bootloaderOffset))",
                    "the ROM only looks at \(hex(chip.bootloaderOffset)); anything else there will not boot",
                    "write it at \(hex(chip.bootloaderOffset)) (or pass --force if this really is data)", overridable: true)
            }
            if r.address == chip.bootloaderOffset {
                checkSecureBoot(r, image: image, facts: facts, add: add)
            }
        }

        // Flash encryption.
        if facts.encryptionEnabled {
            if request.encrypt {
                if facts.downloadEncryptDisabled {
                    add("FE002", .error, nil, "--encrypt asks the chip to encrypt, but DISABLE_DL_ENCRYPT is burned",
                        "the ROM loader cannot use the flash encryption engine on this chip",
                        "encrypt on the host (`espforge flash-encryption encrypt`) with the chip's key and write the ciphertext without --encrypt",
                        overridable: false)
                }
            } else {
                for r in regions {
                    if recognisablyPlaintext(r, chip: chip) {
                        add("FE001", .error, r.address,
                            "\(r.name) at \(hex(r.address)) is plaintext, but flash encryption is on (FLASH_CRYPT_CNT = \(hex2(UInt8(facts.flashCryptCnt))), an odd number of bits)",
                            "the chip decrypts this region when it reads it, so plaintext reads as garbage and the device will not boot",
                            "encrypt it on the host with the chip's key (`espforge flash-encryption encrypt --address \(hex(r.address))`), or pass --encrypt if download-mode encryption is allowed",
                            overridable: false)
                    } else {
                        add("FE004", .info, r.address, "\(r.name) at \(hex(r.address)) is not recognisable plaintext; assumed to be ciphertext for this chip's key",
                            "flash encryption is on", "", overridable: false)
                    }
                }
            }
        } else if request.encrypt {
            add("FE003", .error, nil, "--encrypt was given but flash encryption is off on this chip (FLASH_CRYPT_CNT = \(hex2(UInt8(facts.flashCryptCnt))))",
                "data encrypted now would be read back without decryption", "drop --encrypt, or enable flash encryption first (or --force)",
                overridable: true)
        }
        return FlashPlan(regions: regions, findings: findings)
    }

    static func checkSecureBoot(_ r: FlashRegion, image: ESPImage, facts: ChipFacts,
                                add: (String, Finding.Severity, Int?, String, String, String, Bool) -> Void) {
        let enabled = facts.secureBootV2Enabled
        guard enabled || facts.secureBootDigest != nil || facts.block2ReadProtected else { return }
        guard let burned = facts.secureBootDigest else {
            add("SB003", .warning, r.address, "Secure Boot V2 is \(enabled ? "enabled" : "prepared") but BLOCK2 cannot be read, so the bootloader's key cannot be checked",
                "BLOCK2 is read-protected", "make sure \(r.name) is signed with the key whose digest was burned", false)
            return
        }
        let signed = image.hasSignatureSector && image.signatureSectorOffset < r.data.count
        // The same check preflight's PF003 runs: every block parsed and checked against the content.
        let inspection = signed ? SecureBootVerifier.inspect(image: r.data, sectorOffset: image.signatureSectorOffset) : nil
        let sector = inspection?.sector
        let honouredCount = facts.spec.name == "esp32" ? 1 : 3
        let honoured = (sector?.validBlocks ?? []).prefix(honouredCount)
        if honoured.isEmpty, let damaged = inspection?.checks.first, !damaged.block.crcValid {
            add("SB004", .error, r.address,
                "\(r.name) at \(hex(r.address)) has a damaged Secure Boot V2 signature block \(damaged.index) (CRC32 stored 0x\(String(damaged.block.storedCRC, radix: 16)), computed 0x\(String(damaged.block.computedCRC, radix: 16)))",
                enabled ? "the ROM ignores a block whose CRC does not match, so the bootloader counts as unsigned: the chip would not boot"
                    : "a block with a wrong CRC is ignored; once Secure Boot is enabled this bootloader will not boot",
                "sign the bootloader again (`espforge secure-boot sign --key KEY.pem`) and flash exactly that file", !enabled)
            return
        }
        if honoured.isEmpty {
            add("SB002", .error, r.address,
                "\(r.name) at \(hex(r.address)) has no Secure Boot V2 signature, but the chip has a key digest burned in BLOCK2\(enabled ? " and Secure Boot enabled (ABS_DONE_1)" : "")",
                enabled ? "the ROM refuses an unsigned bootloader: the chip would not boot" : "once Secure Boot is enabled this bootloader will not boot",
                "sign it (`espforge secure-boot sign --key KEY.pem`) with the key whose digest is burned", !enabled)
            return
        }
        if !honoured.contains(where: { $0.block.keyDigest == burned }) {
            let found = honoured.map { $0.block.keyDigest.hexString.prefix(16) + "…" }.joined(separator: ", ")
            add("SB001", .error, r.address,
                "\(r.name) at \(hex(r.address)) is signed with a key whose digest (\(found)) is not the one burned in BLOCK2 (\(burned.hexString.prefix(16))…)",
                enabled ? "the ROM verifies the bootloader against the BLOCK2 digest: the chip would not boot" : "once Secure Boot is enabled this bootloader will not boot",
                "sign the bootloader with the key whose digest is burned (`espforge secure-boot digest --key PUB.pem` shows a key's digest)", !enabled)
            return
        }
        // A block with the trusted key must also sign this content (the ROM checks the image
        // digest and the RSA-PSS signature, not only the key): a tampered image or a header
        // rewritten after signing is refused here, before anything is written.
        let trusted = (inspection?.checks ?? []).prefix(honouredCount).filter { $0.block.crcValid && $0.block.keyDigest == burned }
        guard !trusted.contains(where: { $0.digestMatches && $0.signatureValid == true }), let check = trusted.first else { return }
        var problems: [String] = []
        if !check.digestMatches {
            problems.append("block \(check.index) image digest \(check.block.imageDigest.hexString.prefix(16))… ≠ SHA-256 of the content \(check.contentDigest.bytes.hexString.prefix(16))… (changed after signing: tampered, or the header rewritten)")
        } else if check.signatureValid != true {
            problems.append("block \(check.index) signature does not verify with its key")
        }
        add("SB005", .error, r.address,
            "\(r.name) at \(hex(r.address)) is signed with the burned key, but the signature does not match the image: \(problems.joined(separator: "; "))",
            enabled ? "with ABS_DONE_1 the ROM verifies the whole bootloader before loading it (\"Sig block 0 invalid: Image digest does not match\", \"secure boot verification failed\"): the chip would not boot"
                : "once Secure Boot is enabled the ROM rejects this bootloader",
            "flash the bootloader exactly as signed (--flash-mode/--flash-freq/--flash-size keep), or sign the final image again; `espforge preflight` (PF003) shows the same check",
            !enabled)
    }

    /// Plaintext we can recognise: a valid ESP image or a partition table.
    static func recognisablyPlaintext(_ r: FlashRegion, chip: ChipSpec) -> Bool {
        if r.data.first == ESPImage.magic, let img = try? ESPImage(r.data), img.checksumValid { return true }
        if r.data.count >= 2, r.data[0] == 0xAA, r.data[1] == 0x50 { return true }
        return false
    }

    static func describeMode(_ chip: ChipSpec, _ code: UInt8) -> String { chip.flashMode(code: code)?.name ?? "?" }
    static func describeSizeFreq(_ chip: ChipSpec, _ b: UInt8) -> String {
        "\(chip.flashSize(code: b & 0xF0)?.name ?? "?"), \(chip.flashFrequency(code: b & 0x0F)?.name ?? "?")"
    }
}

let LoaderSectorSize = 0x1000

func hex(_ v: Int) -> String { "0x" + String(v, radix: 16) }
func hex2(_ v: UInt8) -> String { v < 16 ? "0x0" + String(v, radix: 16) : "0x" + String(v, radix: 16) }
