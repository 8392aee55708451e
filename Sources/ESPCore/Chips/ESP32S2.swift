extension ChipSpec {
    /// ESP32-S2: image facts (chip id, flash codes, memory map, flash-mapped ranges, MMU pages,
    /// bootloader offset) checked against esptool 5.6.0 (`targets/esp32s2.py`, `bin_image.py`).
    /// Image-only so far: not in ``ChipSpec/all`` (the security flow). The flash-encryption fields
    /// are provisional, unchecked against espefuse and unused until the chip joins that flow.
    public static let esp32s2 = ChipSpec(
        name: "esp32s2",
        displayName: "ESP32-S2",
        imageChipID: 2,
        bootloaderOffset: 0x1000,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("80m", 0xF, value: 80_000_000), NamedCode("40m", 0x0, value: 40_000_000), NamedCode("26m", 0x1, value: 26_000_000), NamedCode("20m", 0x2, value: 20_000_000),
        ],
        flashModes: standardFlashModes,
        memoryMap: [
            MemoryRegion(0x0000_0000, 0x0001_0000, "PADDING"),
            MemoryRegion(0x3F00_0000, 0x3FF8_0000, "DROM"),
            MemoryRegion(0x3F50_0000, 0x3FF8_0000, "EXTRAM_DATA"),
            MemoryRegion(0x3FF9_E000, 0x3FFA_0000, "RTC_DRAM"),
            MemoryRegion(0x3FF9_E000, 0x4000_0000, "BYTE_ACCESSIBLE"),
            MemoryRegion(0x3FF9_E000, 0x4007_2000, "MEM_INTERNAL"),
            MemoryRegion(0x3FFB_0000, 0x4000_0000, "DRAM"),
            MemoryRegion(0x4000_0000, 0x4001_A100, "IROM_MASK"),
            MemoryRegion(0x4002_0000, 0x4007_0000, "IRAM"),
            MemoryRegion(0x4007_0000, 0x4007_2000, "RTC_IRAM"),
            MemoryRegion(0x4008_0000, 0x4080_0000, "IROM"),
            MemoryRegion(0x5000_0000, 0x5000_2000, "RTC_DATA"),
        ],
        flashMappedRanges: [MemoryRegion(0x4008_0000, 0x40B8_0000, "IROM"), MemoryRegion(0x3F00_0000, 0x3F3F_0000, "DROM")],
        mmuPageSize: 0x10000,
        mmuPageSizes: [],
        flashEncryption: .xtsAES,
        romChipMagic: [0x0000_07C6],
        flashEncryptionKeyLengths: [32, 64]
    )
}
