import EFuse

extension VirtualChip {
    /// ESP32-C3 (modelled from documentation and esptool 5.6.0's target description; not recorded).
    public static let esp32c3 = VirtualChip(
        name: "esp32c3",
        displayName: "ESP32-C3",
        efuseMap: .esp32c3,
        efuseRegisters: .esp32c3,
        chipID: 5,
        magicValue: 0x1B31_506F,
        spi: .esp32s3Generation,
        uartClockDivider: 0x6000_0014,
        uartDate: 0x6000_007C,
        gpioStrap: 0x6000_4038,
        gpioStrapDownload: 0x0000_0000,
        // RTC_CNTL WDT config 0/1, WDT write protect, SWD config / write protect.
        plainRegisters: [0x6000_8090, 0x6000_8094, 0x6000_80A8, 0x6000_80AC, 0x6000_80B0],
        macOUI: [0x58, 0xCF, 0x79],
        defaultMajorRevision: 0,
        defaultMinorRevision: 4,
        defaultPackage: 0,
        securityFlags: [
            (0, ["SECURE_BOOT_EN"]), (1, ["SECURE_BOOT_AGGRESSIVE_REVOKE"]), (2, ["ENABLE_SECURITY_DOWNLOAD"]),
            (3, ["SECURE_BOOT_KEY_REVOKE0"]), (4, ["SECURE_BOOT_KEY_REVOKE1"]), (5, ["SECURE_BOOT_KEY_REVOKE2"]),
            (6, ["SOFT_DIS_JTAG"]), (7, ["DIS_PAD_JTAG"]), (8, ["DIS_USB_SERIAL_JTAG"]),
            (10, ["DIS_DOWNLOAD_ICACHE"]),
        ],
        xts128Purpose: 4,
        xts256Purposes: nil,
        encryptedWriteAlign: 16,
        romBannerHead: "ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\n",
        downloadBootName: "DOWNLOAD(USB/UART0/1)"
    )
}
