import Crypto
import ESPCore
import SecureBoot

/// An image in flash that `esp_image` loaded or verified.
struct LoadedImage {
    var start: Int
    /// Length including checksum padding, appended hash and (SBv2, after verification) the
    /// 4 KiB signature sector.
    var length: Int
    var entry: UInt32
    var signatureSectorOffset: Int?
}

struct ImageLoadError: Error {
    var code: Int
}

/// Image load phase: the ESP-IDF bootloader's `esp_image` load/verify of an image in flash, with
/// its log lines (segments, checksum, appended hash, Secure Boot V2 signature). Used by the
/// bootloader for the app it boots and by the Secure Boot and flash-encryption phases for the
/// images they check.
enum ImageLoad {
    enum Mode { case load, verify, verifySilent }

    static let sixteenMB = 0x100_0000

    static func shouldMap(_ a: UInt32, _ chip: BootChip) -> Bool {
        chip.mappedRanges.contains { $0.contains(a) }
    }

    static func shouldLoad(_ a: UInt32, _ chip: BootChip) -> Bool { !shouldMap(a, chip) && a >= 0x1000_0000 }

    /// `image_load`: returns the image or an esp_err_t.
    static func load(_ s: inout BootState, at start: Int, partitionSize: Int, mode: Mode) -> Result<LoadedImage, ImageLoadError> {
        let silent = mode == .verifySilent
        let doLoad = mode == .load
        let isBootloader = start == s.chip.bootloaderOffset
        // SBv2 configured: SHA + signature on every image incl. the bootloader; otherwise the
        // simple hash on apps only (esptool may rewrite the bootloader header).
        let verifySHA = s.sdk.secureBootV2 ? true : !isBootloader
        func fail(_ message: String, _ code: Int = ESPErr.imageInvalid) -> Result<LoadedImage, ImageLoadError> {
            if !silent { s.E("esp_image", message) }
            return .failure(ImageLoadError(code: code))
        }
        if partitionSize > sixteenMB {
            return fail("partition size 0x\(String(partitionSize, radix: 16)) invalid, larger than 16MB", ESPErr.invalidArg)
        }
        guard let header = s.read(start, 24) else { return .failure(ImageLoadError(code: ESPErr.fail)) }
        if header[0] != 0xE9 {
            return fail("image at 0x\(String(start, radix: 16)) has invalid magic byte (nothing flashed here?)")
        }
        if let problem = chipMismatch(header, chipID: s.chip.imageChipID, chipRevision: s.device.description.chipRevision,
                                      minorRevision: s.minorRevision,
                                      check: s.dialect.chipRevisionCheck, isBootloader: isBootloader) {
            if !silent { s.E("boot_comm", problem) }
            return .failure(ImageLoadError(code: ESPErr.imageInvalid))
        }
        let count = Int(header[1])
        if count > 16 {
            return fail("image at 0x\(String(start, radix: 16)) segment count \(count) exceeds max 16")
        }
        var sha = SHA256()
        sha.update(data: header)
        var checksum: UInt8 = 0xEF
        var pos = start + 24
        for i in 0..<count {
            guard let sh = s.read(pos, 8) else {
                return fail("bootloader_flash_read failed at 0x\(String(pos, radix: 16))", ESPErr.fail)
            }
            sha.update(data: sh)
            let addr = sh[0..<4].loadLE(UInt32.self)
            let len = Int(sh[4..<8].loadLE(UInt32.self))
            let dataAddr = pos + 8
            if len % 4 != 0 || len >= sixteenMB {
                return fail("invalid segment length 0x\(String(len, radix: 16))")
            }
            let map = shouldMap(addr, s.chip)
            if map, dataAddr % 0x10000 != Int(addr) % 0x10000 {
                return fail("Segment \(i) load address 0x\(hex8(addr)), doesn't match data 0x\(hex8(dataAddr))")
            }
            let loads = doLoad && shouldLoad(addr, s.chip)
            if !silent {
                s.I("esp_image", "segment \(i): paddr=\(hex8(dataAddr)) vaddr=\(hex8(addr)) size=\(String(repeating: "0", count: max(0, 5 - String(len, radix: 16).count)) + String(len, radix: 16))h (\(padLeft(String(len), 6))) \(loads ? "load" : map ? "map" : "")")
            }
            guard let data = s.read(dataAddr, len) else {
                return fail("bootloader_mmap(0x\(String(dataAddr, radix: 16)), 0x\(String(len, radix: 16))) failed", ESPErr.fail)
            }
            for b in data { checksum ^= b }
            if verifySHA { sha.update(data: data) }
            pos = dataAddr + len
        }
        // Checksum byte at the end of the 16-byte-aligned block.
        let unpadded = pos - start
        let padLen = ((unpadded + 1 + 15) & ~15) - unpadded
        guard let pad = s.read(pos, padLen) else { return fail("bootloader_flash_read failed", ESPErr.fail) }
        let stored = pad[pad.count - 1]
        if stored != checksum {
            return fail("Checksum failed. Calculated 0x\(String(checksum, radix: 16)) read 0x\(String(stored, radix: 16))")
        }
        sha.update(data: pad)
        var length = unpadded + padLen
        let hashAppended = header[23] == 1
        var storedDigest = [UInt8](repeating: 0, count: 32)
        if hashAppended {
            guard let d = s.read(start + length, 32) else { return fail("bootloader_flash_read failed", ESPErr.fail) }
            storedDigest = d
            length += 32
        }
        if length > partitionSize {
            return fail("Image length \(length) doesn't fit in partition length \(partitionSize)")
        }
        var image = LoadedImage(start: start, length: length, entry: header[4..<8].loadLE(UInt32.self))
        // Time for the CPU-side SHA (roughly 1 ms per 20 KB on a 80 MHz bootloader).
        s.clock += Double(length) / 20_000_000.0
        guard verifySHA else { return .success(image) }
        if s.sdk.secureBootV2 {
            // verify_secure_boot_signature
            if !silent { s.I("esp_image", "Verifying image signature...") }
            if hashAppended { sha.update(data: storedDigest) }
            let end = start + length
            let paddedEnd = (end + 4095) & ~4095
            if paddedEnd > end {
                guard let padding = s.read(end, paddedEnd - end) else { return fail("bootloader_mmap failed", ESPErr.fail) }
                sha.update(data: padding)
            }
            let digest = sha.finalize()
            let sector = s.read(paddedEnd, 4096) ?? []
            if !verifyRSASignatureBlock(&s, sector, digest) {
                s.E("esp_image", "Secure boot signature verification failed")
                s.I("esp_image", "Calculating simple hash to check for corruption...")
                if let whole = s.read(start, length - 32) {
                    s.clock += Double(length) / 1_000_000.0
                    if Array(SHA256.hash(data: whole)) != storedDigest {
                        s.E("esp_image", "Image hash failed - image is corrupt")
                        s.W("esp_image", "image corrupted on flash")
                    } else {
                        s.W("esp_image", "image valid, signature bad")
                    }
                }
                return .failure(ImageLoadError(code: ESPErr.imageInvalid))
            }
            image.signatureSectorOffset = paddedEnd
            image.length = paddedEnd - start + 4096
            return .success(image)
        }
        if hashAppended, Array(sha.finalize()) != storedDigest {
            return fail("Image hash failed - image is corrupt")
        }
        return .success(image)
    }

    /// The chip ID and revision checks of the image header (`boot_comm`): nil when the image may
    /// run on this chip, else the line the bootloader logs.
    static func chipMismatch(_ header: [UInt8], chipID expected: UInt16 = 0, chipRevision chipRev: Int, minorRevision: Int = 0,
                             check: BootloaderDialect.ChipRevision,
                             isBootloader: Bool) -> String? {
        let chipID = header[12..<14].loadLE(UInt16.self)
        if chipID != expected { return "mismatch chip ID, expected \(expected), found \(chipID)" }
        switch check {
        case .major:
            let minRev = Int(header[14])
            if minRev > chipRev { return "can't run on lower chip revision, expected \(minRev), found \(chipRev)" }
        case .majorMinor:
            // v5.x: min_chip_rev_full (bytes 15..16) for every image, max_chip_rev_full (17..18)
            // for apps when set (neither 0 nor 0xFFFF); revisions as major * 100 + minor.
            let full = chipRev * 100 + minorRevision
            let minFull = Int(header[15..<17].loadLE(UInt16.self))
            let maxFull = Int(header[17..<19].loadLE(UInt16.self))
            func v(_ r: Int) -> String { "v\(r / 100).\(r % 100)" }
            if minFull > full { return "Image requires chip rev >= \(v(minFull)), but chip is \(v(full))" }
            if !isBootloader, maxFull != 0, maxFull != 0xFFFF, full > maxFull {
                return "Image requires chip rev <= \(v(maxFull)), but chip is \(v(full))"
            }
        }
        return nil
    }

    /// `esp_secure_boot_verify_rsa_signature_block` + the ROM verifier it calls.
    static func verifyRSASignatureBlock(_ s: inout BootState, _ sector: [UInt8], _ digest: SHA256Digest) -> Bool {
        if s.chip.fieldMap != nil { return verifyFieldMapSignature(&s, sector, digest) }
        var trusted: [UInt8] = []
        for w in s.device.efuses.readable(block: 2, layout: s.layout) { trusted.appendLE(w) }
        if !s.secureBootEnabled {
            if trusted.allSatisfy({ $0 == 0 }) {
                s.I("secure_boot_v2", "Secure boot V2 is not enabled yet and eFuse digest keys are not set")
                trusted = SignatureCheck.blockKeyDigest(sector) ?? trusted
            } else {
                s.I("secure_boot_v2", "Secure boot V2 is not enabled yet, using the digest burned in eFuse")
            }
        }
        s.I("secure_boot_v2", "Verifying with RSA-PSS...")
        s.clock += 0.008
        if let problem = SignatureCheck.check(sector: sector, imageDigest: digest, trustedKeyDigest: trusted) {
            s.plain("Sig block 0 invalid: \(problem)")
            s.E("secure_boot_v2", "Secure Boot V2 verification failed.")
            return false
        }
        s.I("secure_boot_v2", "Signature verified successfully!")
        return true
    }
}

extension ImageLoad {
    /// S3/C3 (v5.x `esp_secure_boot_verify_sbv2_signature_block`): up to three blocks, trusted
    /// when the block's key digest is in a live digest slot; before Secure Boot is enabled and
    /// with no digest burned yet, the image's own block keys (the first boot).
    static func verifyFieldMapSignature(_ s: inout BootState, _ sector: [UInt8], _ digest: SHA256Digest) -> Bool {
        func block(_ i: Int) -> [UInt8] {
            let at = i * SignatureBlock.size
            return sector.count >= at + SignatureBlock.size ? Array(sector[at..<(at + SignatureBlock.size)]) : []
        }
        var trusted = FieldMapROMPhase.digestSlots(s).filter { !$0.revoked }.map(\.digest)
        // v5.x: only the first boot without digests says so (the image's own keys are trusted);
        // digests already burned are used silently.
        if !s.secureBootEnabled, trusted.isEmpty {
            s.I("secure_boot_v2", "Secure boot V2 is not enabled yet and eFuse digest keys are not set")
            trusted = (0..<3).compactMap { SignatureCheck.blockKeyDigest(block($0)) }
        }
        s.I("secure_boot_v2", "Verifying with RSA-PSS...")
        s.clock += 0.008
        var firstProblem: (Int, String)?
        for i in 0..<3 {
            let b = block(i)
            guard let keyDigest = SignatureCheck.blockKeyDigest(b) else { break }
            guard trusted.contains(keyDigest) else {
                if firstProblem == nil { firstProblem = (i, "Key digest does not match eFuse") }
                continue
            }
            if let problem = SignatureCheck.check(sector: b, imageDigest: digest, trustedKeyDigest: keyDigest) {
                if firstProblem == nil { firstProblem = (i, problem) }
                continue
            }
            s.I("secure_boot_v2", "Signature verified successfully!")
            return true
        }
        let (n, problem) = firstProblem ?? (0, "Invalid magic byte")
        s.plain("Sig block \(n) invalid: \(problem)")
        s.E("secure_boot_v2", "Secure Boot V2 verification failed.")
        return false
    }
}
