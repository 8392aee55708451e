extension ChipSpec {
    /// ESP32-C2: image facts (chip id, flash codes, memory map, flash-mapped ranges, MMU pages,
    /// bootloader offset) checked against esptool 5.6.0 (`targets/esp32c2.py`, `bin_image.py`).
    /// Image-only so far: not in ``ChipSpec/all`` (the security flow). The flash-encryption fields
    /// are provisional, unchecked against espefuse and unused until the chip joins that flow.
    public static let esp32c2 = ChipSpec(
        name: "esp32c2",
        displayName: "ESP32-C2",
        imageChipID: 12,
        bootloaderOffset: 0x0,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("60m", 0xF, value: 60_000_000), NamedCode("30m", 0x0, value: 30_000_000), NamedCode("20m", 0x1, value: 20_000_000), NamedCode("15m", 0x2, value: 15_000_000),
        ],
        flashModes: standardFlashModes,
        memoryMap: [
            MemoryRegion(0x0000_0000, 0x0001_0000, "PADDING"),
            MemoryRegion(0x3C00_0000, 0x3C40_0000, "DROM"),
            MemoryRegion(0x3FCA_0000, 0x3FCE_0000, "DRAM"),
            MemoryRegion(0x3FC8_8000, 0x3FD0_0000, "BYTE_ACCESSIBLE"),
            MemoryRegion(0x3FF0_0000, 0x3FF5_0000, "DROM_MASK"),
            MemoryRegion(0x4000_0000, 0x4009_0000, "IROM_MASK"),
            MemoryRegion(0x4200_0000, 0x4240_0000, "IROM"),
            MemoryRegion(0x4037_C000, 0x403C_0000, "IRAM"),
        ],
        flashMappedRanges: [MemoryRegion(0x4200_0000, 0x4240_0000, "IROM"), MemoryRegion(0x3C00_0000, 0x3C40_0000, "DROM")],
        mmuPageSize: 0x10000,
        mmuPageSizes: [0x4000, 0x8000, 0x10000],
        flashEncryption: .xtsAES,
        romChipMagic: [],
        flashEncryptionKeyLengths: [16, 32]
    )
}
