import ESPCore
import ImageFormat
import SecureBoot

/// The doctor's rule table. Each entry names the log lines (in ESP-IDF's and the ROM's exact
/// wording) that identify a failure, and says what causes it and how to fix it. To add a rule,
/// append a ``DoctorRule`` with a new id; `priority` orders root causes before consequences.
public enum DoctorRules {
    public static let all: [DoctorRule] = [
        headerRewrittenAfterSigning, appSignatureDigest, keyMismatch, romSecureBootCheckFail,
        coding34, minRevision, chipID, imageTooLarge, partitionTable, flashReadErr, invalidHeaderGarbage,
        blankFlash, appInvalidMagic, nvsKeys, checksumFailed, simpleHashCorrupt, brownout, noBootableApp, bootLoop,
    ]

    static let keepFix = "flash the signed bootloader exactly as signed: esptool write-flash --flash-mode keep --flash-freq keep --flash-size keep 0x1000 bootloader.bin (esptool only rewrites the header at the bootloader offset, and only when one of these options is not `keep`)"

    // MARK: DR001 — the seed

    static let headerRewrittenAfterSigning = DoctorRule(
        id: "DR001", name: "bootloader-header-rewritten-after-signing", priority: 100,
        required: [[.contains("Image digest does not match")],
                   [.contains("bootloader image appears invalid")]],
        supporting: [.contains("enabling secure boot v2"), .logged(level: "E", contains: "Secure boot signature verification failed"),
                     .contains("Image hash failed"), .contains("image corrupted on flash"), .contains("image valid, signature bad"),
                     .contains("Secure Boot v2 failed"), .contains("Batch mode of writing fields is cancelled")],
        confidence: .high,
        cause: "the signed bootloader's header was rewritten after signing (flash mode/frequency/size bytes changed by the flashing tool)",
        explanation: """
            On the first boot the bootloader checks its own Secure Boot V2 signature before burning the key digest; \
            the digest stored in signature block 0 is not the SHA-256 of the bootloader as it is on flash \
            ("Image digest does not match"), so Secure Boot is not enabled (error 8194 = ESP_ERR_IMAGE_INVALID) and no app \
            is started. The bootloader itself ran normally, so its code is intact: the signed bytes that flashing tools \
            change are header bytes 2..3 (flash mode, frequency, size). esptool write-flash (also through idf.py flash or \
            a flash script) rewrites them for an image written at the bootloader offset 0x1000 whenever --flash-size, \
            --flash-mode or --flash-freq is anything other than `keep` (e.g. --flash-size 4MB or detect); it does not \
            know about signatures. With `detect` (esptool.py's default before v3.0, still common in flash scripts) \
            the header changes only on boards whose flash size differs from the one the bootloader was signed for, \
            so the same files work on one board and fail on another.
            """,
        fix: [keepFix,
              "if boards differ in flash size, build and sign one bootloader per flash size (CONFIG_ESPTOOLPY_FLASHSIZE for that board, its own sdkconfig/build folder) instead of reusing one signed for another size",
              "check a plan before flashing: espforge preflight --build-dir build --flash-size 4MB (rule PF001 catches the rewrite)"],
        refine: { f, ctx in
            if ctx.has(.contains("image corrupted on flash")) || ctx.has(.contains("Image hash failed")) {
                f.explanation += " The appended SHA-256 fails too (\"Image hash failed - image is corrupt\"): the bytes changed after the image was built and the tool did not update that hash (esptool before v4 leaves it), which fits a header rewrite, not a wrong key."
            } else if ctx.has(.contains("image valid, signature bad")) {
                f.explanation += " The appended SHA-256 is valid (\"image valid, signature bad\"): the tool recomputed it after rewriting the header (esptool v4 and later do), so only the signature shows the change."
            }
            let reported = ctx.reportedFlashParameters
            if let size = reported.size {
                let m = reported.mode ?? "?", fr = reported.frequency ?? "?"
                f.explanation += " The bootloader reports its header as \(m), \(fr), \(size): the image was most likely signed with a different setting (typically the flash size of another board)."
                f.evidence = mergeEvidence(f.evidence, reported.lines)
            }
            if ctx.has(.contains("Batch mode of writing fields is cancelled")) {
                f.fix.append("no eFuse was burned (the eFuse batch was cancelled), so the board can simply be re-flashed with a correctly signed bootloader")
            }
            correlateBootloader(&f, ctx)
        })

    /// With build artifacts: find the header the bootloader was signed with and compare.
    static func correlateBootloader(_ f: inout DoctorFinding, _ ctx: DoctorContext) {
        guard let artifacts = ctx.artifacts else { return }
        guard let bl = artifacts.bootloader else {
            f.correlation.append("no file for the bootloader offset \(hex(artifacts.chip.bootloaderOffset)) among the artifacts")
            return
        }
        let result = HeaderForensics.analyzeSigned(bl.bytes)
        switch result.verdict {
        case let .headerRewritten(built, found, rehashed):
            f.cause = "header rewritten after signing: built as \(built.mode) \(built.frequency) \(built.size), found as \(found.mode) \(found.frequency) \(found.size)"
            f.correlation.append("\(bl.name): signature block 0 matches the content only with header bytes 2..3 = \(hexByte(built.modeCode)) \(hexByte(built.sizeFreqByte)) (searched \(result.candidatesTried) mode × size × frequency candidates); the file has \(hexByte(found.modeCode)) \(hexByte(found.sizeFreqByte))")
            f.correlation.append(rehashed ? "the appended SHA-256 was recomputed for the new header (esptool ≥ v4 style)"
                                          : "the appended SHA-256 still belongs to the original header (not updated by the tool)")
            f.correlation.append("changed: " + built.differences(to: found).joined(separator: ", "))
            f.confidence = .high
        case .intact:
            guard let image = try? ESPImage(bl.bytes), let chip = image.chip else { return }
            let built = HeaderFlashParameters(modeCode: image.flashModeCode, sizeFreqByte: image.flashSizeFreq, chip: chip)
            f.correlation.append("\(bl.name) is correctly signed with header \(built)")
            let reported = ctx.reportedFlashParameters
            if reported.mode == nil && reported.size == nil && reported.frequency == nil {
                f.correlation.append("the log shows no header parameters of the bootloader on flash to compare with; if this file was flashed unchanged, compare its key digest with BLK2 (espforge secure-boot info)")
                return
            }
            var found = built
            if let m = reported.mode, let c = chip.flashMode(named: m) { found = HeaderFlashParameters(modeCode: c.code, sizeFreqByte: found.sizeFreqByte, chip: chip) }
            if let s = reported.size, let c = chip.flashSize(named: s) {
                found = HeaderFlashParameters(modeCode: found.modeCode, sizeFreqByte: c.code | (found.sizeFreqByte & 0x0F), chip: chip)
            }
            if let fr = reported.frequency, let c = chip.flashFrequency(named: fr) {
                found = HeaderFlashParameters(modeCode: found.modeCode, sizeFreqByte: (found.sizeFreqByte & 0xF0) | c.code, chip: chip)
            }
            if found != built {
                f.cause = "header rewritten after signing: built as \(built.mode) \(built.frequency) \(built.size), found as \(found.mode) \(found.frequency) \(found.size)"
                f.correlation.append("the chip reports \(found) (boot log), the signed file has \(built): " + built.differences(to: found).joined(separator: ", "))
                // Show that exactly this rewrite breaks the signature.
                var rewritten = bl.bytes
                rewritten[2] = found.modeCode
                rewritten[3] = found.sizeFreqByte
                if case .headerRewritten = HeaderForensics.analyzeSigned(rewritten).verdict {
                    f.correlation.append("rewriting the file's header that way reproduces the failure: \"Image digest does not match\"")
                }
            } else {
                f.cause = "the bootloader on flash is not the signed file given: its signed bytes differ although the header parameters agree"
                f.confidence = .medium
                f.correlation.append("the reported header matches the file; something other than header bytes 2..3 changed, or another bootloader was flashed")
            }
        case .contentChanged:
            f.cause = "the bootloader was modified after signing (not only its header)"
            f.confidence = .medium
            f.correlation.append("\(bl.name): no header flash parameters make the signature match (searched \(result.candidatesTried) candidates); bytes other than the header changed, or the block was made for another file")
        case .unsigned:
            f.correlation.append("\(bl.name) carries no Secure Boot V2 signature; give the signed bootloader that was flashed")
        }
    }

    static func mergeEvidence(_ a: [BootLog.Line], _ b: [BootLog.Line]) -> [BootLog.Line] {
        var seen = Set<String>()
        return (a + b).filter { seen.insert("\($0.number):\($0.text)").inserted }.sorted { $0.number < $1.number }
    }

    // MARK: DR002

    static let appSignatureDigest = DoctorRule(
        id: "DR002", name: "app-modified-after-signing", priority: 90,
        required: [[.contains("Image digest does not match")]],
        excluded: [.contains("bootloader image appears invalid")],
        supporting: [.logged(level: "E", contains: "Secure boot signature verification failed"), .contains("image valid, signature bad"),
                     .contains("image corrupted on flash"), .contains("is not bootable")],
        cause: "an app image on flash does not match its Secure Boot V2 signature",
        explanation: "The digest stored in the app's signature block is not the SHA-256 of the app as stored: the file was changed after signing, a different build was flashed than the one signed, or the write was incomplete. \"image valid, signature bad\" means the image itself is consistent (it was changed and re-hashed); \"image corrupted on flash\" means its own SHA-256 fails too (damaged or partial write).",
        fix: ["sign the final app binary (espforge secure-boot sign) and flash exactly that file at the partition offset",
              "verify before flashing: espforge secure-boot verify --key pub.pem app-signed.bin"],
        refine: { f, ctx in correlateApps(&f, ctx) })

    /// With build artifacts: is each app file itself correctly signed?
    static func correlateApps(_ f: inout DoctorFinding, _ ctx: DoctorContext) {
        guard let artifacts = ctx.artifacts else { return }
        for file in artifacts.files where file.address != artifacts.chip.bootloaderOffset {
            guard let image = try? ESPImage(file.bytes), image.appDescriptor != nil else { continue }
            guard image.hasSignatureSector else {
                f.correlation.append("\(file.name) at \(hex(file.address)) is not signed")
                continue
            }
            let inspection = SecureBootVerifier.inspect(image: file.bytes, sectorOffset: image.signatureSectorOffset)
            if let c = inspection.checks.first, c.block.crcValid, c.digestMatches, c.signatureValid == true {
                f.correlation.append("\(file.name) at \(hex(file.address)) is correctly signed: the app on flash is not this file (another build, or changed after it was written)")
            } else {
                f.correlation.append("\(file.name) at \(hex(file.address)) fails its own signature check: it was changed after signing")
            }
        }
    }

    /// With build artifacts: the key digests of bootloader and apps.
    static func correlateKeys(_ f: inout DoctorFinding, _ ctx: DoctorContext) {
        guard let artifacts = ctx.artifacts else { return }
        for file in artifacts.files {
            guard let image = try? ESPImage(file.bytes), image.hasSignatureSector else { continue }
            let inspection = SecureBootVerifier.inspect(image: file.bytes, sectorOffset: image.signatureSectorOffset)
            guard let block = inspection.checks.first?.block else { continue }
            f.correlation.append("\(file.name) at \(hex(file.address)): block 0 key digest \(block.keyDigest.hexString)")
        }
    }

    // MARK: DR003

    static let keyMismatch = DoctorRule(
        id: "DR003", name: "app-bootloader-key-mismatch", priority: 95,
        required: [[.contains("No application key digest matches the bootloader key digest"),
                    .contains("Application not signed with a valid private key")]],
        supporting: [.contains("Secure Boot v2 failed"), .contains("is not bootable")],
        cause: "the app is signed with a different key than the bootloader",
        explanation: "On the first boot the bootloader only enables Secure Boot V2 if one of the app's signature blocks uses a key whose digest matches the bootloader's; otherwise it returns ESP_FAIL (-1) and nothing is burned.",
        fix: ["sign the bootloader and all apps with the same key (espforge secure-boot sign --key KEY.pem)",
              "compare key digests: espforge secure-boot info bootloader.bin and app.bin"],
        refine: { f, ctx in correlateKeys(&f, ctx) })

    // MARK: DR004

    static let romSecureBootCheckFail = DoctorRule(
        id: "DR004", name: "rom-secure-boot-check-fail", priority: 92,
        required: [[.contains("secure boot check fail"), .contains("secure boot verification failed")]],
        supporting: [.contains("rst:")],
        cause: "Secure Boot is enabled and the ROM rejects the bootloader on flash",
        explanation: "With ABS_DONE_1 burned the ROM verifies the bootloader's signature block 0 against the key digest in BLK2 on every reset. It fails when the bootloader was re-flashed unsigned, signed with another key, or its header was rewritten after signing (esptool --flash-size/--flash-mode/--flash-freq other than keep).",
        fix: ["flash a bootloader signed with the key whose digest is in BLK2, with --flash-mode keep --flash-freq keep --flash-size keep",
              "check with espforge preflight --state/--efuse-summary before flashing (PF001, PF005, PF017)"],
        refine: { f, ctx in correlateBootloader(&f, ctx) })

    // MARK: DR005..

    static let coding34 = DoctorRule(
        id: "DR005", name: "secure-boot-v2-not-supported", priority: 88,
        required: [[.contains("Secure Boot v2 failed (262)")]],
        cause: "the chip cannot hold a Secure Boot V2 digest (3/4 eFuse coding scheme)",
        explanation: "Error 262 is ESP_ERR_NOT_SUPPORTED: on ESP32 the bootloader refuses Secure Boot V2 when BLK2 uses the 3/4 coding scheme, because the 256-bit digest does not fit.",
        fix: ["use ESP32 chips with coding scheme NONE (espefuse summary: CODING_SCHEME = 0) for Secure Boot V2"])

    static let minRevision = DoctorRule(
        id: "DR006", name: "min-chip-revision", priority: 85,
        required: [[.contains("Image requires chip rev"), .contains("can't run on lower chip revision")]],
        supporting: [.contains("chip revision"), .contains("is not bootable")],
        cause: "the image needs a newer chip revision than this chip",
        explanation: "The image's extended header names a minimum chip revision (CONFIG_ESP32_REV_MIN); the bootloader refuses images built for newer silicon.",
        fix: ["lower CONFIG_ESP32_REV_MIN (and rebuild), or use chips of the required revision — Secure Boot V2 on ESP32 needs v3.0"])

    static let chipID = DoctorRule(
        id: "DR007", name: "chip-id-mismatch", priority: 84,
        required: [[.contains("mismatch chip ID"), .contains("Mismatch chip id")]],
        cause: "the image was built for another chip type",
        explanation: "The extended header's chip id differs from the running chip.",
        fix: ["build for this chip (idf.py set-target …) and flash that image"])

    static let imageTooLarge = DoctorRule(
        id: "DR008", name: "image-larger-than-partition", priority: 80,
        required: [[.contains("doesn't fit in partition length")]],
        cause: "an image is longer than its partition",
        explanation: "The image (with its signature sector) runs past the end of the partition it was written to.",
        fix: ["enlarge the partition in the partition table, or make the app smaller; check with espforge preflight (PF009)"])

    static let partitionTable = DoctorRule(
        id: "DR009", name: "partition-table-unreadable", priority: 75,
        required: [[.contains("Failed to verify partition table"), .contains("invalid magic number"), .contains("load partition table error")]],
        supporting: [.contains("invalid magic number"), .contains("exceeds flash chip size"), .contains("load partition table error")],
        cause: "the bootloader cannot read the partition table",
        explanation: "Either no valid table is at CONFIG_PARTITION_TABLE_OFFSET (not flashed, flashed at another offset, or built with another offset), or flash encryption is on and the table was written as plaintext, so it decrypts to garbage (\"invalid magic number\"), or a partition runs past the flash size the bootloader's header gives (\"exceeds flash chip size\").",
        fix: ["write the partition table at the offset the bootloader was built with (CONFIG_PARTITION_TABLE_OFFSET)",
              "on an encrypted chip write it with --encrypt or as host-encrypted ciphertext",
              "keep every partition below the flash size in the bootloader header"],
        refine: { f, ctx in
            if ctx.has(.contains("exceeds flash chip size")) {
                f.cause = "a partition runs past the flash size the bootloader believes in"
            } else if ctx.has(.contains("invalid magic number")) {
                f.cause = "the partition table on flash is not readable (plaintext on an encrypted chip, or not written)"
            }
        })

    static let flashReadErr = DoctorRule(
        id: "DR010", name: "rom-flash-read-error", priority: 70,
        required: [[.contains("flash read err")]],
        supporting: [.contains("ets_main.c")],
        cause: "the ROM cannot load the bootloader: most often flash encryption is on and the bootloader was re-flashed as plaintext",
        explanation: "On ESP32 with FLASH_CRYPT_CNT odd the ROM reads the bootloader through decryption; a plaintext bootloader decrypts to garbage and the ROM prints \"flash read err, 1000\" and resets. The same message appears when the flash itself cannot be read (VDD_SDIO strapping on GPIO12 selecting 1.8 V for a 3.3 V flash, wiring, a damaged chip).",
        fix: ["on an encrypted chip flash the bootloader with --encrypt (development mode) or as ciphertext made with the device key",
              "if flash encryption is off: check GPIO12 strapping / VDD_SDIO eFuses and the flash wiring"])

    static let invalidHeaderGarbage = DoctorRule(
        id: "DR011", name: "rom-invalid-header", priority: 65,
        required: [[.contains("invalid header: 0x")]],
        excluded: [.contains("invalid header: 0xffffffff")],
        cause: "the bytes at the bootloader offset are not a bootloader image as the ROM reads them",
        explanation: "The ROM found a first word that is not an image header. Typical causes: ciphertext written to a chip whose flash encryption is off (--encrypt, or host-encrypted files), plaintext read through decryption on chips other than ESP32, an image written at the wrong offset, or corruption.",
        fix: ["write the plaintext bootloader at the chip's bootloader offset (ESP32: 0x1000) when encryption is off; on an encrypted chip write it encrypted",
              "check the plan with espforge preflight (PF012, PF016)"])

    static let blankFlash = DoctorRule(
        id: "DR012", name: "rom-blank-flash", priority: 60,
        required: [[.contains("invalid header: 0xffffffff")]],
        cause: "nothing is written at the bootloader offset (erased flash)",
        explanation: "The ROM reads 0xffffffff where the bootloader should start: the bootloader was never written, was written at another offset (ESP32 needs 0x1000; 0x0 is for S3/C3), or the flash was erased.",
        fix: ["write the bootloader at 0x1000 (ESP32) — esptool write-flash 0x1000 bootloader.bin"])

    static let appInvalidMagic = DoctorRule(
        id: "DR013", name: "app-invalid-magic", priority: 55,
        required: [[.contains("has invalid magic byte")]],
        supporting: [.contains("has invalid SPI mode"), .contains("has invalid SPI size"), .contains("is not bootable")],
        cause: "an app partition does not hold an image",
        explanation: "The bootloader found no image header at the partition start: the slot was never written (\"nothing flashed here?\") — normal for an unused OTA slot — or, when it also warns about an invalid SPI mode/size, the bytes are garbage: typically a plaintext app on a chip with flash encryption on, read through decryption.",
        fix: ["write the app at the partition offset listed in the partition table",
              "on an encrypted chip write the app with --encrypt or as ciphertext"],
        refine: { f, ctx in
            if ctx.has(.contains("has invalid SPI mode")) || ctx.has(.contains("has invalid SPI size")) {
                f.cause = "an app partition holds data that decrypts to garbage: plaintext app on an encrypted chip (or ciphertext on a plain one)"
                f.confidence = .medium
            } else {
                f.confidence = .medium
                f.priority = 30
            }
        })

    static let nvsKeys = DoctorRule(
        id: "DR014", name: "nvs-keys-partition", priority: 50,
        required: [[.contains("Failed to read NVS security cfg"), .contains("ESP_ERR_NVS_KEYS_NOT_INITIALIZED"),
                    .contains("ESP_ERR_NVS_CORRUPT_KEY_PART"), .contains("Failed to generate NVS encr-keys"),
                    .contains("nvs_keys partition")]],
        cause: "the app cannot read the NVS encryption keys from the nvs_keys partition",
        explanation: "NVS encryption reads its XTS keys from the data/nvs_keys partition through flash encryption. The partition is empty (keys never generated or written), was written as plaintext on an encrypted chip (so it decrypts to garbage), is not flagged `encrypted`, or its CRC is wrong.",
        fix: ["flag the nvs_keys partition `encrypted` in the partition table",
              "write the keys file (espforge nvs keygen / nvs_partition_gen) encrypted: with --encrypt or as ciphertext",
              "or leave the partition erased and let the app generate keys on first boot"])

    static let checksumFailed = DoctorRule(
        id: "DR015", name: "image-checksum", priority: 45,
        required: [[.contains("Checksum failed. Calculated")]],
        cause: "an image's segment data is damaged",
        explanation: "The XOR checksum over the segment data does not match: the write was incomplete or the flash is corrupt.",
        fix: ["write the image again (esptool write-flash verifies with MD5)"])

    static let simpleHashCorrupt = DoctorRule(
        id: "DR016", name: "image-hash-corrupt", priority: 40,
        required: [[.contains("Image hash failed - image is corrupt")]],
        excluded: [.contains("Secure boot signature verification failed")],
        cause: "an image's appended SHA-256 does not match its content",
        explanation: "The image changed after it was built: incomplete write, corruption, or a header rewritten by a tool that did not update the hash.",
        fix: ["write the image again exactly as built; keep --flash-size/--flash-mode/--flash-freq at `keep` for prepared images"])

    static let brownout = DoctorRule(
        id: "DR017", name: "brownout", priority: 38,
        required: [[.contains("Brownout detector was triggered")]],
        cause: "the supply voltage dropped below the brownout threshold",
        explanation: "The chip resets when the 3.3 V rail sags, typically when Wi-Fi starts or during flash writes; weak USB ports, long cables or small bulk capacitors cause it.",
        fix: ["power the board from a supply that holds 3.3 V under 500 mA peaks; add bulk capacitance near the module"])

    static let noBootableApp = DoctorRule(
        id: "DR018", name: "no-bootable-app", priority: 10,
        required: [[.contains("No bootable app partitions")]],
        supporting: [.contains("is not bootable")],
        confidence: .low,
        cause: "no app partition could be booted (a consequence: see the other findings for why each slot failed)",
        explanation: "The bootloader tried every app slot and each one failed verification or was empty.",
        fix: ["fix the cause reported for each slot; if none is reported, write a valid app at an app partition offset"])

    static let bootLoop = DoctorRule(
        id: "DR019", name: "boot-loop", priority: 5, confidence: .low,
        cause: "the chip is resetting in a loop",
        explanation: "The log shows the ROM reset banner several times; the reason printed after `rst:` (watchdog, software reset, brownout) and the errors before each reset say why.",
        fix: ["fix the error printed before the resets"],
        trigger: { ctx in
            let resets = ctx.lines(.contains("rst:0x"))
            // One power-on plus a reset printed twice (interleaved banners) is not a loop.
            var distinct: [BootLog.Line] = []
            for r in resets where !distinct.contains(where: { $0.text == r.text && r.number - $0.number <= 2 }) { distinct.append(r) }
            return distinct.count >= 3 ? Array(distinct.prefix(3)) : nil
        })
}
