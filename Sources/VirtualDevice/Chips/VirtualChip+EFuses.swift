import EFuse
import ESPCore
import FlashEncryption

/// What a chip derives from its eFuses: factory state, GET_SECURITY_INFO, the flash-encryption
/// key as the XTS engine sees it.
extension VirtualChip {
    /// Factory eFuses: the MAC in BLOCK1 (last byte first, as esptool reads it back), the wafer
    /// revision and the package code; everything else 0 (nothing protected, no keys).
    public func factoryEFuses(mac: [UInt8], major: Int, minor: Int, package: Int) throws(DeviceError) -> EFuseBlockWords {
        guard mac.count == 6 else { throw .stateDamaged("MAC", "a MAC has six bytes") }
        guard (0...3).contains(major), (0...15).contains(minor) else {
            throw .badRevision(chip: name, "v\(major).\(minor)")
        }
        var w = EFuseBlockWords(map: efuseMap)
        func set(_ field: String, _ value: UInt64) {
            if let f = efuseMap.field(named: field) { w.setInteger(f, value) }
        }
        if let f = efuseMap.field(named: "MAC") { w.setBytes(f, mac.reversed()) }
        set("WAFER_VERSION_MAJOR", UInt64(major))
        set("WAFER_VERSION_MINOR_LO", UInt64(minor & 7))
        set("WAFER_VERSION_MINOR_HI", UInt64(minor >> 3))
        set("PKG_VERSION", UInt64(package & 7))
        return w
    }

    private func int(_ cells: EFuseBlockWords, _ name: String) -> UInt64 {
        efuseMap.field(named: name).map { cells.integer($0) } ?? 0
    }

    /// The GET_SECURITY_INFO reply as the ROM computes it from the eFuses: flags (32 bits),
    /// SPI_BOOT_CRYPT_CNT (1 byte), KEY_PURPOSE_0…5 and a zero seventh byte, chip id (32 bits)
    /// and eco version (32 bits: the minor wafer revision). 20 bytes, little-endian.
    public func securityInfo(_ cells: EFuseBlockWords) -> [UInt8] {
        var flags: UInt32 = 0
        for (bit, fields) in securityFlags {
            let on = fields.contains { f in
                let v = int(cells, f)
                return f == "SOFT_DIS_JTAG" ? v.nonzeroBitCount % 2 == 1 : v != 0
            }
            if on { flags |= 1 << UInt32(bit) }
        }
        var out: [UInt8] = []
        out.appendLE(flags)
        out.append(UInt8(int(cells, "SPI_BOOT_CRYPT_CNT") & 0xFF))
        for k in 0..<EFuseFieldMap.keyBlockCount { out.append(UInt8(int(cells, "KEY_PURPOSE_\(k)") & 0xFF)) }
        out.append(0)
        out.appendLE(chipID)
        let minor = (int(cells, "WAFER_VERSION_MINOR_HI") << 3) | int(cells, "WAFER_VERSION_MINOR_LO")
        out.appendLE(UInt32(minor))
        return out
    }

    /// ENABLE_SECURITY_DOWNLOAD / DIS_DOWNLOAD_MODE / DIS_DOWNLOAD_MANUAL_ENCRYPT.
    public func secureBootEnabled(_ cells: EFuseBlockWords) -> Bool { int(cells, "SECURE_BOOT_EN") != 0 }
    public func secureDownloadMode(_ cells: EFuseBlockWords) -> Bool { int(cells, "ENABLE_SECURITY_DOWNLOAD") != 0 }
    public func downloadModeDisabled(_ cells: EFuseBlockWords) -> Bool { int(cells, "DIS_DOWNLOAD_MODE") != 0 }
    public func manualEncryptDisabled(_ cells: EFuseBlockWords) -> Bool { int(cells, "DIS_DOWNLOAD_MANUAL_ENCRYPT") != 0 }

    /// The flash-encryption key the XTS engine uses: a key block with purpose XTS_AES_128_KEY (32
    /// bytes) or, on the S3, the XTS_AES_256_KEY_1 and _2 blocks (64 bytes). Each block holds the
    /// key file byte-reversed, as espefuse burns it. nil when no such block is programmed.
    public func flashEncryptionKey(_ cells: EFuseBlockWords) -> [UInt8]? {
        func block(purpose: Int) -> [UInt8]? {
            for k in 0..<EFuseFieldMap.keyBlockCount where int(cells, "KEY_PURPOSE_\(k)") == UInt64(purpose) {
                let b = efuseMap.firstKeyBlock + k
                var bytes: [UInt8] = []
                for w in 0..<efuseMap.blockWordCounts[b] { bytes.appendLE(cells.word(b, w)) }
                return bytes.reversed()
            }
            return nil
        }
        if let k = block(purpose: xts128Purpose) { return k }
        if let pair = xts256Purposes, let k1 = block(purpose: pair[0]), let k2 = block(purpose: pair[1]) { return k1 + k2 }
        return nil
    }

    /// Encrypts `plaintext` for `address` as the chip's engine does in download mode, or nil when
    /// the engine refuses (DIS_DOWNLOAD_MANUAL_ENCRYPT, no key, misaligned).
    public func encryptForDownload(_ cells: EFuseBlockWords, address: Int, plaintext: [UInt8]) -> [UInt8]? {
        guard !manualEncryptDisabled(cells), address % encryptedWriteAlign == 0,
              plaintext.count % encryptedWriteAlign == 0,
              let key = flashEncryptionKey(cells), let spec = ChipSpec.named(name),
              let cipher = try? FlashCipher(chip: spec, key: key) else { return nil }
        return try? cipher.encrypt(plaintext, at: address)
    }
}
