import EFuse
import VirtualDevice

/// The chip-specific facts of a first boot, one row per chip (`BootChip+ESP32S3.swift`,
/// `BootChip+ESP32C3.swift`): where the ROM finds the bootloader, what its console prints
/// around the SPI boot, and whether the eFuses are the ESP32's ``EFuseArray`` (`fieldMap` nil,
/// the recorded model) or the S3/C3 generation's key blocks with purposes (``VirtualChip``'s
/// field map, read and burned by name through ``BootState``'s eFuse primitives).
struct BootChip: Sendable {
    /// espforge chip name.
    let name: String
    /// nil: the ESP32 model (``EFuseArray``, ``EFuseLayout/esp32``). Otherwise the S3/C3 chip
    /// whose eFuses live in ``Device/cells``.
    let fieldMap: VirtualChip?
    /// Flash offset of the second-stage bootloader.
    let bootloaderOffset: Int
    /// ROM lines before the reset line (S3/C3: `ESP-ROM:…`, `Build:…`).
    let romBanner: [String]
    /// The reset line's cause on power-on and after the bootloader's `esp_restart`.
    let powerOnReset: String
    let softwareReset: String
    /// `boot:0x..` printed on an SPI boot (strapping pins); nil = ``BootConfig/strapping``.
    let spiBootStrapping: UInt8?
    /// The line the ROM prints when it stops (after `secure boot verification failed`).
    let romHaltLine: String
    /// Key purposes of the Secure Boot V2 digest slots 0-2 (empty on the ESP32: BLK2).
    let digestPurposes: [Int]
    /// The image header's chip id (ESP32 0, S3 9, C3 5).
    var imageChipID: UInt16 = 0
    /// The bootloader's tag for the flash settings (`boot.esp32s3`) and its speed label.
    var idfTag = "boot.esp32"
    var spiSpeedLabel = "SPI Speed      : "
    /// S3/C3 banner: `Multicore bootloader` (dual-core S3).
    var multicore = false
    /// Address ranges the bootloader maps through the MMU (flash-resident code and data) rather
    /// than loads: [start, end).
    var mappedRanges: [Range<UInt32>] = [0x400D_0000..<0x4040_0000, 0x3F40_0000..<0x3F80_0000]

    static let esp32 = BootChip(
        name: "esp32", fieldMap: nil, bootloaderOffset: 0x1000, romBanner: [],
        powerOnReset: "rst:0x1 (POWERON_RESET)", softwareReset: "rst:0x3 (SW_RESET)", spiBootStrapping: nil,
        romHaltLine: "ets_main.c 371 ", digestPurposes: [])

    static let all: [BootChip] = [.esp32, .esp32s3, .esp32c3]

    static func of(_ device: Device) -> BootChip {
        all.first { $0.name == (device.chip?.name ?? "esp32") } ?? .esp32
    }

    /// The field map of an S3/C3 (nil on the ESP32).
    var map: EFuseFieldMap? { fieldMap?.efuseMap }
}
