import ESPCore

/// Secure Boot enable phase: the bootloader's `esp_secure_boot_v2_permanently_enable` on its first
/// boot with `CONFIG_SECURE_BOOT_V2_ENABLED` (v4.4's ESP32 path or v5.x's shared path, per the
/// dialect): the bootloader and app key digests checked against each other, the digest burned
/// into BLK2 when it is empty, ABS_DONE_1 and the hardening eFuses burned in one batch.
/// Returns an esp_err_t (0 = enabled or already on).
enum SecureBootEnablePhase {
    static func run(_ s: inout BootState, app: LoadedImage) -> Int {
        s.I("secure_boot_v2", "enabling secure boot v2...")
        if s.secureBootEnabled {
            s.I("secure_boot_v2", s.dialect.secureBootAlreadyEnabled)
            return 0
        }
        if s.sdk.secureBootRequireAlreadyEnabled {
            s.E("secure_boot_v2", s.dialect.secureBootRequireAlreadyEnabled)
            return ESPErr.invalidState
        }
        if s.chip.fieldMap != nil { return FieldMapSecurityEnable.enableSecureBoot(&s, app: app) }
        switch s.dialect.secureBoot {
        case .esp32V44: return enableV44(&s, app: app)
        case .sharedV5: return enableV5(&s, app: app)
        }
    }

    /// What both IDF versions do first when enabling Secure Boot V2: open an eFuse batch, refuse
    /// coding schemes, load and verify the bootloader image. No image: stopped (batch cancelled)
    /// with the error `code`.
    static func start(_ s: inout BootState) -> (boot: LoadedImage?, code: Int) {
        s.batchBegin()
        let coding = s.raw("CODING_SCHEME")
        if coding != 0 && coding != 3 {
            s.E("secure_boot_v2", "No coding schemes are supported in secure boot v2.(Detected scheme: 0x\(String(coding, radix: 16)))")
            s.batchCancel()
            return (nil, ESPErr.notSupported)
        }
        let boot = s.chip.bootloaderOffset
        switch ImageLoad.load(&s, at: boot, partitionSize: s.sdk.partitionTableOffset - boot, mode: .verify) {
        case .failure(let e):
            s.E("secure_boot_v2", "bootloader image appears invalid! error \(e.code)")
            s.batchCancel()
            return (nil, e.code)
        case .success(let b):
            return (b, 0)
        }
    }

    /// Stops the enable with `message` logged: the batch is cancelled, nothing is burned.
    static func abort(_ s: inout BootState, _ message: String) -> Int {
        s.E("secure_boot_v2", message)
        s.batchCancel()
        return ESPErr.fail
    }

    /// The BLK2 words holding a 32-byte key digest.
    static func digestWords(_ d: [UInt8]) -> [UInt32] {
        var w = [UInt32](repeating: 0, count: 8)
        for i in 0..<8 { w[i] = d[(i * 4)..<(i * 4 + 4)].loadLE(UInt32.self) }
        return w
    }

    /// The digest already in BLK2 (as bytes).
    static func storedDigest(_ s: BootState) -> [UInt8] {
        var d: [UInt8] = []
        for w in s.blockRaw(2) { d.appendLE(w) }
        return d
    }

    /// ESP-IDF v4.4: the ESP32-specific enable path.
    static func enableV44(_ s: inout BootState, app: LoadedImage) -> Int {
        let started = start(&s)
        guard let boot = started.boot else { return started.code }
        let bootSector = boot.signatureSectorOffset.flatMap { s.read($0, 4096) } ?? []
        let bootDigest: [UInt8]
        let blk2 = s.blockRaw(2)
        if !s.wrDis(8) && !s.rdDis(1) && blk2.allSatisfy({ $0 == 0 }) {
            guard let d = SignatureCheck.blockKeyDigest(bootSector) else {
                return abort(&s, "No valid bootloader signature blocks found.")
            }
            bootDigest = d
            s.I("secure_boot_v2", "Burning public key hash to efuse")
            s.writeBlockWords(2, digestWords(d))
        } else {
            if s.rdDis(1) { return abort(&s, "Secure Boot V2 digest in eFuse BLK2 is read-protected") }
            s.W("secure_boot_v2", "Using pre-loaded public key digest in eFuse")
            bootDigest = storedDigest(s)
        }
        let appSector = app.signatureSectorOffset.flatMap { s.read($0, 4096) } ?? []
        guard let appDigest = SignatureCheck.blockKeyDigest(appSector) else {
            return abort(&s, "Application signature block is invalid.")
        }
        if appDigest != bootDigest { return abort(&s, "Application not signed with a valid private key.") }
        s.write("WR_DIS", 1 << 8)
        // esp_secure_boot_enable_secure_features (ESP32, V2)
        s.write("ABS_DONE_1", 1)
        if s.sdk.allowJTAG { s.W("secure_boot_v2", "Not disabling JTAG - SECURITY COMPROMISED") } else { s.write("JTAG_DISABLE", 1) }
        if s.sdk.allowROMBasic {
            s.W("secure_boot_v2", "Not disabling ROM BASIC fallback - SECURITY COMPROMISED")
        } else {
            s.write("CONSOLE_DEBUG_DISABLE", 1)
        }
        if s.sdk.disableROMDownload { s.write("UART_DOWNLOAD_DIS", 1) }
        let fePending = s.sdk.flashEncryption && !s.flashEncryptionEnabled
        if !s.sdk.allowEFuseReadDisable && !fePending {
            s.I("secure_boot_v2", "Prevent read disabling of additional efuses...")
            s.write("WR_DIS", 1 << 0)
        }
        s.batchCommit()
        s.I("secure_boot_v2", "Secure boot permanently enabled")
        return 0
    }

    /// ESP-IDF v5.x: key digests of every valid signature block (ESP32: one), burned with
    /// `esp_efuse_write_keys` when BLOCK2 is unused, matched against the app's, then the ESP32
    /// secure features.
    static func enableV5(_ s: inout BootState, app: LoadedImage) -> Int {
        let started = start(&s)
        guard let boot = started.boot else { return started.code }
        let blk2 = s.blockRaw(2)
        // esp_efuse_key_block_unused: empty and neither read- nor write-protected.
        let hasDigest = !(blk2.allSatisfy { $0 == 0 } && !s.wrDis(8) && !s.rdDis(1))
        s.I("secure_boot_v2", "Secure boot digests \(hasDigest ? "already present" : "absent, generating..")")
        let bootDigest: [UInt8]
        if !hasDigest {
            guard let d = keyDigests(&s, of: boot) else {
                return abort(&s, "No valid bootloader signature blocks found.")
            }
            s.I("secure_boot_v2", "1 signature block(s) found appended to the bootloader.")
            s.I("secure_boot_v2", "Burning public key hash to eFuse")
            // esp_efuse_write_keys: ESP32 BLOCK2 is EFUSE_BLK_KEY1, purpose 3 = SECURE_BOOT_V2;
            // the key block is write-protected with it.
            s.I("efuse", "Writing EFUSE_BLK_KEY1 with purpose 3")
            s.writeBlockWords(2, digestWords(d))
            s.write("WR_DIS", 1 << 8)
            bootDigest = d
        } else {
            if s.rdDis(1) { return abort(&s, "Key digest (BLK2) read protected, aborting...") }
            if blk2.allSatisfy({ $0 == 0 }) { return abort(&s, "2 eFuse block is empty, aborting...") }
            s.write("WR_DIS", 1 << 8)
            s.W("secure_boot_v2", "Using pre-loaded public key digest in eFuse")
            bootDigest = storedDigest(s)
        }
        guard let appDigest = keyDigests(&s, of: app) else {
            return abort(&s, "No valid applications signature blocks found.")
        }
        s.I("secure_boot_v2", "1 signature block(s) found appended to the app.")
        guard appDigest == bootDigest else {
            return abort(&s, "No application key digest matches the bootloader key digest.")
        }
        s.I("secure_boot_v2", "Application key(0) matches with bootloader key(0).")
        s.I("secure_boot_v2", "blowing secure boot efuse...")
        // esp_secure_boot_enable_secure_features (ESP32, V2)
        let tag = s.dialect.secureBootFeaturesTag
        s.write("ABS_DONE_1", 1)
        if s.sdk.allowJTAG { s.W(tag, "Not disabling JTAG - SECURITY COMPROMISED") } else {
            s.I(tag, "Disable JTAG...")
            s.write("JTAG_DISABLE", 1)
        }
        if s.sdk.allowROMBasic { s.W(tag, "Not disabling ROM BASIC fallback - SECURITY COMPROMISED") } else {
            s.I(tag, "Disable ROM BASIC interpreter fallback...")
            s.write("CONSOLE_DEBUG_DISABLE", 1)
        }
        if s.sdk.disableROMDownload {
            s.I(tag, "Disable ROM Download mode...")
            s.write("UART_DOWNLOAD_DIS", 1)
        } else {
            s.W(tag, "UART ROM Download mode kept enabled - SECURITY COMPROMISED")
        }
        if s.sdk.allowEFuseReadDisable {
            s.W(tag, "Allowing read disabling of additional efuses - SECURITY COMPROMISED")
        } else if !s.sdk.flashEncryption || s.flashEncryptionEnabled {
            // With flash encryption still to come, RD_DIS stays writable until its key is protected.
            s.I(tag, "Prevent read disabling of additional efuses...")
            s.write("WR_DIS", 1 << 0)
        }
        s.batchCommit()
        s.I("secure_boot_v2", "Secure boot permanently enabled")
        return 0
    }

    /// `s_calculate_image_public_key_digests` for an image that already verified: the digest of
    /// the key in signature block 0 (nil when the sector holds no valid block), with its log line.
    static func keyDigests(_ s: inout BootState, of image: LoadedImage) -> [UInt8]? {
        let sector = image.signatureSectorOffset.flatMap { s.read($0, 4096) } ?? []
        guard let d = SignatureCheck.blockKeyDigest(sector) else { return nil }
        s.clock += 0.008
        s.I("secure_boot_v2", "Digests successfully calculated, 1 valid signatures (image offset 0x\(String(image.start, radix: 16)))")
        return d
    }
}
