extension ChipSpec {
    /// ESP32-C6: image facts (chip id, flash codes, memory map, flash-mapped ranges, MMU pages,
    /// bootloader offset) checked against esptool 5.6.0 (`targets/esp32c6.py`, `bin_image.py`).
    /// Image-only so far: not in ``ChipSpec/all`` (the security flow). The flash-encryption fields
    /// are provisional, unchecked against espefuse and unused until the chip joins that flow.
    public static let esp32c6 = ChipSpec(
        name: "esp32c6",
        displayName: "ESP32-C6",
        imageChipID: 13,
        bootloaderOffset: 0x0,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("80m", 0x0, value: 80_000_000), NamedCode("40m", 0x0, value: 40_000_000), NamedCode("20m", 0x2, value: 20_000_000),
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
