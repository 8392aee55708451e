/// ESP8266 image facts. The ESP8266 predates the extended image header (no chip id, no revisions,
/// no appended SHA-256), so it is not a ``ChipSpec``: espforge only reads its images (`image info`).
/// Facts checked against esptool 5.6.0 (`targets/esp8266.py`, `bin_image.py`).
public enum ESP8266Facts {
    public static let displayName = "ESP8266"
    /// First byte of a version-1 image (the same magic as the ESP32 family).
    public static let imageV1Magic: UInt8 = 0xE9
    /// First byte of a version-2 image (IROM segment before a second, version-1 style header).
    public static let imageV2Magic: UInt8 = 0xEA
    /// The "segment count" a version-2 first header normally carries.
    public static let imageV2SegmentField = 4
    /// Start of the flash-mapped IROM window.
    public static let iromMapStart: UInt32 = 0x4020_0000
    /// Header byte 3 high nibble codes (the ESP8266 order differs from the ESP32 family's).
    public static let flashSizes: [NamedCode] = [
        NamedCode("512KB", 0x00, value: 512 << 10), NamedCode("256KB", 0x10, value: 256 << 10),
        NamedCode("1MB", 0x20, value: 1 << 20), NamedCode("2MB", 0x30, value: 2 << 20),
        NamedCode("4MB", 0x40, value: 4 << 20), NamedCode("2MB-c1", 0x50, value: 2 << 20),
        NamedCode("4MB-c1", 0x60, value: 4 << 20), NamedCode("8MB", 0x80, value: 8 << 20),
        NamedCode("16MB", 0x90, value: 16 << 20),
    ]
    public static let flashFrequencies: [NamedCode] = [
        NamedCode("80m", 0xF, value: 80_000_000), NamedCode("40m", 0x0, value: 40_000_000),
        NamedCode("26m", 0x1, value: 26_000_000), NamedCode("20m", 0x2, value: 20_000_000),
    ]
    public static let memoryMap: [MemoryRegion] = [
        MemoryRegion(0x3FF0_0000, 0x3FF0_0010, "DPORT"),
        MemoryRegion(0x3FFE_8000, 0x4000_0000, "DRAM"),
        MemoryRegion(0x4010_0000, 0x4010_8000, "IRAM"),
        MemoryRegion(0x4020_1010, 0x402E_1010, "IROM"),
    ]
}
