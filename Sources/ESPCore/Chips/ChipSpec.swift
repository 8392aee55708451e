/// Per-chip facts as data. Each supported chip has one file in this folder defining a `ChipSpec`
/// value; code looks facts up here instead of branching on chip names. Adding a chip means adding
/// a file and listing it in ``ChipSpec/all``.
public struct ChipSpec: Sendable, Hashable {
    /// Command-line name, e.g. `esp32`, `esp32s3`.
    public let name: String
    /// Marketing name, e.g. `ESP32-S3`.
    public let displayName: String
    /// `chip_id` in the image extended header (`esp_chip_id_t`).
    public let imageChipID: UInt16
    /// Flash offset of the second-stage bootloader image.
    public let bootloaderOffset: Int
    /// Header byte 3 high nibble codes, by name (`"4MB"` → `0x20`).
    public let flashSizes: [NamedCode]
    /// Header byte 3 low nibble codes, by name (`"40m"` → `0x0`).
    public let flashFrequencies: [NamedCode]
    /// Header byte 2 codes.
    public let flashModes: [NamedCode]
    /// Address ranges by memory type, as the image tools classify segments.
    public let memoryMap: [MemoryRegion]
    /// Address ranges mapped from flash by the MMU (segments there are not copied to RAM).
    public let flashMappedRanges: [MemoryRegion]
    /// MMU page size for flash-mapped segments (the default).
    public let mmuPageSize: Int
    /// MMU page sizes the chip can be configured for (`--flash-mmu-page-size`); empty when only
    /// ``mmuPageSize`` exists.
    public let mmuPageSizes: [Int]
    /// Which host-side flash encryption algorithm the chip uses.
    public let flashEncryption: FlashEncryptionScheme
    /// Values of the ROM's chip-detect magic register (`0x40001000`) for this chip.
    public let romChipMagic: [UInt32]
    /// Flash encryption key file lengths (bytes) the chip's eFuses can hold: ESP32 32 (AES-256)
    /// or 24 (3/4 coding scheme); XTS chips 32 (XTS-AES-128) and, where supported, 64 (XTS-AES-256).
    public let flashEncryptionKeyLengths: [Int]

    public init(name: String, displayName: String, imageChipID: UInt16, bootloaderOffset: Int,
                flashSizes: [NamedCode], flashFrequencies: [NamedCode], flashModes: [NamedCode],
                memoryMap: [MemoryRegion], flashMappedRanges: [MemoryRegion], mmuPageSize: Int,
                mmuPageSizes: [Int] = [], flashEncryption: FlashEncryptionScheme, romChipMagic: [UInt32],
                flashEncryptionKeyLengths: [Int]? = nil) {
        self.name = name
        self.displayName = displayName
        self.imageChipID = imageChipID
        self.bootloaderOffset = bootloaderOffset
        self.flashSizes = flashSizes
        self.flashFrequencies = flashFrequencies
        self.flashModes = flashModes
        self.memoryMap = memoryMap
        self.flashMappedRanges = flashMappedRanges
        self.mmuPageSize = mmuPageSize
        self.mmuPageSizes = mmuPageSizes
        self.flashEncryption = flashEncryption
        self.romChipMagic = romChipMagic
        self.flashEncryptionKeyLengths = flashEncryptionKeyLengths
            ?? (flashEncryption == .esp32Tweak ? [32, 24] : [32, 64])
    }

    /// Chips the security flow (eFuses, Secure Boot, flash encryption, provisioning) supports, in
    /// the order `--chip` help lists them.
    public static let all: [ChipSpec] = [.esp32, .esp32s3, .esp32c3]

    /// Every chip whose images espforge reads and builds (`image info`, `elf2image`, `retarget`),
    /// in esptool's order. A superset of ``all``.
    public static let imageChips: [ChipSpec] = [
        .esp32, .esp32s2, .esp32s3, .esp32c2, .esp32c3, .esp32c5, .esp32c6, .esp32c61, .esp32h2, .esp32h4, .esp32p4,
    ]

    /// Looks a chip up by `name` (case-insensitive, `-`/`_` ignored: `ESP32-S3` works).
    public static func named(_ name: String) -> ChipSpec? {
        named(name, in: all)
    }

    /// Looks a chip up by `name` among `chips` (same spelling rules as ``named(_:)``).
    public static func named(_ name: String, in chips: [ChipSpec]) -> ChipSpec? {
        let key = name.lowercased().filter { $0 != "-" && $0 != "_" }
        return chips.first { $0.name == key }
    }

    /// Chip whose image header carries `id` (any chip in ``imageChips``).
    public static func withImageChipID(_ id: UInt16) -> ChipSpec? {
        imageChips.first { $0.imageChipID == id }
    }

    public func flashSize(named name: String) -> NamedCode? {
        flashSizes.first { $0.name.lowercased() == name.lowercased() }
    }
    public func flashSize(code: UInt8) -> NamedCode? { flashSizes.first { $0.code == code } }
    public func flashFrequency(named name: String) -> NamedCode? {
        flashFrequencies.first { $0.name.lowercased() == name.lowercased() }
    }
    public func flashFrequency(code: UInt8) -> NamedCode? { flashFrequencies.first { $0.code == code } }
    public func flashMode(named name: String) -> NamedCode? {
        flashModes.first { $0.name.lowercased() == name.lowercased() }
    }
    public func flashMode(code: UInt8) -> NamedCode? { flashModes.first { $0.code == code } }

    /// The memory type (`"DROM"`, `"IRAM"` …) of the first region containing `address`.
    public func memoryType(of address: UInt32) -> String? {
        memoryMap.first { $0.contains(address) }?.name
    }

    /// Whether a segment loaded at `address` is mapped from flash by the MMU.
    public func isFlashMapped(_ address: UInt32) -> Bool {
        flashMappedRanges.contains { $0.contains(address) }
    }
}

/// A name and the code a header byte uses for it.
public struct NamedCode: Sendable, Hashable {
    public let name: String
    public let code: UInt8
    /// Numeric meaning where there is one (bytes for sizes, Hz for frequencies).
    public let value: Int
    public init(_ name: String, _ code: UInt8, value: Int = 0) {
        self.name = name
        self.code = code
        self.value = value
    }
}

/// A half-open address range `[start, end)` of one memory type.
public struct MemoryRegion: Sendable, Hashable {
    public let start: UInt32
    public let end: UInt32
    public let name: String
    public init(_ start: UInt32, _ end: UInt32, _ name: String) {
        self.start = start
        self.end = end
        self.name = name
    }
    public func contains(_ address: UInt32) -> Bool { address >= start && address < end }
}

public enum FlashEncryptionScheme: String, Sendable, Hashable {
    /// ESP32: AES-256 with the per-32-byte key tweak selected by FLASH_CRYPT_CONFIG.
    case esp32Tweak
    /// ESP32-S2/S3/C-series: XTS-AES-128 or XTS-AES-256.
    case xtsAES
}

/// Flash modes shared by all chips (image header byte 2).
public let standardFlashModes: [NamedCode] = [
    NamedCode("qio", 0), NamedCode("qout", 1), NamedCode("dio", 2), NamedCode("dout", 3),
]

/// Flash sizes as image header byte 3 high-nibble codes, 1 MB to `max`.
func flashSizeTable(upTo maxMB: Int) -> [NamedCode] {
    var out: [NamedCode] = []
    var mb = 1
    var code: UInt8 = 0
    while mb <= maxMB {
        out.append(NamedCode("\(mb)MB", code, value: mb << 20))
        mb *= 2
        code &+= 0x10
    }
    return out
}
