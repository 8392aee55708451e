import ESPCore
import FlashEncryption
import Partitions

/// Flash-encryption enable phase: the bootloader's `esp_flash_encrypt_check_and_update` with
/// `CONFIG_SECURE_FLASH_ENC_ENABLED`. On a chip without it: key generated into BLK1 (or a
/// protected pre-loaded key used), hardening eFuses burned, bootloader, partition table and the
/// partitions the shared ``EncryptionRules`` name encrypted in place, FLASH_CRYPT_CNT advanced
/// (the driver then follows the reset). Returns an esp_err_t (0 = on, or turned on).
enum FlashEncryptionEnablePhase {
    static func run(_ s: inout BootState) -> Int {
        if s.chip.fieldMap != nil { return FieldMapSecurityEnable.enableFlashEncryption(&s) }
        let cnt = s.flashCryptCnt
        if s.flashEncryptionEnabled {
            let left = (s.wrDis(2) || cnt == 0x7F) ? 0 : (7 - cnt.nonzeroBitCount) / 2
            s.I("flash_encrypt", "flash encryption is enabled (\(left) plaintext flashes left)")
            return 0
        }
        if s.sdk.flashEncryptionRequireAlreadyEnabled {
            s.E("flash_encrypt", "flash encryption is not enabled, and SECURE_FLASH_REQUIRE_ALREADY_ENABLED is set, refusing to boot.")
            return ESPErr.invalidState
        }
        if s.wrDis(2) || cnt == 0x7F {
            s.E("flash_encrypt", "Cannot re-encrypt data (FLASH_CRYPT_CNT 0x\(hex2(cnt)) write disabled \(s.wrDis(2) ? 1 : 0)")
            return ESPErr.fail
        }
        if cnt == 0 {
            let err = initialiseKey(&s)
            if err != 0 {
                s.E("flash_encrypt", "Initialization of Flash Encryption key failed (\(err))")
                return err
            }
        }
        let err = encryptFlashContents(&s)
        if err != 0 { return err }
        enableCounter(&s, "FLASH_CRYPT_CNT", allBits: 0x7F, current: cnt)
        return 0
    }

    /// Turns encryption on after the contents are encrypted: development mode sets the
    /// counter's next clear bit (an odd count), release mode all of them (`allBits`: 0x7F on
    /// the ESP32's FLASH_CRYPT_CNT, 0b111 on the S3/C3's SPI_BOOT_CRYPT_CNT).
    static func enableCounter(_ s: inout BootState, _ field: String, allBits: UInt64, current cnt: UInt64) {
        if s.sdk.releaseMode {
            if s.dialect.logsPermanentCryptCnt { s.I("flash_encrypt", "Setting CRYPT_CNT for permanent encryption") }
            s.write(field, allBits)
        } else {
            var bit: UInt64 = 1
            while bit <= allBits && cnt & bit != 0 { bit <<= 1 }
            s.write(field, bit)
        }
        s.I("flash_encrypt", "Flash encryption completed")
    }

    /// `encrypt_flash_contents`: bootloader, partition table, then each partition the shared
    /// rule set says is encrypted.
    static func encryptFlashContents(_ s: inout BootState) -> Int {
        // Bootloader.
        let boot = s.chip.bootloaderOffset
        switch ImageLoad.load(&s, at: boot, partitionSize: s.sdk.partitionTableOffset - boot, mode: .verify) {
        case .success(let b):
            if b.length > s.sdk.partitionTableOffset - boot {
                s.E("flash_encrypt", "Bootloader is too large to fit Secure Boot V2 signature sector and partition table (configured offset 0x\(String(s.sdk.partitionTableOffset, radix: 16)))")
                return ESPErr.invalidSize
            }
            s.encryptRegion(name: "bootloader", boot, b.length)
            s.I("flash_encrypt", "bootloader encrypted successfully")
        case .failure:
            s.W("flash_encrypt", "no valid bootloader was found")
            return ESPErr.notFound
        }
        // Partition table.
        guard let entries = BootloaderPhase.parseTable(&s).entries else {
            s.E("flash_encrypt", "Failed to read partition table data")
            return ESPErr.invalidState
        }
        s.encryptRegion(name: "partition table", s.sdk.partitionTableOffset, EncryptionRules.partitionTableSize)
        s.I("flash_encrypt", "partition table encrypted and loaded successfully")
        // Partitions, by the shared rule set.
        for (i, p) in entries.enumerated() {
            guard let length = encryptedLength(&s, p) else { continue }
            s.I("flash_encrypt", "Encrypting partition \(i) at offset 0x\(String(p.offset, radix: 16)) (length 0x\(String(length, radix: 16)))...")
            s.encryptRegion(name: p.name, Int(p.offset), length)
            s.I("flash_encrypt", "Done encrypting")
        }
        return 0
    }

    /// How much of partition `p` is encrypted (nil: left alone), by ``EncryptionRules``; an app
    /// is encrypted only when it holds a valid image (just the image with
    /// `CONFIG_SECURE_FLASH_ENCRYPT_ONLY_IMAGE_LEN_IN_APP_PART`).
    static func encryptedLength(_ s: inout BootState, _ p: PartitionEntry) -> Int? {
        let (expectation, _) = EncryptionRules.expectation(for: p)
        switch expectation {
        case .never:
            return nil
        case .always:
            return Int(p.size)
        case .ifValidImage:
            guard case .success(let img) = ImageLoad.load(&s, at: Int(p.offset), partitionSize: Int(p.size), mode: .verify) else {
                return nil
            }
            return s.sdk.encryptOnlyImageLength ? img.length : Int(p.size)
        case .ifValidPartitionTable:
            guard let bytes = s.read(Int(p.offset), PartitionTable.maxLength),
                  let t = try? PartitionTable.parse(binary: bytes, verifyMD5: true), !t.table.entries.isEmpty else {
                return nil
            }
            return Int(p.size)
        }
    }

    /// `initialise_flash_encryption`: the key (generated, or a protected pre-loaded one), then
    /// FLASH_CRYPT_CONFIG and the hardening eFuses, burned in one batch.
    static func initialiseKey(_ s: inout BootState) -> Int {
        s.batchBegin()
        let coding = s.raw("CODING_SCHEME")
        if coding == 2 {
            s.E("flash_encrypt", "Unknown/unsupported CODING_SCHEME value 0x\(String(coding, radix: 16))")
            s.batchCancel()
            return ESPErr.notSupported
        }
        let blk1 = s.blockRaw(1)
        if blk1.allSatisfy({ $0 == 0 }) && !s.rdDis(0) && !s.wrDis(7) {
            s.I("flash_encrypt", "Generating new flash encryption key...")
            var key = [UInt32](repeating: 0, count: 8)
            let n = coding == 1 ? 6 : 8
            for i in 0..<n { key[i] = UInt32(truncatingIfNeeded: s.rng.next()) }
            switch s.dialect.flashEncryptionKey {
            case .block1V44:
                s.writeBlockWords(1, key)
                s.I("flash_encrypt", "Read & write protecting new key...")
            case .keyPurposeV5:
                // esp_efuse_write_keys: BLOCK1 is EFUSE_BLK_KEY0, purpose 2 = FLASH_ENCRYPTION;
                // read and write protection come with it.
                s.I("efuse", "Writing EFUSE_BLK_KEY0 with purpose 2")
                s.writeBlockWords(1, key)
            }
            s.write("WR_DIS", 1 << 7)
            s.write("RD_DIS", 1 << 0)
        } else if s.rdDis(0) && s.wrDis(7) {
            switch s.dialect.flashEncryptionKey {
            case .block1V44: s.I("flash_encrypt", "Using pre-existing key in efuse")
            case .keyPurposeV5: s.I("flash_encrypt", "Using pre-loaded flash encryption key in efuse")
            }
        } else {
            switch s.dialect.flashEncryptionKey {
            case .block1V44: s.E("flash_encrypt", "Flash encryption key has to be either unset or both read and write protected")
            case .keyPurposeV5: s.E("flash_encrypt", "Invalid key state, check read&write protection for key and keypurpose(if exists)")
            }
            s.batchCancel()
            return ESPErr.invalidState
        }
        let cryptConfig = s.raw("FLASH_CRYPT_CONFIG")
        if cryptConfig == 0 || s.dialect.cryptConfigAlwaysLogged {
            s.I("flash_encrypt", "Setting CRYPT_CONFIG efuse to 0xF")
        }
        if cryptConfig == 0 {
            s.write("FLASH_CRYPT_CONFIG", 0xF)
        } else if cryptConfig != 0xF && s.dialect.cryptConfigAlwaysLogged {
            s.E("flash_encrypt", "EFUSE_ENCRYPT_CONFIG should be set 0xF but it is 0x\(String(cryptConfig, radix: 16))")
        }
        let sdk = s.sdk
        // Hardening eFuses, in the bootloader's order: (kept by sdkconfig?, warning, info, field).
        let hardening: [(Bool, String, String, String)] = [
            (sdk.uartAllowEncrypt, "Not disabling UART bootloader encryption",
             "Disable UART bootloader encryption...", "DISABLE_DL_ENCRYPT"),
            (sdk.uartAllowDecrypt, "Not disabling UART bootloader decryption - SECURITY COMPROMISED",
             "Disable UART bootloader decryption...", "DISABLE_DL_DECRYPT"),
            (sdk.uartAllowCache, "Not disabling UART bootloader MMU cache - SECURITY COMPROMISED",
             "Disable UART bootloader MMU cache...", "DISABLE_DL_CACHE"),
            (sdk.allowJTAG, "Not disabling JTAG - SECURITY COMPROMISED", "Disable JTAG...", "JTAG_DISABLE"),
            (sdk.allowROMBasic, "Not disabling ROM BASIC fallback - SECURITY COMPROMISED",
             "Disable ROM BASIC interpreter fallback...", "CONSOLE_DEBUG_DISABLE"),
        ]
        for (kept, warning, info, field) in hardening {
            if kept { s.W("flash_encrypt", warning) } else {
                s.I("flash_encrypt", info)
                s.write(field, 1)
            }
        }
        if sdk.secureBootV2 && !sdk.allowEFuseReadDisable {
            if s.dialect.flashEncryptionLogsReadDisableLock { s.I("flash_encrypt", "Prevent read disabling of additional efuses...") }
            s.write("WR_DIS", 1 << 0)
        }
        if !sdk.skipWriteProtectCache { s.write("WR_DIS", 1 << 3) }
        s.batchCommit()
        return 0
    }
}
