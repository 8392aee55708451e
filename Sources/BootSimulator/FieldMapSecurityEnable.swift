import ESPCore
import EFuse

/// ESP32-S3 / ESP32-C3: what the ESP-IDF v5.x bootloader does on a first boot with Secure Boot V2
/// and/or flash encryption configured, on chips whose keys live in key blocks with purposes.
/// Steps and log lines from the ESP-IDF v5.x sources and security guides (read for facts) and
/// published S3 boot logs; not recorded here (docs/virtual-device-chips.md).
enum FieldMapSecurityEnable {
    static let slots = 3

    /// Key block index (0-5) whose purpose is `purpose`, if any.
    static func keyBlock(_ s: BootState, purpose: Int) -> Int? {
        (0..<6).first { Int(s.raw("KEY_PURPOSE_\($0)")) == purpose }
    }

    /// `esp_efuse_key_block_unused`: purpose USER, cells empty, neither the block nor its purpose
    /// protected.
    static func unusedKeyBlock(_ s: BootState, excluding taken: Set<Int> = []) -> Int? {
        guard let map = s.chip.map else { return nil }
        return (0..<6).first { k in
            guard !taken.contains(k) else { return false }
            let block = map.firstKeyBlock + k
            guard s.raw("KEY_PURPOSE_\(k)") == 0, s.blockRaw(block).allSatisfy({ $0 == 0 }) else { return false }
            if let wp = map.blockWriteProtectBits[block], s.wrDis(wp) { return false }
            if let rp = map.blockReadProtectBits[block], s.rdDis(rp) { return false }
            if let f = map.field(named: "KEY_PURPOSE_\(k)"), let wp = f.writeProtect, s.wrDis(wp) { return false }
            return true
        }
    }

    /// `esp_efuse_write_key`: the block's words, its purpose, write protection of both, and read
    /// protection for secret purposes (XTS keys).
    static func writeKey(_ s: inout BootState, keyBlock k: Int, purpose: Int, words: [UInt32]) {
        guard let map = s.chip.map else { return }
        let block = map.firstKeyBlock + k
        s.I("efuse", "Writing EFUSE_BLK_KEY\(k) with purpose \(purpose)")
        s.writeBlockWords(block, words)
        s.write("KEY_PURPOSE_\(k)", UInt64(purpose))
        if let f = map.field(named: "KEY_PURPOSE_\(k)"), let wp = f.writeProtect { s.write("WR_DIS", 1 << UInt64(wp)) }
        if let wp = map.blockWriteProtectBits[block] { s.write("WR_DIS", 1 << UInt64(wp)) }
        if map.keyPurposes.first(where: { $0.value == purpose })?.readProtected == true,
           let rp = map.blockReadProtectBits[block] {
            s.write("RD_DIS", 1 << UInt64(rp))
        }
    }

    // MARK: Secure Boot V2

    /// `esp_secure_boot_v2_permanently_enable` (v5.x) on an S3/C3: digests of the bootloader's
    /// blocks burned into free key blocks (or the pre-loaded slots read, revoked ones skipped), at
    /// least one app key matching a live bootloader key, the slots above the bootloader's key
    /// count revoked, the secure features, one batch.
    static func enableSecureBoot(_ s: inout BootState, app: LoadedImage) -> Int {
        let started = SecureBootEnablePhase.start(&s)
        guard let boot = started.boot, let map = s.chip.map else { return started.code }
        let tag = "secure_boot_v2"
        // A slot is present when a key block has its purpose (such a block is never "unused").
        let slotBlocks = (0..<slots).map { keyBlock(s, purpose: s.chip.digestPurposes[$0]) }
        let present = slotBlocks.contains { $0 != nil }
        s.I(tag, "Secure boot digests \(present ? "already present" : "absent, generating..")")
        var bootDigests: [[UInt8]] = []
        if !present {
            bootDigests = keyDigests(&s, of: boot)
            guard !bootDigests.isEmpty else {
                return SecureBootEnablePhase.abort(&s, "No valid bootloader signature blocks found.")
            }
            s.I(tag, "\(bootDigests.count) signature block(s) found appended to the bootloader.")
            s.I(tag, "Burning public key hash to eFuse")
            var taken: Set<Int> = []  // blocks claimed in this (not yet committed) batch
            var chosen: [Int] = []
            for _ in bootDigests {
                guard let k = unusedKeyBlock(s, excluding: taken) else { break }
                taken.insert(k)
                chosen.append(k)
            }
            guard chosen.count == bootDigests.count else {
                return SecureBootEnablePhase.abort(&s, "Bootloader signatures(\(bootDigests.count)) more than available key slots.")
            }
            for (i, (k, d)) in zip(chosen, bootDigests).enumerated() {
                writeKey(&s, keyBlock: k, purpose: s.chip.digestPurposes[i], words: SecureBootEnablePhase.digestWords(d))
            }
        } else {
            for (i, k) in slotBlocks.enumerated() {
                guard let k else { continue }
                if s.raw("SECURE_BOOT_KEY_REVOKE\(i)") != 0 { continue }
                let block = map.firstKeyBlock + k
                if let rp = map.blockReadProtectBits[block], s.rdDis(rp) {
                    return SecureBootEnablePhase.abort(&s, "Key digest (BLK\(block)) read protected, aborting...")
                }
                if s.blockRaw(block).allSatisfy({ $0 == 0 }) {
                    return SecureBootEnablePhase.abort(&s, "\(block) eFuse block is empty, aborting...")
                }
                if let wp = map.blockWriteProtectBits[block] { s.write("WR_DIS", 1 << UInt64(wp)) }
                var d: [UInt8] = []
                for w in s.blockRaw(block).prefix(8) { d.appendLE(w) }
                bootDigests.append(d)
            }
            guard !bootDigests.isEmpty else {
                return SecureBootEnablePhase.abort(&s, "No valid pre-loaded public key digest in eFuse")
            }
            s.W(tag, "Using pre-loaded public key digest in eFuse")
        }
        let appDigests = keyDigests(&s, of: app)
        guard !appDigests.isEmpty else {
            return SecureBootEnablePhase.abort(&s, "No valid applications signature blocks found.")
        }
        s.I(tag, "\(appDigests.count) signature block(s) found appended to the app.")
        if appDigests.count > bootDigests.count {
            s.W(tag, "App has \(appDigests.count) signature blocks but bootloader only has \(bootDigests.count). Some keys missing from bootloader?")
        }
        // Every match is logged; a revoked index is skipped (REVOKEn read by the digest's index).
        var matched = false
        for (i, b) in bootDigests.enumerated() {
            if s.raw("SECURE_BOOT_KEY_REVOKE\(i)") != 0 {
                s.I(tag, "Key block(\(i)) has been revoked.")
                continue
            }
            for (j, a) in appDigests.enumerated() where a == b {
                s.I(tag, "Application key(\(j)) matches with bootloader key(\(i)).")
                matched = true
            }
        }
        guard matched else {
            return SecureBootEnablePhase.abort(&s, "No application key digest matches the bootloader key digest.")
        }
        for i in bootDigests.count..<slots {
            s.I(tag, "Revoking empty key digest slot (\(i))...")
            s.write("SECURE_BOOT_KEY_REVOKE\(i)", 1)
        }
        s.I(tag, "blowing secure boot efuse...")
        secureBootFeatures(&s)
        s.batchCommit()
        s.I(tag, "Secure boot permanently enabled")
        return 0
    }

    /// `esp_secure_boot_enable_secure_features` (v5.x, S3 and C3 alike): direct boot off, the
    /// download-mode choice, JTAG (pad, USB, every SOFT_DIS_JTAG bit), aggressive revocation
    /// when configured, SECURE_BOOT_EN, then the RD_DIS lock unless flash encryption still has
    /// to read-protect its key.
    static func secureBootFeatures(_ s: inout BootState) {
        let tag = "secure_boot"
        s.write("DIS_DIRECT_BOOT", 1)
        if s.sdk.secureROMDownload {
            s.I(tag, "Enabling Security download mode...")
            s.write("ENABLE_SECURITY_DOWNLOAD", 1)
        } else if s.sdk.disableROMDownload {
            s.I(tag, "Disable ROM Download mode...")
            s.write("DIS_DOWNLOAD_MODE", 1)
        } else {
            s.W(tag, "UART ROM Download mode kept enabled - SECURITY COMPROMISED")
        }
        if s.sdk.allowJTAG { s.W(tag, "Not disabling JTAG - SECURITY COMPROMISED") } else {
            s.I(tag, "Disable hardware & software JTAG...")
            s.write("DIS_PAD_JTAG", 1)
            s.write("DIS_USB_JTAG", 1)
            s.write("SOFT_DIS_JTAG", 0b111)
        }
        if s.sdk.aggressiveRevoke { s.write("SECURE_BOOT_AGGRESSIVE_REVOKE", 1) }
        s.write("SECURE_BOOT_EN", 1)
        if s.sdk.allowEFuseReadDisable {
            s.W(tag, "Allowing read disabling of additional efuses - SECURITY COMPROMISED")
        } else if !s.sdk.flashEncryption || s.flashEncryptionEnabled {
            s.I(tag, "Prevent read disabling of additional efuses...")
            s.write("WR_DIS", 1 << 0)
        }
    }

    /// Key digests of the valid signature blocks (up to three) of an image that verified.
    static func keyDigests(_ s: inout BootState, of image: LoadedImage) -> [[UInt8]] {
        guard let offset = image.signatureSectorOffset, let sector = s.read(offset, 4096) else { return [] }
        var out: [[UInt8]] = []
        for i in 0..<slots {
            let at = i * 1216
            guard let d = SignatureCheck.blockKeyDigest(Array(sector[at...])) else { break }
            out.append(d)
        }
        s.clock += 0.008 * Double(max(1, out.count))
        if !out.isEmpty {
            s.I("secure_boot_v2", "Digests successfully calculated, \(out.count) valid signatures (image offset 0x\(String(image.start, radix: 16)))")
        }
        return out
    }

    // MARK: flash encryption

    /// `esp_flash_encrypt_check_and_update` (v5.x) on an S3/C3: XTS-AES-128 key into a free key
    /// block (purpose XTS_AES_128_KEY, read- and write-protected), hardening eFuses, contents
    /// encrypted in place, SPI_BOOT_CRYPT_CNT advanced.
    static func enableFlashEncryption(_ s: inout BootState) -> Int {
        let cnt = s.flashCryptCnt
        let cntLocked = s.field("SPI_BOOT_CRYPT_CNT").flatMap(\.writeProtect).map { s.wrDis($0) } ?? false
        if s.flashEncryptionEnabled {
            let left = cntLocked ? 0 : (3 - cnt.nonzeroBitCount) / 2
            s.I("flash_encrypt", "flash encryption is enabled (\(left) plaintext flashes left)")
            return 0
        }
        if s.sdk.flashEncryptionRequireAlreadyEnabled {
            s.E("flash_encrypt", "flash encryption is not enabled, and SECURE_FLASH_REQUIRE_ALREADY_ENABLED is set, refusing to boot.")
            return ESPErr.invalidState
        }
        if cntLocked {
            s.E("flash_encrypt", "Flash Encryption cannot be enabled (CRYPT_CNT (\(cnt.nonzeroBitCount)) is write protected)")
            return ESPErr.fail
        }
        if cnt == 0 {
            let err = initialiseKey(&s)
            if err != 0 {
                s.E("flash_encrypt", "Initialization of Flash encryption key failed (\(err))")
                return err
            }
        }
        let err = FlashEncryptionEnablePhase.encryptFlashContents(&s)
        if err != 0 {
            s.E("flash_encrypt", "Encryption flash contents failed (\(err))")
            return err
        }
        FlashEncryptionEnablePhase.enableCounter(&s, "SPI_BOOT_CRYPT_CNT", allBits: 0b111, current: cnt)
        return 0
    }

    static func initialiseKey(_ s: inout BootState) -> Int {
        s.batchBegin()
        guard let vc = s.chip.fieldMap, let map = s.chip.map else { return ESPErr.notSupported }
        // XTS-AES-256 (S3, CONFIG_SECURE_FLASH_ENCRYPTION_AES256): two blocks; else one 128-bit key.
        let purposes: [Int]
        if s.sdk.flashEncryptionAES256, let pair = vc.xts256Purposes {
            if keyBlock(s, purpose: vc.xts128Purpose) != nil {
                s.E("flash_encrypt", "XTS_AES_128_KEY is already in use, XTS_AES_256_KEY_1/2 can not be used")
                s.batchCancel()
                return ESPErr.invalidState
            }
            purposes = pair
        } else {
            purposes = [vc.xts128Purpose]
        }
        let found = purposes.map { keyBlock(s, purpose: $0) }
        if found.count == 2, (found[0] == nil) != (found[1] == nil) {
            s.E("flash_encrypt", "Invalid efuse key blocks: Both AES-256 key blocks must be set.")
            s.batchCancel()
            return ESPErr.invalidState
        }
        if found.allSatisfy({ $0 == nil }) {
            s.I("flash_encrypt", "Generating new flash encryption key...")
            var taken: Set<Int> = []
            var blocks: [Int] = []
            for _ in purposes {
                guard let k = unusedKeyBlock(s, excluding: taken) else { break }
                taken.insert(k)
                blocks.append(k)
            }
            guard blocks.count == purposes.count else {
                s.E("flash_encrypt", "Not enough free efuse key blocks (need \(purposes.count)) to continue")
                s.batchCancel()
                return ESPErr.notEnoughKeyBlocks
            }
            for (k, purpose) in zip(blocks, purposes) {
                let words = (0..<8).map { _ in UInt32(truncatingIfNeeded: s.rng.next()) }
                writeKey(&s, keyBlock: k, purpose: purpose, words: words)
            }
        } else {
            // A pre-loaded key must be read- and write-protected, its purpose too.
            for k in found.compactMap({ $0 }) {
                let block = map.firstKeyBlock + k
                let wp = map.blockWriteProtectBits[block].map { s.wrDis($0) } ?? false
                let rp = map.blockReadProtectBits[block].map { s.rdDis($0) } ?? false
                let pp = map.field(named: "KEY_PURPOSE_\(k)")?.writeProtect.map { s.wrDis($0) } ?? false
                guard wp && rp && pp else {
                    s.E("flash_encrypt", "Invalid key state, check read&write protection for key and keypurpose(if exists)")
                    s.batchCancel()
                    return ESPErr.invalidState
                }
            }
            s.I("flash_encrypt", "Using pre-loaded flash encryption key in efuse")
        }
        // esp_flash_encryption_enable_secure_features (v5.x S3/C3).
        let sdk = s.sdk
        let cacheFields = s.chip.name == "esp32s3" ? ["DIS_DOWNLOAD_DCACHE", "DIS_DOWNLOAD_ICACHE"] : ["DIS_DOWNLOAD_ICACHE"]
        let hardening: [(Bool, String, String, [String])] = [
            (sdk.uartAllowEncrypt, "Not disabling UART bootloader encryption",
             "Disable UART bootloader encryption...", ["DIS_DOWNLOAD_MANUAL_ENCRYPT"]),
            (sdk.uartAllowCache, "Not disabling UART bootloader cache - SECURITY COMPROMISED",
             "Disable UART bootloader cache...", cacheFields),
            (sdk.allowJTAG, "Not disabling JTAG - SECURITY COMPROMISED", "Disable JTAG...", ["DIS_PAD_JTAG", "DIS_USB_JTAG"]),
        ]
        for (kept, warning, info, fields) in hardening {
            if kept { s.W("flash_encrypt", warning) } else {
                s.I("flash_encrypt", info)
                for f in fields { s.write(f, 1) }
            }
        }
        s.write("DIS_DIRECT_BOOT", 1)
        // The RD_DIS lock Secure Boot left for now (no log line), and the write protection of
        // DIS_ICACHE (WR_DIS bit 2, shared with the download/JTAG fuses above).
        if sdk.secureBootV2 && !sdk.allowEFuseReadDisable { s.write("WR_DIS", 1 << 0) }
        if !sdk.skipWriteProtectCache { s.write("WR_DIS", 1 << 2) }
        s.batchCommit()
        return 0
    }
}

extension BootState {
    /// Key purposes that make a key block the S3/C3 flash-encryption key.
    var fieldMapXTSPurposes: [Int] {
        guard let vc = chip.fieldMap else { return [] }
        return [vc.xts128Purpose] + (vc.xts256Purposes ?? [])
    }
}
