import EFuse
import ESPCore
import Loader

/// How the ROM loader and the flasher stub of a chip with the newer eFuse controller (ESP32-S3,
/// ESP32-C3) differ from the ESP32 that ``ProtocolEngine`` models natively: registers, chip
/// detection, GET_SECURITY_INFO and factory eFuses. One table file per chip (`ESP32S3.swift`,
/// `ESP32C3.swift`). The ESP32 keeps its own, recorded model (no row here).
///
/// Everything in these tables is modelled from documentation and from what esptool / espefuse
/// 5.6.0 send and expect (read for facts); no recording of the real S3/C3 ROM exists yet (see
/// docs/virtual-device-chips.md).
public struct VirtualChip: Sendable {
    /// espforge/esptool chip name ("esp32s3").
    public let name: String
    public let displayName: String
    /// The chip's eFuse field map and controller registers.
    public let efuseMap: EFuseFieldMap
    public let efuseRegisters: FieldMapControllerRegisters
    /// Chip id in GET_SECURITY_INFO (the image header's chip id: 9 = S3, 5 = C3).
    public let chipID: UInt32
    /// Word at the chip-detect magic address 0x40001000 (esptool's fallback detection).
    public let magicValue: UInt32
    /// SPI1 "user command" registers (flash id, SFDP, status).
    public let spi: SPIRegisterLayout
    /// UART0 CLKDIV and the UART date register esptool writes as a delay excuse.
    public let uartClockDivider: UInt32
    public let uartDate: UInt32
    /// GPIO_STRAP (bit 3 clear = GPIO0 low: download boot) and its value in download mode.
    public let gpioStrap: UInt32
    public let gpioStrapDownload: UInt32
    /// Registers that accept writes and read back what was written (RTC watchdog, SWD, OPTION1…).
    public let plainRegisters: [UInt32]
    /// Espressif OUI of the factory MACs of this family.
    public let macOUI: [UInt8]
    /// Factory defaults: wafer major/minor revision and package code.
    public let defaultMajorRevision: Int
    public let defaultMinorRevision: Int
    public let defaultPackage: Int
    /// GET_SECURITY_INFO flag bits: bit → eFuse fields, the flag set when any of them is non-zero
    /// (SOFT_DIS_JTAG: when an odd number of its bits is set).
    public let securityFlags: [(bit: Int, fields: [String])]
    /// Key purposes usable as the flash-encryption key (one XTS-AES-128 key, or the XTS-AES-256
    /// halves in order).
    public let xts128Purpose: Int
    public let xts256Purposes: [Int]?
    /// Encrypted writes need 16-byte alignment (esptool's FLASH_ENCRYPTED_WRITE_ALIGN).
    public let encryptedWriteAlign: Int
    /// The ROM's first console lines and its name for the download boot mode (from Espressif's
    /// documentation and published boot logs; not recorded here).
    public let romBannerHead: String
    public let downloadBootName: String
    /// ESP32-S3: with SECURE_BOOT_EN the ROM does not run code uploaded with MEM_END; esptool
    /// instead points the ROM's legacy flash-read function pointer (this RAM word, holding
    /// `romValue` after reset) at the stub and sends READ_FLASH_SLOW, which then jumps into it.
    public var secureBootStubHook: (address: UInt32, romValue: UInt32)? = nil

    /// What the ROM prints when it starts in download mode after `reset` (e.g. `0x15
    /// (USB_UART_CHIP_RESET)`).
    public func downloadBanner(reset: String) -> [UInt8] {
        Array((romBannerHead + "rst:\(reset),boot:0x0 (\(downloadBootName))\r\nwaiting for download\r\n").utf8)
    }

    public static let all: [VirtualChip] = [.esp32s3, .esp32c3]

    /// What the ROM still accepts in Secure Download Mode (ENABLE_SECURITY_DOWNLOAD): SYNC, SPI
    /// attach / parameters, baud, flash writes (plain and compressed) and GET_SECURITY_INFO. From
    /// the ESP-IDF security documentation; the same for both chips.
    public static let secureDownloadCommands: Set<Opcode> = [
        .sync, .spiAttach, .spiSetParams, .changeBaudrate, .flashBegin, .flashData, .flashEnd,
        .flashDeflBegin, .flashDeflData, .flashDeflEnd, .getSecurityInfo,
    ]

    public static func named(_ chip: String) -> VirtualChip? {
        let key = chip.lowercased().replacingOccurrences(of: "-", with: "")
        return all.first { $0.name == key }
    }

    /// Names `espforge device create --chip` accepts.
    public static var supportedNames: [String] { ["esp32"] + all.map(\.name) }
}

/// The SPI1 registers through which esptool runs flash commands (offsets from `base`).
public struct SPIRegisterLayout: Sendable, Hashable {
    public let base: UInt32
    public let cmd: UInt32, addr: UInt32, user: UInt32, user1: UInt32, user2: UInt32
    public let mosiDlen: UInt32, misoDlen: UInt32, w0: UInt32
    public let windowSize: UInt32 = 0x100

    public init(base: UInt32, cmd: UInt32, addr: UInt32, user: UInt32, user1: UInt32, user2: UInt32,
                mosiDlen: UInt32, misoDlen: UInt32, w0: UInt32) {
        (self.base, self.cmd, self.addr, self.user, self.user1, self.user2) = (base, cmd, addr, user, user1, user2)
        (self.mosiDlen, self.misoDlen, self.w0) = (mosiDlen, misoDlen, w0)
    }

    /// The ESP32's SPI1 (base 0x3FF42000).
    public static let esp32 = SPIRegisterLayout(base: 0x3FF4_2000, cmd: 0x00, addr: 0x04, user: 0x1C, user1: 0x20,
                                                user2: 0x24, mosiDlen: 0x28, misoDlen: 0x2C, w0: 0x80)
    /// SPI1 of the S3/C3 generation (base 0x60002000).
    public static let esp32s3Generation = SPIRegisterLayout(base: 0x6000_2000, cmd: 0x00, addr: 0x04, user: 0x18,
                                                            user1: 0x1C, user2: 0x20, mosiDlen: 0x24, misoDlen: 0x28,
                                                            w0: 0x58)
}
