import ESPCore
import SecureBoot

/// What differs between chips for the security rules, as data: eFuse names, how many signature
/// blocks and digest slots, which XTS key purposes make up a flash-encryption key, the minimum
/// revision for Secure Boot V2, and the eFuses that harden a chip once Secure Boot is on. The rules
/// read these rows; none tests a chip's name. Facts from ESP-IDF's Secure Boot V2 and flash
/// encryption documentation and espefuse/esptool 5.6.0.
public struct ChipSecurityProfile: Sendable {
    /// One way to make a flash-encryption key: the key purposes that must all be burned.
    public struct XTSKeyScheme: Sendable, Equatable {
        public let name: String
        public let purposes: [String]
        /// The sdkconfig option that selects it (CONFIG_SECURE_FLASH_ENCRYPTION_AES128/AES256).
        public let sdkconfigOption: String
    }

    /// An eFuse that ESP-IDF burns when it enables Secure Boot in release mode.
    public struct HardeningFuse: Sendable, Equatable {
        public let name: String
        public let why: String
        /// An sdkconfig option that deliberately keeps it unburned.
        public let allowedBy: String?
        public let isBurned: @Sendable (KeyBlockFuseFacts) -> Bool

        public static func == (a: HardeningFuse, b: HardeningFuse) -> Bool { a.name == b.name }
    }

    public let chip: String
    /// The eFuse that says Secure Boot V2 is on.
    public let secureBootFlag: String
    /// Where the trusted key digest(s) live, for messages.
    public let digestLocation: String
    /// How many key digests the chip can trust at once.
    public let digestSlots: Int
    /// The flash-encryption counter and its width (on when an odd number of bits is set).
    public let cryptCounter: String
    public let cryptCounterBits: Int
    /// The eFuse that disables the serial download mode.
    public let downloadDisable: String
    /// The eFuse that stops the ROM loader from encrypting writes (`--encrypt`).
    public let downloadEncryptDisable: String
    /// Secure Boot V2 rules of the ROM (schemes, honoured signature blocks).
    public let policy: SecureBootPolicy
    /// Lowest revision (major·100 + minor) whose ROM supports Secure Boot V2.
    public let minSecureBootV2Revision: Int
    /// The flash-encryption key schemes the chip accepts (empty: not key-purpose based).
    public let xtsSchemes: [XTSKeyScheme]
    public let hardening: [HardeningFuse]

    /// The crypt counter with every bit burned: encryption can never be switched again.
    public var cryptCounterExhausted: Int { (1 << cryptCounterBits) - 1 }

    public static let esp32 = ChipSecurityProfile(
        chip: "esp32", secureBootFlag: "ABS_DONE_1", digestLocation: "BLK2", digestSlots: 1,
        cryptCounter: "FLASH_CRYPT_CNT", cryptCounterBits: 7, downloadDisable: "UART_DOWNLOAD_DIS",
        downloadEncryptDisable: "DISABLE_DL_ENCRYPT", policy: .esp32, minSecureBootV2Revision: 300,
        xtsSchemes: [], hardening: [])

    static let aes128 = XTSKeyScheme(name: "XTS-AES-128", purposes: ["XTS_AES_128_KEY"],
                                     sdkconfigOption: "CONFIG_SECURE_FLASH_ENCRYPTION_AES128")
    static let aes256 = XTSKeyScheme(name: "XTS-AES-256", purposes: ["XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"],
                                     sdkconfigOption: "CONFIG_SECURE_FLASH_ENCRYPTION_AES256")
    static let keyPurposeHardening: [HardeningFuse] = [
        HardeningFuse(name: "DIS_PAD_JTAG", why: "JTAG on the pads can halt the CPU and read RAM after the image is verified",
                      allowedBy: "CONFIG_SECURE_BOOT_ALLOW_JTAG") { $0.disPadJTAG },
        HardeningFuse(name: "DIS_USB_JTAG", why: "JTAG over USB-Serial-JTAG can halt the CPU and read RAM after the image is verified",
                      allowedBy: "CONFIG_SECURE_BOOT_ALLOW_JTAG") { $0.disUSBJTAG },
        HardeningFuse(name: "DIS_DIRECT_BOOT", why: "the ROM's direct-boot mode (code run straight from flash, no image header) stays available",
                      allowedBy: nil) { $0.disDirectBoot },
    ]

    public static let esp32s3 = ChipSecurityProfile(
        chip: "esp32s3", secureBootFlag: "SECURE_BOOT_EN", digestLocation: "a key block with purpose SECURE_BOOT_DIGESTn",
        digestSlots: 3, cryptCounter: "SPI_BOOT_CRYPT_CNT", cryptCounterBits: 3, downloadDisable: "DIS_DOWNLOAD_MODE",
        downloadEncryptDisable: "DIS_DOWNLOAD_MANUAL_ENCRYPT", policy: .esp32s3, minSecureBootV2Revision: 0,
        xtsSchemes: [aes128, aes256], hardening: keyPurposeHardening)

    /// Secure Boot V2 from ECO3 (v0.3); XTS-AES-128 only.
    public static let esp32c3 = ChipSecurityProfile(
        chip: "esp32c3", secureBootFlag: "SECURE_BOOT_EN", digestLocation: "a key block with purpose SECURE_BOOT_DIGESTn",
        digestSlots: 3, cryptCounter: "SPI_BOOT_CRYPT_CNT", cryptCounterBits: 3, downloadDisable: "DIS_DOWNLOAD_MODE",
        downloadEncryptDisable: "DIS_DOWNLOAD_MANUAL_ENCRYPT", policy: .esp32c3, minSecureBootV2Revision: 3,
        xtsSchemes: [aes128], hardening: keyPurposeHardening)

    public static let all: [ChipSecurityProfile] = [.esp32, .esp32s3, .esp32c3]

    public static func named(_ chip: String) -> ChipSecurityProfile? { all.first { $0.chip == chip } }

    /// All XTS key purposes of the chip (the union of its schemes).
    public var xtsPurposes: [String] { xtsSchemes.flatMap(\.purposes) }
}

extension PreflightContext {
    /// The target's row of ``ChipSecurityProfile`` (nil for chips without one: their
    /// chip-specific security rules stay silent).
    public var security: ChipSecurityProfile? { ChipSecurityProfile.named(target.chip.name) }
    /// The key-purpose eFuse state, when the target has one (S3/C3).
    public var keyBlocks: KeyBlockFuseFacts? { efuses?.keyBlocks }

    /// How many leading signature blocks the target's ROM and bootloader look at.
    public var honouredBlocks: Int { security?.policy.honouredBlocks ?? 1 }

    /// The key digests of the leading, CRC-valid blocks the chip looks at.
    public func honouredKeyDigests(_ e: AnalyzedEntry) -> [[UInt8]] {
        guard let checks = e.signature?.checks else { return [] }
        return Array(checks.prefix { $0.block.crcValid }.prefix(honouredBlocks).map(\.block.keyDigest))
    }
}
