extension ChipSpec {
    /// ESP32-H2: image facts (chip id, flash codes, memory map, flash-mapped ranges, MMU pages,
    /// bootloader offset) checked against esptool 5.6.0 (`targets/esp32h2.py`, `bin_image.py`).
    /// Image-only so far: not in ``ChipSpec/all`` (the security flow). The flash-encryption fields
    /// are provisional, unchecked against espefuse and unused until the chip joins that flow.
    public static let esp32h2 = ChipSpec(
        name: "esp32h2",
        displayName: "ESP32-H2",
        imageChipID: 16,
        bootloaderOffset: 0x0,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("48m", 0xF, value: 48_000_000), NamedCode("24m", 0x0, value: 24_000_000), NamedCode("16m", 0x1, value: 16_000_000), NamedCode("12m", 0x2, value: 12_000_000),
        ],
        flashModes: standardFlashModes,
        memoryMap: [
            MemoryRegion(0x0000_0000, 0x0001_0000, "PADDING"),
            MemoryRegion(0x4200_0000, 0x4300_0000, "DROM"),
            MemoryRegion(0x4080_0000, 0x4088_0000, "DRAM"),
            MemoryRegion(0x4080_0000, 0x4088_0000, "BYTE_ACCESSIBLE"),
            MemoryRegion(0x4004_AC00, 0x4005_0000, "DROM_MASK"),
            MemoryRegion(0x4000_0000, 0x4004_AC00, "IROM_MASK"),
            MemoryRegion(0x4200_0000, 0x4300_0000, "IROM"),
            MemoryRegion(0x4080_0000, 0x4088_0000, "IRAM"),
            MemoryRegion(0x5000_0000, 0x5000_4000, "RTC_IRAM"),
            MemoryRegion(0x5000_0000, 0x5000_4000, "RTC_DRAM"),
            MemoryRegion(0x600F_E000, 0x6010_0000, "MEM_INTERNAL2"),
        ],
        flashMappedRanges: [MemoryRegion(0x4200_0000, 0x4280_0000, "IROM"), MemoryRegion(0x4280_0000, 0x4300_0000, "DROM")],
        mmuPageSize: 0x10000,
        mmuPageSizes: [0x2000, 0x4000, 0x8000, 0x10000],
        flashEncryption: .xtsAES,
        romChipMagic: [],
        flashEncryptionKeyLengths: [32]
    )
}
