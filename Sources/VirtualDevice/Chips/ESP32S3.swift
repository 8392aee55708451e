import EFuse

extension VirtualChip {
    /// ESP32-S3 (modelled from documentation and esptool 5.6.0's target description; not recorded).
    public static let esp32s3 = VirtualChip(
        name: "esp32s3",
        displayName: "ESP32-S3",
        efuseMap: .esp32s3,
        efuseRegisters: .esp32s3,
        chipID: 9,
        magicValue: 0x0000_0009,
        spi: .esp32s3Generation,
        uartClockDivider: 0x6000_0014,
        uartDate: 0x6000_0080,
        gpioStrap: 0x6000_4038,
        gpioStrapDownload: 0x0000_0000,
        // RTC_CNTL WDT config 0/1, WDT write protect, SWD config / write protect, OPTION1.
        plainRegisters: [0x6000_8098, 0x6000_809C, 0x6000_80B0, 0x6000_80B4, 0x6000_80B8, 0x6000_812C],
        macOUI: [0x7C, 0xDF, 0xA1],
        defaultMajorRevision: 0,
        defaultMinorRevision: 2,
        defaultPackage: 0,
        securityFlags: [
            (0, ["SECURE_BOOT_EN"]), (1, ["SECURE_BOOT_AGGRESSIVE_REVOKE"]), (2, ["ENABLE_SECURITY_DOWNLOAD"]),
            (3, ["SECURE_BOOT_KEY_REVOKE0"]), (4, ["SECURE_BOOT_KEY_REVOKE1"]), (5, ["SECURE_BOOT_KEY_REVOKE2"]),
            (6, ["SOFT_DIS_JTAG"]), (7, ["DIS_PAD_JTAG"]), (8, ["DIS_USB_OTG"]),
            (9, ["DIS_DOWNLOAD_DCACHE"]), (10, ["DIS_DOWNLOAD_ICACHE"]),
        ],
        xts128Purpose: 4,
        xts256Purposes: [2, 3],
        encryptedWriteAlign: 16,
        romBannerHead: "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n",
        downloadBootName: "DOWNLOAD(USB/UART0)",
        // rom_spiflash_legacy_funcs.read, as esptool 5.6.0 patches it; the ROM value is arbitrary
        // (any ROM address; only a change matters).
        secureBootStubHook: (0x3FCE_F688, 0x4000_A3F0)
    )
}
