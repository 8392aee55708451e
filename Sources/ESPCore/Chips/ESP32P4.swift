extension ChipSpec {
    /// ESP32-P4: image facts (chip id, flash codes, memory map, flash-mapped ranges, MMU pages,
    /// bootloader offset) checked against esptool 5.6.0 (`targets/esp32p4.py`, `bin_image.py`).
    /// Image-only so far: not in ``ChipSpec/all`` (the security flow). The flash-encryption fields
    /// are provisional, unchecked against espefuse and unused until the chip joins that flow.
    public static let esp32p4 = ChipSpec(
        name: "esp32p4",
        displayName: "ESP32-P4",
        imageChipID: 18,
        bootloaderOffset: 0x2000,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("80m", 0xF, value: 80_000_000), NamedCode("40m", 0x0, value: 40_000_000), NamedCode("26m", 0x1, value: 26_000_000), NamedCode("20m", 0x2, value: 20_000_000),
        ],
        flashModes: standardFlashModes,
        memoryMap: [
            MemoryRegion(0x0000_0000, 0x0001_0000, "PADDING"),
            MemoryRegion(0x4000_0000, 0x4C00_0000, "DROM"),
            MemoryRegion(0x4FF0_0000, 0x4FFA_0000, "DRAM"),
            MemoryRegion(0x4FF0_0000, 0x4FFA_0000, "BYTE_ACCESSIBLE"),
            MemoryRegion(0x4FC0_0000, 0x4FC2_0000, "DROM_MASK"),
            MemoryRegion(0x4FC0_0000, 0x4FC2_0000, "IROM_MASK"),
            MemoryRegion(0x4000_0000, 0x4C00_0000, "IROM"),
            MemoryRegion(0x4FF0_0000, 0x4FFA_0000, "IRAM"),
            MemoryRegion(0x5010_8000, 0x5011_0000, "RTC_IRAM"),
            MemoryRegion(0x5010_8000, 0x5011_0000, "RTC_DRAM"),
            MemoryRegion(0x600F_E000, 0x6010_0000, "MEM_INTERNAL2"),
        ],
        flashMappedRanges: [MemoryRegion(0x4000_0000, 0x4C00_0000, "IROM"), MemoryRegion(0x4000_0000, 0x4C00_0000, "DROM")],
        mmuPageSize: 0x10000,
        mmuPageSizes: [],
        flashEncryption: .xtsAES,
        romChipMagic: [],
        flashEncryptionKeyLengths: [32, 64]
    )
}
