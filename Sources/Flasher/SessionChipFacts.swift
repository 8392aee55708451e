/// Per-chip facts the flash session needs once the chip is known, as a data table (one row per
/// chip the session connects to). Detection and the eFuse and SPI registers are in
/// ``FieldMapChipFacts`` (ESP32-S3/C3) and ``ChipProbe`` (ESP32); whether the ROM's compressed
/// write stays inside the region is ``ESPCore/ROMLoaderFacts``.
public struct SessionChipFacts: Sendable, Hashable {
    /// ``ESPCore/ChipSpec/name``.
    public let name: String
    /// esptool's flasher stub for the chip: `targets/stub_flasher/{2,1}/<stubName>.json`.
    public let stubName: String
    /// FLASH_BEGIN / FLASH_DEFL_BEGIN always carry a fifth word, the encrypted-write flag (0 or
    /// 1), to ROM and stub alike (esptool 5.6.0 on every chip but ESP32/ESP8266). False: the
    /// word is sent only with `--encrypt`, and only to the stub.
    public let beginCarriesEncryptFlag: Bool
    /// The ROM loader takes the encrypted-write flag (an encrypted write without the stub).
    public let romEncryptedWrite: Bool
    /// An encrypted write's address and length must be multiples of this (the flash encryption
    /// engine's unit); the session pads the data with 0xFF to it. nil: the session's 4-byte
    /// padding (ESP32, unchanged).
    public let encryptedWriteAlign: Int?
    /// The flash encryption the chip applies to an encrypted write, for messages.
    public let encryption: String
    /// With Secure Boot on, the ROM does not run code from MEM_END: the stub is started through
    /// the ROM's legacy flash-read function pointer at this RAM address (ESP32-S3, as esptool
    /// 5.6.0 does). nil: MEM_END's entry always.
    public var secureBootStubReadHook: UInt32? = nil

    public static let table: [SessionChipFacts] = [
        SessionChipFacts(name: "esp32", stubName: "esp32", beginCarriesEncryptFlag: false, romEncryptedWrite: false,
                         encryptedWriteAlign: nil, encryption: "AES-256 (ESP32 flash encryption)"),
        SessionChipFacts(name: "esp32s3", stubName: "esp32s3", beginCarriesEncryptFlag: true, romEncryptedWrite: true,
                         encryptedWriteAlign: 16, encryption: "XTS-AES-128 or XTS-AES-256 (key purposes)",
                         secureBootStubReadHook: 0x3FCE_F688),
        SessionChipFacts(name: "esp32c3", stubName: "esp32c3", beginCarriesEncryptFlag: true, romEncryptedWrite: true,
                         encryptedWriteAlign: 16, encryption: "XTS-AES-128"),
    ]

    public static func named(_ name: String) -> SessionChipFacts? { table.first { $0.name == name } }
}
