extension ChipSpec {
    /// ESP32 (ESP32-D0WD and relatives). Facts: ../shared/spec/image-format.md; flash codes, memory
    /// map and flash-mapped ranges checked against esptool 5.6.0 (`targets/esp32.py`).
    public static let esp32 = ChipSpec(
        name: "esp32",
        displayName: "ESP32",
        imageChipID: 0x0000,
        bootloaderOffset: 0x1000,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("40m", 0x0, value: 40_000_000), NamedCode("26m", 0x1, value: 26_000_000),
            NamedCode("20m", 0x2, value: 20_000_000), NamedCode("80m", 0xF, value: 80_000_000),
        ],
        flashModes: standardFlashModes,
        memoryMap: [
            MemoryRegion(0x0000_0000, 0x0001_0000, "PADDING"),
            MemoryRegion(0x3F40_0000, 0x3F80_0000, "DROM"),
            MemoryRegion(0x3F80_0000, 0x3FC0_0000, "EXTRAM_DATA"),
            MemoryRegion(0x3FF8_0000, 0x3FF8_2000, "RTC_DRAM"),
            MemoryRegion(0x3FF9_0000, 0x4000_0000, "BYTE_ACCESSIBLE"),
            MemoryRegion(0x3FFA_E000, 0x4000_0000, "DRAM"),
            MemoryRegion(0x3FFE_0000, 0x3FFF_FFFC, "DIRAM_DRAM"),
            MemoryRegion(0x4000_0000, 0x4007_0000, "IROM"),
            MemoryRegion(0x4007_0000, 0x4007_8000, "CACHE_PRO"),
            MemoryRegion(0x4007_8000, 0x4008_0000, "CACHE_APP"),
            MemoryRegion(0x4008_0000, 0x400A_0000, "IRAM"),
            MemoryRegion(0x400A_0000, 0x400B_FFFC, "DIRAM_IRAM"),
            MemoryRegion(0x400C_0000, 0x400C_2000, "RTC_IRAM"),
            MemoryRegion(0x400D_0000, 0x4040_0000, "IROM"),
            MemoryRegion(0x5000_0000, 0x5000_2000, "RTC_DATA"),
        ],
        flashMappedRanges: [MemoryRegion(0x400D_0000, 0x4040_0000, "IROM"), MemoryRegion(0x3F40_0000, 0x3F80_0000, "DROM")],
        mmuPageSize: 0x10000,
        flashEncryption: .esp32Tweak,
        romChipMagic: [0x00F0_1D83]
    )
}
