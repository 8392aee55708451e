extension ChipSpec {
    /// ESP32-S3. Only the facts the image and encryption cores need so far. Flash codes and memory map
    /// checked against esptool 5.6.0 (`targets/esp32s3.py`, which inherits the ESP32 flash tables).
    public static let esp32s3 = ChipSpec(
        name: "esp32s3",
        displayName: "ESP32-S3",
        imageChipID: 0x0009,
        bootloaderOffset: 0x0,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("80m", 0xF, value: 80_000_000), NamedCode("40m", 0x0, value: 40_000_000),
            NamedCode("26m", 0x1, value: 26_000_000), NamedCode("20m", 0x2, value: 20_000_000),
        ],
        flashModes: standardFlashModes,
        memoryMap: [
            MemoryRegion(0x0000_0000, 0x0001_0000, "PADDING"),
            MemoryRegion(0x3C00_0000, 0x3D00_0000, "DROM"),
            MemoryRegion(0x3D00_0000, 0x3E00_0000, "EXTRAM_DATA"),
            MemoryRegion(0x600F_E000, 0x6010_0000, "RTC_DRAM"),
            MemoryRegion(0x3FC8_8000, 0x3FD0_0000, "BYTE_ACCESSIBLE"),
            MemoryRegion(0x3FC8_8000, 0x403E_2000, "MEM_INTERNAL"),
            MemoryRegion(0x3FC8_8000, 0x3FD0_0000, "DRAM"),
            MemoryRegion(0x4000_0000, 0x4001_A100, "IROM_MASK"),
            MemoryRegion(0x4037_0000, 0x403E_0000, "IRAM"),
            MemoryRegion(0x600F_E000, 0x6010_0000, "RTC_IRAM"),
            MemoryRegion(0x4200_0000, 0x4280_0000, "IROM"),
            MemoryRegion(0x5000_0000, 0x5000_2000, "RTC_DATA"),
        ],
        flashMappedRanges: [MemoryRegion(0x4200_0000, 0x4400_0000, "IROM"), MemoryRegion(0x3C00_0000, 0x3E00_0000, "DROM")],
        mmuPageSize: 0x10000,
        flashEncryption: .xtsAES,
        romChipMagic: [0x0000_0009]
    )
}
