import EFuse
import ESPCore

extension ChipInfo {
    /// Connects to the ROM loader on `port` (no stub, nothing written) and reads the chip.
    public static func read(port: String, options: SessionOptions) throws -> ChipInfo {
        do {
            let session = FlashSession(port: port, options: options)
            defer { session.finish() }
            try session.connect()
            return try session.chipInfo()
        } catch FlasherError.unknownChip {
            // Not an ESP32: an ESP32-S3/C3 is read through its own eFuse map on a new connection.
            return try readFieldMapChip(port: port, options: options)
        }
    }

    /// What `espforge chip info` prints for one chip (ends with a newline).
    public var text: String {
        if let summary = fieldMapSummary { return fieldMapText(summary) }
        let s = security
        func bit(_ b: Bool) -> Int { b ? 1 : 0 }
        return (identityLines + [
            "  Secure Boot V2 digest in BLOCK2: \(s.secureBootDigestBurned ? "burned" : "none")",
            "  ABS_DONE_0 (SB v1): \(bit(s.absDone0))   ABS_DONE_1 (SB v2): \(bit(s.absDone1))",
            "  FLASH_CRYPT_CNT: 0x\(String(s.flashCryptCnt, radix: 16)) -> flash encryption \(s.flashEncryptionEnabled ? "ON" : "off")",
            "  DISABLE_DL_ENCRYPT \(bit(s.disableDLEncrypt)), DISABLE_DL_DECRYPT \(bit(s.disableDLDecrypt)), DISABLE_DL_CACHE \(bit(s.disableDLCache)), UART_DOWNLOAD_DIS \(bit(s.uartDownloadDisabled))",
            "  JTAG_DISABLE \(bit(s.jtagDisabled)), CONSOLE_DEBUG_DISABLE \(bit(s.consoleDebugDisabled)), coding scheme \(s.codingScheme)",
            "  write-protected: \(s.writeProtected.isEmpty ? "none" : s.writeProtected.joined(separator: ", "))",
            "  read-protected:  \(s.readProtected.isEmpty ? "none" : s.readProtected.joined(separator: ", "))",
        ]).joined(separator: "\n") + "\n"
    }

    /// The chip's identity and flash, the same for every chip, up to the `Security:` heading.
    var identityLines: [String] {
        [
            "Chip:         \(description) (revision \(revision))",
            "Features:     \(features.joined(separator: ", "))",
            "Crystal:      \(crystalMHz)MHz",
            "MAC:          \(mac)",
            "Flash:        manufacturer \(flashManufacturer), device \(flashDevice), \(flashSizeName) (JEDEC id \(flashID))",
            "Security:",
        ]
    }
}

extension ChipInfo {
    /// The S3/C3 text: identity as for the ESP32, then the security state of the field map.
    func fieldMapText(_ summary: EFuseFieldMapSummary) -> String {
        let s = summary.security
        func yn(_ b: Bool) -> String { b ? "yes" : "no" }
        func list(_ v: [Int]) -> String { v.isEmpty ? "none" : v.map(String.init).joined(separator: ", ") }
        var lines = identityLines + [
            "  SECURE_BOOT_EN \(yn(s.secureBootEnabled)); digest slots \(list(s.secureBootDigestSlots)); revoked \(list(s.revokedDigestSlots)); aggressive revoke \(yn(s.aggressiveRevoke))",
            "  SPI_BOOT_CRYPT_CNT 0x\(String(s.spiBootCryptCnt, radix: 16)) -> flash encryption \(s.flashEncryptionEnabled ? "ON" : "off"); keys: \(s.flashEncryptionKeyPurposes.isEmpty ? "none" : s.flashEncryptionKeyPurposes.joined(separator: ", "))",
            "  DIS_DOWNLOAD_MANUAL_ENCRYPT \(yn(s.disDownloadManualEncrypt)), ENABLE_SECURITY_DOWNLOAD \(yn(s.enableSecurityDownload)), DIS_DOWNLOAD_MODE \(yn(s.disDownloadMode)), DIS_DIRECT_BOOT \(yn(s.disDirectBoot))",
            "  DIS_USB_JTAG \(yn(s.disUSBJTAG)), DIS_PAD_JTAG \(yn(s.disPadJTAG))",
            "  key blocks:",
        ]
        for k in summary.keyBlocks {
            let state = k.readProtected ? "read-protected" : (k.empty ? "empty" : "programmed")
            lines.append("    BLOCK_KEY\(k.index): \(k.purposeName), \(state)" + (k.writeProtected ? ", write-protected" : ""))
        }
        lines.append("  write-protected (WR_DIS bits): \(list(s.writeProtectedBits))")
        lines.append("  read-protected (RD_DIS bits):  \(list(s.readProtectedBits))")
        return lines.joined(separator: "\n") + "\n"
    }
}

extension PortChipInfo {
    /// Several ports' answers: each under `== PORT`, a failed port as `FAILED: why`.
    public static func text(_ results: [PortChipInfo]) -> String {
        results.map { "== \($0.port)\n" + ($0.info?.text ?? "FAILED: \($0.error ?? "unknown error")\n") }.joined()
    }
}
