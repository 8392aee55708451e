import Crypto
import ESPCore

/// The ESP-IDF bootloader's `esp_image` load/verify of an image in flash, with its log lines.
extension BootRun {
    enum ImageMode { case load, verify, verifySilent }

    struct LoadedImage {
        var start: Int
        /// Length including checksum padding, appended hash and (SBv2, after verification) the
        /// 4 KiB signature sector.
        var length: Int
        var entry: UInt32
        var signatureSectorOffset: Int?
    }

    static let sixteenMB = 0x100_0000

    static func shouldMap(_ a: UInt32) -> Bool {
        (a >= 0x400D_0000 && a < 0x4040_0000) || (a >= 0x3F40_0000 && a < 0x3F80_0000)
    }

    static func shouldLoad(_ a: UInt32) -> Bool { !shouldMap(a) && a >= 0x1000_0000 }

    /// `image_load`: returns the image or an esp_err_t.
    func loadImage(at start: Int, partitionSize: Int, mode: ImageMode) -> Result<LoadedImage, ImageLoadError> {
        let silent = mode == .verifySilent
        let doLoad = mode == .load
        let isBootloader = start == 0x1000
        // SBv2 configured: SHA + signature on every image incl. the bootloader; otherwise the
        // simple hash on apps only (esptool may rewrite the bootloader header).
        let verifySHA = sdk.secureBootV2 ? true : !isBootloader
        func fail(_ message: String, _ code: Int = ESPErr.imageInvalid) -> Result<LoadedImage, ImageLoadError> {
            if !silent { E("esp_image", message) }
            return .failure(ImageLoadError(code: code))
        }
        if partitionSize > Self.sixteenMB {
            return fail("partition size 0x\(String(partitionSize, radix: 16)) invalid, larger than 16MB", ESPErr.invalidArg)
        }
        guard let header = read(start, 24) else { return .failure(ImageLoadError(code: ESPErr.fail)) }
        if header[0] != 0xE9 {
            return fail("image at 0x\(String(start, radix: 16)) has invalid magic byte (nothing flashed here?)")
        }
        let chipID = header[12..<14].loadLE(UInt16.self)
        if chipID != 0 {
            if !silent { E("boot_comm", "mismatch chip ID, expected 0, found \(chipID)") }
            return .failure(ImageLoadError(code: ESPErr.imageInvalid))
        }
        let chipRev = device.description.chipRevision
        switch dialect.chipRevisionCheck {
        case .major:
            let minRev = Int(header[14])
            if minRev > chipRev {
                if !silent { E("boot_comm", "can't run on lower chip revision, expected \(minRev), found \(chipRev)") }
                return .failure(ImageLoadError(code: ESPErr.imageInvalid))
            }
        case .majorMinor:
            // v5.x: min_chip_rev_full (bytes 15..16) for every image, max_chip_rev_full (17..18)
            // for apps when set (neither 0 nor 0xFFFF); revisions as major * 100 + minor.
            let full = chipRev * 100
            let minFull = Int(header[15..<17].loadLE(UInt16.self))
            let maxFull = Int(header[17..<19].loadLE(UInt16.self))
            func v(_ r: Int) -> String { "v\(r / 100).\(r % 100)" }
            if minFull > full {
                if !silent { E("boot_comm", "Image requires chip rev >= \(v(minFull)), but chip is \(v(full))") }
                return .failure(ImageLoadError(code: ESPErr.imageInvalid))
            }
            if !isBootloader, maxFull != 0, maxFull != 0xFFFF, full > maxFull {
                if !silent { E("boot_comm", "Image requires chip rev <= \(v(maxFull)), but chip is \(v(full))") }
                return .failure(ImageLoadError(code: ESPErr.imageInvalid))
            }
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
            guard let sh = read(pos, 8) else {
                return fail("bootloader_flash_read failed at 0x\(String(pos, radix: 16))", ESPErr.fail)
            }
            sha.update(data: sh)
            let addr = sh[0..<4].loadLE(UInt32.self)
            let len = Int(sh[4..<8].loadLE(UInt32.self))
            let dataAddr = pos + 8
            if len % 4 != 0 || len >= Self.sixteenMB {
                return fail("invalid segment length 0x\(String(len, radix: 16))")
            }
            let map = Self.shouldMap(addr)
            if map, dataAddr % 0x10000 != Int(addr) % 0x10000 {
                return fail("Segment \(i) load address 0x\(hex8(addr)), doesn't match data 0x\(hex8(dataAddr))")
            }
            let loads = doLoad && Self.shouldLoad(addr)
            if !silent {
                I("esp_image", "segment \(i): paddr=\(hex8(dataAddr)) vaddr=\(hex8(addr)) size=\(String(repeating: "0", count: max(0, 5 - String(len, radix: 16).count)) + String(len, radix: 16))h (\(padLeft(String(len), 6))) \(loads ? "load" : map ? "map" : "")")
            }
            guard let data = read(dataAddr, len) else {
                return fail("bootloader_mmap(0x\(String(dataAddr, radix: 16)), 0x\(String(len, radix: 16))) failed", ESPErr.fail)
            }
            for b in data { checksum ^= b }
            if verifySHA { sha.update(data: data) }
            pos = dataAddr + len
        }
        // Checksum byte at the end of the 16-byte-aligned block.
        let unpadded = pos - start
        let padLen = ((unpadded + 1 + 15) & ~15) - unpadded
        guard let pad = read(pos, padLen) else { return fail("bootloader_flash_read failed", ESPErr.fail) }
        let stored = pad[pad.count - 1]
        if stored != checksum {
            return fail("Checksum failed. Calculated 0x\(String(checksum, radix: 16)) read 0x\(String(stored, radix: 16))")
        }
        sha.update(data: pad)
        var length = unpadded + padLen
        let hashAppended = header[23] == 1
        var storedDigest = [UInt8](repeating: 0, count: 32)
        if hashAppended {
            guard let d = read(start + length, 32) else { return fail("bootloader_flash_read failed", ESPErr.fail) }
            storedDigest = d
            length += 32
        }
        if length > partitionSize {
            return fail("Image length \(length) doesn't fit in partition length \(partitionSize)")
        }
        var image = LoadedImage(start: start, length: length, entry: header[4..<8].loadLE(UInt32.self))
        // Time for the CPU-side SHA (roughly 1 ms per 20 KB on a 80 MHz bootloader).
        clock += Double(length) / 20_000_000.0
        guard verifySHA else { return .success(image) }
        if sdk.secureBootV2 {
            // verify_secure_boot_signature
            if !silent { I("esp_image", "Verifying image signature...") }
            if hashAppended { sha.update(data: storedDigest) }
            let end = start + length
            let paddedEnd = (end + 4095) & ~4095
            if paddedEnd > end {
                guard let padding = read(end, paddedEnd - end) else { return fail("bootloader_mmap failed", ESPErr.fail) }
                sha.update(data: padding)
            }
            let digest = sha.finalize()
            let sector = read(paddedEnd, 4096) ?? []
            if !verifyRSASignatureBlock(sector, digest) {
                E("esp_image", "Secure boot signature verification failed")
                I("esp_image", "Calculating simple hash to check for corruption...")
                if let whole = read(start, length - 32) {
                    clock += Double(length) / 1_000_000.0
                    if Array(SHA256.hash(data: whole)) != storedDigest {
                        E("esp_image", "Image hash failed - image is corrupt")
                        W("esp_image", "image corrupted on flash")
                    } else {
                        W("esp_image", "image valid, signature bad")
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

    /// `esp_secure_boot_verify_rsa_signature_block` + the ROM verifier it calls.
    func verifyRSASignatureBlock(_ sector: [UInt8], _ digest: SHA256Digest) -> Bool {
        var trusted: [UInt8] = []
        for w in device.efuses.readable(block: 2, layout: layout) { trusted.appendLE(w) }
        if !secureBootEnabled {
            if trusted.allSatisfy({ $0 == 0 }) {
                I("secure_boot_v2", "Secure boot V2 is not enabled yet and eFuse digest keys are not set")
                trusted = SignatureCheck.blockKeyDigest(sector) ?? trusted
            } else {
                I("secure_boot_v2", "Secure boot V2 is not enabled yet, using the digest burned in eFuse")
            }
        }
        I("secure_boot_v2", "Verifying with RSA-PSS...")
        clock += 0.008
        if let problem = SignatureCheck.check(sector: sector, imageDigest: digest, trustedKeyDigest: trusted) {
            plain("Sig block 0 invalid: \(problem)")
            E("secure_boot_v2", "Secure Boot V2 verification failed.")
            return false
        }
        I("secure_boot_v2", "Signature verified successfully!")
        return true
    }
}

struct ImageLoadError: Error {
    var code: Int
}
