/// The ESP32-S3 eFuse field map, as data. Every position, width and protection bit was read from
/// `espefuse --virt --chip esp32s3` 5.6.0 (its summary, and which fields it reports as not writeable /
/// not readable after burning each WR_DIS and RD_DIS bit alone); the descriptions are ours.
/// Positions are absolute within a block: word `w`, bit `b` is bit `32·w + b`.
///
/// BLOCK0 fields carry their own WR_DIS bit (`writeProtect`; WR_DIS itself has none); fields of
/// BLOCK1…BLOCK10 are locked by their block's WR_DIS bit (20…29) and, for the key blocks and
/// BLOCK_SYS_DATA2, hidden by their block's RD_DIS bit (0…6). Checked against espefuse by
/// `Tests/EFuseTests/FieldMapOracleTests.swift`.
extension EFuseFieldMap {
    public static let esp32s3 = EFuseFieldMap(
        chip: "esp32s3",
        blockNames: ["BLOCK0", "BLOCK_MAC_SYS", "BLOCK_SYS_DATA", "BLOCK_USR_DATA", "BLOCK_KEY0", "BLOCK_KEY1",
                     "BLOCK_KEY2", "BLOCK_KEY3", "BLOCK_KEY4", "BLOCK_KEY5", "BLOCK_SYS_DATA2"],
        blockWordCounts: [6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8],
        controllerBase: 0x6000_7000,
        firstReadRegisterOffset: 0x02C,
        registerSpaceSize: 0x200,
        blockWriteProtectBits: [nil, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29],
        blockReadProtectBits: [nil, nil, nil, nil, 0, 1, 2, 3, 4, 5, 6],
        firstKeyBlock: 4,
        keyPurposes: [
            // Values as espefuse 5.6.0 accepts and names them for this chip. Secret keys (XTS, HMAC)
            // are read-protected when burned; digests and user data stay readable.
            EFuseKeyPurpose(0, "USER", readProtected: false),
            EFuseKeyPurpose(1, "RESERVED", readProtected: false),
            EFuseKeyPurpose(2, "XTS_AES_256_KEY_1", readProtected: true),
            EFuseKeyPurpose(3, "XTS_AES_256_KEY_2", readProtected: true),
            EFuseKeyPurpose(4, "XTS_AES_128_KEY", readProtected: true),
            EFuseKeyPurpose(5, "HMAC_DOWN_ALL", readProtected: true),
            EFuseKeyPurpose(6, "HMAC_DOWN_JTAG", readProtected: true),
            EFuseKeyPurpose(7, "HMAC_DOWN_DIGITAL_SIGNATURE", readProtected: true),
            EFuseKeyPurpose(8, "HMAC_UP", readProtected: true),
            EFuseKeyPurpose(9, "SECURE_BOOT_DIGEST0", readProtected: false),
            EFuseKeyPurpose(10, "SECURE_BOOT_DIGEST1", readProtected: false),
            EFuseKeyPurpose(11, "SECURE_BOOT_DIGEST2", readProtected: false),
        ],
        fields: [
            // block 0
            EFuseField("WR_DIS", block: 0, word: 0, bit: 0, width: 32, "Write-disable bits (bit n locks the fields listed with WR_DIS n)"),
            EFuseField("RD_DIS", block: 0, word: 1, bit: 0, width: 7, writeProtect: 0, "Read-disable bits: 0-5 BLOCK_KEY0-5, 6 BLOCK_SYS_DATA2"),
            EFuseField("DIS_ICACHE", block: 0, word: 1, bit: 8, width: 1, writeProtect: 2, "Instruction cache disabled"),
            EFuseField("DIS_DCACHE", block: 0, word: 1, bit: 9, width: 1, writeProtect: 2, "Data cache disabled"),
            EFuseField("DIS_DOWNLOAD_ICACHE", block: 0, word: 1, bit: 10, width: 1, writeProtect: 2, "Instruction cache disabled in download mode"),
            EFuseField("DIS_DOWNLOAD_DCACHE", block: 0, word: 1, bit: 11, width: 1, writeProtect: 2, "Data cache disabled in download mode"),
            EFuseField("DIS_FORCE_DOWNLOAD", block: 0, word: 1, bit: 12, width: 1, writeProtect: 2, "Forcing download mode from software disabled"),
            EFuseField("DIS_USB_OTG", block: 0, word: 1, bit: 13, width: 1, writeProtect: 2, "USB OTG disabled"),
            EFuseField("DIS_TWAI", block: 0, word: 1, bit: 14, width: 1, writeProtect: 2, "TWAI (CAN) controller disabled"),
            EFuseField("DIS_APP_CPU", block: 0, word: 1, bit: 15, width: 1, writeProtect: 2, "Single core: the APP CPU is disabled"),
            EFuseField("SOFT_DIS_JTAG", block: 0, word: 1, bit: 16, width: 3, writeProtect: 31, "JTAG disabled in software (odd bit count); HMAC can re-enable it"),
            EFuseField("DIS_PAD_JTAG", block: 0, word: 1, bit: 19, width: 1, writeProtect: 2, "JTAG through the pads disabled for good"),
            EFuseField("DIS_DOWNLOAD_MANUAL_ENCRYPT", block: 0, word: 1, bit: 20, width: 1, writeProtect: 2, "No flash encryption of writes in download mode"),
            EFuseField("USB_EXCHG_PINS", block: 0, word: 1, bit: 25, width: 1, writeProtect: 30, "USB D+ and D- swapped"),
            EFuseField("USB_EXT_PHY_ENABLE", block: 0, word: 1, bit: 26, width: 1, writeProtect: 30, "External USB PHY enabled"),
            EFuseField("VDD_SPI_XPD", block: 0, word: 2, bit: 4, width: 1, writeProtect: 3, "VDD_SPI regulator powered up"),
            EFuseField("VDD_SPI_TIEH", block: 0, word: 2, bit: 5, width: 1, writeProtect: 3, "VDD_SPI voltage selection (1.8 V LDO or VDD3P3_RTC_IO)"),
            EFuseField("VDD_SPI_FORCE", block: 0, word: 2, bit: 6, width: 1, writeProtect: 3, "Use VDD_SPI_XPD and VDD_SPI_TIEH instead of the strapping pin"),
            EFuseField("WDT_DELAY_SEL", block: 0, word: 2, bit: 16, width: 2, writeProtect: 3, "RTC watchdog timeout during boot"),
            EFuseField("SPI_BOOT_CRYPT_CNT", block: 0, word: 2, bit: 18, width: 3, writeProtect: 4, "Flash encryption is on when an odd number of bits is set"),
            EFuseField("SECURE_BOOT_KEY_REVOKE0", block: 0, word: 2, bit: 21, width: 1, writeProtect: 5, "Secure Boot digest slot 0 revoked"),
            EFuseField("SECURE_BOOT_KEY_REVOKE1", block: 0, word: 2, bit: 22, width: 1, writeProtect: 6, "Secure Boot digest slot 1 revoked"),
            EFuseField("SECURE_BOOT_KEY_REVOKE2", block: 0, word: 2, bit: 23, width: 1, writeProtect: 7, "Secure Boot digest slot 2 revoked"),
            EFuseField("KEY_PURPOSE_0", block: 0, word: 2, bit: 24, width: 4, writeProtect: 8, "Purpose of BLOCK_KEY0"),
            EFuseField("KEY_PURPOSE_1", block: 0, word: 2, bit: 28, width: 4, writeProtect: 9, "Purpose of BLOCK_KEY1"),
            EFuseField("KEY_PURPOSE_2", block: 0, word: 3, bit: 0, width: 4, writeProtect: 10, "Purpose of BLOCK_KEY2"),
            EFuseField("KEY_PURPOSE_3", block: 0, word: 3, bit: 4, width: 4, writeProtect: 11, "Purpose of BLOCK_KEY3"),
            EFuseField("KEY_PURPOSE_4", block: 0, word: 3, bit: 8, width: 4, writeProtect: 12, "Purpose of BLOCK_KEY4"),
            EFuseField("KEY_PURPOSE_5", block: 0, word: 3, bit: 12, width: 4, writeProtect: 13, "Purpose of BLOCK_KEY5"),
            EFuseField("SECURE_BOOT_EN", block: 0, word: 3, bit: 20, width: 1, writeProtect: 15, "Secure Boot V2 enabled"),
            EFuseField("SECURE_BOOT_AGGRESSIVE_REVOKE", block: 0, word: 3, bit: 21, width: 1, writeProtect: 16, "Revoke a digest slot as soon as its signature fails"),
            EFuseField("DIS_USB_JTAG", block: 0, word: 3, bit: 22, width: 1, writeProtect: 2, "USB-Serial-JTAG's JTAG function disabled"),
            EFuseField("DIS_USB_SERIAL_JTAG", block: 0, word: 3, bit: 23, width: 1, writeProtect: 2, "USB-Serial-JTAG disabled"),
            EFuseField("STRAP_JTAG_SEL", block: 0, word: 3, bit: 24, width: 1, writeProtect: 2, "JTAG source selected by a strapping pin"),
            EFuseField("USB_PHY_SEL", block: 0, word: 3, bit: 25, width: 1, writeProtect: 2, "Which internal PHY serves USB-Serial-JTAG and which USB OTG"),
            EFuseField("FLASH_TPUW", block: 0, word: 3, bit: 28, width: 4, writeProtect: 18, "Flash power-up wait time"),
            EFuseField("DIS_DOWNLOAD_MODE", block: 0, word: 4, bit: 0, width: 1, writeProtect: 18, "All download modes disabled"),
            EFuseField("DIS_DIRECT_BOOT", block: 0, word: 4, bit: 1, width: 1, writeProtect: 18, "Direct boot (legacy SPI boot) disabled"),
            EFuseField("DIS_USB_SERIAL_JTAG_ROM_PRINT", block: 0, word: 4, bit: 2, width: 1, writeProtect: 18, "ROM messages not printed over USB-Serial-JTAG"),
            EFuseField("FLASH_ECC_MODE", block: 0, word: 4, bit: 3, width: 1, writeProtect: 18, "Flash ECC mode in the ROM"),
            EFuseField("DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE", block: 0, word: 4, bit: 4, width: 1, writeProtect: 18, "Download mode over USB-Serial-JTAG disabled"),
            EFuseField("ENABLE_SECURITY_DOWNLOAD", block: 0, word: 4, bit: 5, width: 1, writeProtect: 18, "Secure download mode: only a restricted command set"),
            EFuseField("UART_PRINT_CONTROL", block: 0, word: 4, bit: 6, width: 2, writeProtect: 18, "ROM message printing, and its strapping-pin control"),
            EFuseField("PIN_POWER_SELECTION", block: 0, word: 4, bit: 8, width: 1, writeProtect: 18, "Power supply of the GPIO33-37 pads"),
            EFuseField("FLASH_TYPE", block: 0, word: 4, bit: 9, width: 1, writeProtect: 18, "Flash data lines (4 or 8)"),
            EFuseField("FLASH_PAGE_SIZE", block: 0, word: 4, bit: 10, width: 2, writeProtect: 18, "Flash page size"),
            EFuseField("FLASH_ECC_EN", block: 0, word: 4, bit: 12, width: 1, writeProtect: 18, "Flash ECC enabled"),
            EFuseField("FORCE_SEND_RESUME", block: 0, word: 4, bit: 13, width: 1, writeProtect: 18, "Force the ROM to send a flash resume command"),
            EFuseField("SECURE_VERSION", block: 0, word: 4, bit: 14, width: 16, writeProtect: 18, "Anti-rollback secure version of the app"),
            EFuseField("DIS_USB_OTG_DOWNLOAD_MODE", block: 0, word: 4, bit: 31, width: 1, writeProtect: 19, "Download mode over USB OTG disabled"),
            EFuseField("DISABLE_WAFER_VERSION_MAJOR", block: 0, word: 5, bit: 0, width: 1, writeProtect: 19, "Ignore the wafer major version"),
            EFuseField("DISABLE_BLK_VERSION_MAJOR", block: 0, word: 5, bit: 1, width: 1, writeProtect: 19, "Ignore the calibration block major version"),
            // block 1
            EFuseField("MAC", block: 1, word: 0, bit: 0, width: 48, "Factory MAC address"),
            EFuseField("SPI_PAD_CONFIG_CLK", block: 1, word: 1, bit: 16, width: 6, "SPI pad override: CLK"),
            EFuseField("SPI_PAD_CONFIG_Q", block: 1, word: 1, bit: 22, width: 6, "SPI pad override: Q (D1)"),
            EFuseField("SPI_PAD_CONFIG_D", block: 1, word: 1, bit: 28, width: 6, "SPI pad override: D (D0)"),
            EFuseField("SPI_PAD_CONFIG_CS", block: 1, word: 2, bit: 2, width: 6, "SPI pad override: CS"),
            EFuseField("SPI_PAD_CONFIG_HD", block: 1, word: 2, bit: 8, width: 6, "SPI pad override: HD (D3)"),
            EFuseField("SPI_PAD_CONFIG_WP", block: 1, word: 2, bit: 14, width: 6, "SPI pad override: WP (D2)"),
            EFuseField("SPI_PAD_CONFIG_DQS", block: 1, word: 2, bit: 20, width: 6, "SPI pad override: DQS"),
            EFuseField("SPI_PAD_CONFIG_D4", block: 1, word: 2, bit: 26, width: 6, "SPI pad override: D4"),
            EFuseField("SPI_PAD_CONFIG_D5", block: 1, word: 3, bit: 0, width: 6, "SPI pad override: D5"),
            EFuseField("SPI_PAD_CONFIG_D6", block: 1, word: 3, bit: 6, width: 6, "SPI pad override: D6"),
            EFuseField("SPI_PAD_CONFIG_D7", block: 1, word: 3, bit: 12, width: 6, "SPI pad override: D7"),
            EFuseField("WAFER_VERSION_MINOR_LO", block: 1, word: 3, bit: 18, width: 3, "Chip revision minor, bits 2:0"),
            EFuseField("PKG_VERSION", block: 1, word: 3, bit: 21, width: 3, "Package version"),
            EFuseField("BLK_VERSION_MINOR", block: 1, word: 3, bit: 24, width: 3, "Calibration data version, minor"),
            EFuseField("FLASH_CAP", block: 1, word: 3, bit: 27, width: 3, "Embedded flash capacity code"),
            EFuseField("FLASH_TEMP", block: 1, word: 3, bit: 30, width: 2, "Embedded flash temperature rating code"),
            EFuseField("FLASH_VENDOR", block: 1, word: 4, bit: 0, width: 3, "Embedded flash vendor code"),
            EFuseField("PSRAM_CAP", block: 1, word: 4, bit: 3, width: 2, "Embedded PSRAM capacity code, bits 1:0"),
            EFuseField("PSRAM_TEMP", block: 1, word: 4, bit: 5, width: 2, "Embedded PSRAM temperature rating code"),
            EFuseField("PSRAM_VENDOR", block: 1, word: 4, bit: 7, width: 2, "Embedded PSRAM vendor code"),
            EFuseField("PSRAM_CAP_3", block: 1, word: 5, bit: 19, width: 1, "Embedded PSRAM capacity code, bit 2"),
            EFuseField("WAFER_VERSION_MINOR_HI", block: 1, word: 5, bit: 23, width: 1, "Chip revision minor, bit 3"),
            EFuseField("WAFER_VERSION_MAJOR", block: 1, word: 5, bit: 24, width: 2, "Chip revision major"),
            // block 2
            EFuseField("OPTIONAL_UNIQUE_ID", block: 2, word: 0, bit: 0, width: 128, "Unique id (128 bits)"),
            EFuseField("BLK_VERSION_MAJOR", block: 2, word: 4, bit: 0, width: 2, "Calibration data version, major"),
            // block 3
            EFuseField("BLOCK_USR_DATA", block: 3, word: 0, bit: 0, width: 256, "User data (BLOCK3)"),
            EFuseField("CUSTOM_MAC", block: 3, word: 6, bit: 8, width: 48, "Custom MAC address (in the user data block)"),
            // block 4
            EFuseField("BLOCK_KEY0", block: 4, word: 0, bit: 0, width: 256, "Key block 0: a key or a Secure Boot digest, per KEY_PURPOSE_0"),
            // block 5
            EFuseField("BLOCK_KEY1", block: 5, word: 0, bit: 0, width: 256, "Key block 1, per KEY_PURPOSE_1"),
            // block 6
            EFuseField("BLOCK_KEY2", block: 6, word: 0, bit: 0, width: 256, "Key block 2, per KEY_PURPOSE_2"),
            // block 7
            EFuseField("BLOCK_KEY3", block: 7, word: 0, bit: 0, width: 256, "Key block 3, per KEY_PURPOSE_3"),
            // block 8
            EFuseField("BLOCK_KEY4", block: 8, word: 0, bit: 0, width: 256, "Key block 4, per KEY_PURPOSE_4"),
            // block 9
            EFuseField("BLOCK_KEY5", block: 9, word: 0, bit: 0, width: 256, "Key block 5, per KEY_PURPOSE_5"),
            // block 10
            EFuseField("BLOCK_SYS_DATA2", block: 10, word: 0, bit: 0, width: 256, "System data part 2 (BLOCK10)"),
        ],
        composites: [
            EFuseCompositeField("WAFER_VERSION_MINOR", [.init("WAFER_VERSION_MINOR_HI", shift: 3),
                                                        .init("WAFER_VERSION_MINOR_LO", shift: 0)],
                                "Chip revision minor (HI·8 + LO)"),
        ]
    )
}
