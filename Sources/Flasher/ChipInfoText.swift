import ESPCore

extension ChipInfo {
    /// Connects to the ROM loader on `port` (no stub, nothing written) and reads the chip.
    public static func read(port: String, options: SessionOptions) throws -> ChipInfo {
        let session = FlashSession(port: port, options: options)
        defer { session.finish() }
        try session.connect()
        return try session.chipInfo()
    }

    /// What `espforge chip info` prints for one chip (ends with a newline).
    public var text: String {
        let s = security
        func bit(_ b: Bool) -> Int { b ? 1 : 0 }
        return [
            "Chip:         \(description) (revision \(revision))",
            "Features:     \(features.joined(separator: ", "))",
            "Crystal:      \(crystalMHz)MHz",
            "MAC:          \(mac)",
            "Flash:        manufacturer \(flashManufacturer), device \(flashDevice), \(flashSizeName) (JEDEC id \(flashID))",
            "Security:",
            "  Secure Boot V2 digest in BLOCK2: \(s.secureBootDigestBurned ? "burned" : "none")",
            "  ABS_DONE_0 (SB v1): \(bit(s.absDone0))   ABS_DONE_1 (SB v2): \(bit(s.absDone1))",
            "  FLASH_CRYPT_CNT: 0x\(String(s.flashCryptCnt, radix: 16)) -> flash encryption \(s.flashEncryptionEnabled ? "ON" : "off")",
            "  DISABLE_DL_ENCRYPT \(bit(s.disableDLEncrypt)), DISABLE_DL_DECRYPT \(bit(s.disableDLDecrypt)), DISABLE_DL_CACHE \(bit(s.disableDLCache)), UART_DOWNLOAD_DIS \(bit(s.uartDownloadDisabled))",
            "  JTAG_DISABLE \(bit(s.jtagDisabled)), CONSOLE_DEBUG_DISABLE \(bit(s.consoleDebugDisabled)), coding scheme \(s.codingScheme)",
            "  write-protected: \(s.writeProtected.isEmpty ? "none" : s.writeProtected.joined(separator: ", "))",
            "  read-protected:  \(s.readProtected.isEmpty ? "none" : s.readProtected.joined(separator: ", "))",
        ].joined(separator: "\n") + "\n"
    }
}

extension PortChipInfo {
    /// Several ports' answers: each under `== PORT`, a failed port as `FAILED: why`.
    public static func text(_ results: [PortChipInfo]) -> String {
        results.map { "== \($0.port)\n" + ($0.info?.text ?? "FAILED: \($0.error ?? "unknown error")\n") }.joined()
    }
}
