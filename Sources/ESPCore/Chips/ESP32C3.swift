extension ChipSpec {
    /// ESP32-C3. Only the facts the image and encryption cores need so far. Flash codes and memory map
    /// checked against esptool 5.6.0 (`targets/esp32c3.py`, which inherits the ESP32 flash tables).
    public static let esp32c3 = ChipSpec(
        name: "esp32c3",
        displayName: "ESP32-C3",
        imageChipID: 0x0005,
        bootloaderOffset: 0x0,
        flashSizes: flashSizeTable(upTo: 128),
        flashFrequencies: [
            NamedCode("80m", 0xF, value: 80_000_000), NamedCode("40m", 0x0, value: 40_000_000),
            NamedCode("26m", 0x1, value: 26_000_000), NamedCode("20m", 0x2, value: 20_000_000),
        ],
        flashModes: standardFlashModes,
        memoryMap: [
            MemoryRegion(0x0000_0000, 0x0001_0000, "PADDING"),
            MemoryRegion(0x3C00_0000, 0x3C80_0000, "DROM"),
            MemoryRegion(0x3FC8_0000, 0x3FCE_0000, "DRAM"),
            MemoryRegion(0x3FC8_8000, 0x3FD0_0000, "BYTE_ACCESSIBLE"),
            MemoryRegion(0x3FF0_0000, 0x3FF2_0000, "DROM_MASK"),
            MemoryRegion(0x4000_0000, 0x4006_0000, "IROM_MASK"),
            MemoryRegion(0x4200_0000, 0x4280_0000, "IROM"),
            MemoryRegion(0x4037_C000, 0x403E_0000, "IRAM"),
            MemoryRegion(0x5000_0000, 0x5000_2000, "RTC_IRAM"),
            MemoryRegion(0x5000_0000, 0x5000_2000, "RTC_DRAM"),
            MemoryRegion(0x600F_E000, 0x6010_0000, "MEM_INTERNAL2"),
        ],
        flashMappedRanges: [MemoryRegion(0x4200_0000, 0x4280_0000, "IROM"), MemoryRegion(0x3C00_0000, 0x3C80_0000, "DROM")],
        mmuPageSize: 0x10000,
        flashEncryption: .xtsAES,
        romChipMagic: [0x6921_506F, 0x1B31_506F, 0x4881_606F, 0x4361_606F],
        // Only the XTS_AES_128_KEY purpose exists on the C3 (espefuse esp32c3 KEY_PURPOSES).
        flashEncryptionKeyLengths: [32]
    )
}
