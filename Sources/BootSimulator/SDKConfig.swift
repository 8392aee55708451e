import ESPCore
import Foundation

/// The few sdkconfig options that decide what the ESP-IDF second-stage bootloader does at power-on,
/// with ESP-IDF's defaults for anything the file does not mention.
///
/// Read from the `sdkconfig` text (`CONFIG_X=y`, `# CONFIG_X is not set`, `CONFIG_X=0x8000`,
/// `CONFIG_X="text"`); every other line is ignored.
public struct SDKConfig: Sendable, Equatable, Codable {
    /// CONFIG_SECURE_BOOT_V2_ENABLED (with CONFIG_SECURE_BOOT): the bootloader enables Secure Boot V2.
    public var secureBootV2 = false
    /// CONFIG_SECURE_FLASH_ENC_ENABLED: the bootloader enables flash encryption at first boot.
    public var flashEncryption = false
    /// CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE (otherwise development mode).
    public var releaseMode = false
    /// CONFIG_PARTITION_TABLE_OFFSET (default 0x8000).
    public var partitionTableOffset = 0x8000
    /// CONFIG_SECURE_BOOT_ALLOW_JTAG.
    public var allowJTAG = false
    /// CONFIG_SECURE_BOOT_ALLOW_ROM_BASIC.
    public var allowROMBasic = false
    /// CONFIG_SECURE_DISABLE_ROM_DL_MODE: burn UART_DOWNLOAD_DIS.
    public var disableROMDownload = false
    /// CONFIG_SECURE_ENABLE_SECURE_ROM_DL_MODE (ESP32-S3/C3): burn ENABLE_SECURITY_DOWNLOAD.
    public var secureROMDownload = false
    /// CONFIG_SECURE_BOOT_ENABLE_AGGRESSIVE_KEY_REVOKE (ESP32-S3/C3).
    public var aggressiveRevoke = false
    /// CONFIG_SECURE_FLASH_ENCRYPTION_AES256 (ESP32-S3): the bootloader generates an XTS-AES-256
    /// key (two key blocks).
    public var flashEncryptionAES256 = false
    /// CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_ENC (selected automatically in development mode).
    public var uartAllowEncrypt = true
    /// CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_DEC.
    public var uartAllowDecrypt = false
    /// CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_CACHE.
    public var uartAllowCache = false
    /// CONFIG_SECURE_BOOT_V2_ALLOW_EFUSE_RD_DIS: do not write-protect RD_DIS.
    public var allowEFuseReadDisable = false
    /// CONFIG_SECURE_FLASH_SKIP_WRITE_PROTECTION_CACHE: do not burn WR_DIS bit 3.
    public var skipWriteProtectCache = false
    /// CONFIG_SECURE_BOOT_REQUIRE_ALREADY_ENABLED.
    public var secureBootRequireAlreadyEnabled = false
    /// CONFIG_SECURE_FLASH_REQUIRE_ALREADY_ENABLED.
    public var flashEncryptionRequireAlreadyEnabled = false
    /// CONFIG_SECURE_FLASH_ENCRYPT_ONLY_IMAGE_LEN_IN_APP_PART.
    public var encryptOnlyImageLength = false
    /// ESP-IDF version from the header comment (`# ... (ESP-IDF) 5.1.2 Project Configuration`), if any:
    /// the bootloader generation the simulator runs when the flashed bootloader has no descriptor.
    public var idfVersion: String?

    public init() {}

    /// A configuration with both security features enabled (development mode unless `release`).
    public static func secure(release: Bool = false, partitionTableOffset: Int = 0x8000) -> SDKConfig {
        var c = SDKConfig()
        c.secureBootV2 = true
        c.flashEncryption = true
        c.releaseMode = release
        c.uartAllowEncrypt = !release
        c.partitionTableOffset = partitionTableOffset
        return c
    }

    /// Parses sdkconfig text (``SDKConfigValues``' rules: the one sdkconfig parser). Throws only for
    /// a value the simulator needs and cannot read (e.g. a non-numeric partition table offset),
    /// with its line number.
    public static func parse(_ text: String) throws(SDKConfigError) -> SDKConfig {
        try SDKConfig(values: SDKConfigValues.parse(text: text))
    }

    /// The options from an sdkconfig already read (e.g. `IDFBuild.sdkconfigValues`, which may come
    /// from `config/sdkconfig.json`); ESP-IDF's defaults for what it does not mention.
    public init(values parsed: SDKConfigValues) throws(SDKConfigError) {
        let values = parsed.values, lineNumbers = parsed.lines, version = parsed.idfVersion
        func flag(_ name: String) -> Bool? {
            guard let v = values["CONFIG_" + name] else { return nil }
            return v == "y"
        }
        var c = SDKConfig()
        c.idfVersion = version
        c.secureBootV2 = flag("SECURE_BOOT_V2_ENABLED") ?? false
        c.flashEncryption = flag("SECURE_FLASH_ENC_ENABLED") ?? false
        c.releaseMode = flag("SECURE_FLASH_ENCRYPTION_MODE_RELEASE") ?? false
        if let v = values["CONFIG_PARTITION_TABLE_OFFSET"] {
            guard let n = NumberParsing.integer(v), n > 0, n < 1 << 24 else {
                throw .badValue(name: "CONFIG_PARTITION_TABLE_OFFSET", value: v, line: lineNumbers["CONFIG_PARTITION_TABLE_OFFSET"] ?? 0)
            }
            c.partitionTableOffset = n
        }
        c.allowJTAG = flag("SECURE_BOOT_ALLOW_JTAG") ?? false
        c.allowROMBasic = flag("SECURE_BOOT_ALLOW_ROM_BASIC") ?? false
        c.disableROMDownload = flag("SECURE_DISABLE_ROM_DL_MODE") ?? false
        c.secureROMDownload = flag("SECURE_ENABLE_SECURE_ROM_DL_MODE") ?? false
        c.aggressiveRevoke = flag("SECURE_BOOT_ENABLE_AGGRESSIVE_KEY_REVOKE") ?? false
        c.flashEncryptionAES256 = flag("SECURE_FLASH_ENCRYPTION_AES256") ?? false
        c.uartAllowEncrypt = c.releaseMode ? false : (flag("SECURE_FLASH_UART_BOOTLOADER_ALLOW_ENC") ?? true)
        c.uartAllowDecrypt = c.releaseMode ? false : (flag("SECURE_FLASH_UART_BOOTLOADER_ALLOW_DEC") ?? false)
        c.uartAllowCache = c.releaseMode ? false : (flag("SECURE_FLASH_UART_BOOTLOADER_ALLOW_CACHE") ?? false)
        c.allowEFuseReadDisable = flag("SECURE_BOOT_V2_ALLOW_EFUSE_RD_DIS") ?? false
        c.skipWriteProtectCache = flag("SECURE_FLASH_SKIP_WRITE_PROTECTION_CACHE") ?? false
        c.secureBootRequireAlreadyEnabled = flag("SECURE_BOOT_REQUIRE_ALREADY_ENABLED") ?? false
        c.flashEncryptionRequireAlreadyEnabled = flag("SECURE_FLASH_REQUIRE_ALREADY_ENABLED") ?? false
        c.encryptOnlyImageLength = flag("SECURE_FLASH_ENCRYPT_ONLY_IMAGE_LEN_IN_APP_PART") ?? false
        self = c
    }

    /// sdkconfig text for this configuration (the options the simulator reads).
    public var text: String {
        func line(_ name: String, _ on: Bool) -> String { on ? "CONFIG_\(name)=y" : "# CONFIG_\(name) is not set" }
        var lines = ["# Written by espforge (options read by the first-boot simulator)"]
        if let idfVersion { lines.append("# Espressif IoT Development Framework (ESP-IDF) \(idfVersion) Project Configuration") }
        lines.append(line("SECURE_BOOT", secureBootV2))
        lines.append(line("SECURE_BOOT_V2_ENABLED", secureBootV2))
        lines.append(line("SECURE_FLASH_ENC_ENABLED", flashEncryption))
        lines.append(line("SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT", flashEncryption && !releaseMode))
        lines.append(line("SECURE_FLASH_ENCRYPTION_MODE_RELEASE", flashEncryption && releaseMode))
        lines.append("CONFIG_PARTITION_TABLE_OFFSET=0x\(String(partitionTableOffset, radix: 16))")
        lines.append(line("SECURE_BOOT_ALLOW_JTAG", allowJTAG))
        lines.append(line("SECURE_BOOT_ALLOW_ROM_BASIC", allowROMBasic))
        lines.append(line("SECURE_DISABLE_ROM_DL_MODE", disableROMDownload))
        // S3/C3 options, written only when set (ESP32 texts stay as they were).
        if secureROMDownload { lines.append(line("SECURE_ENABLE_SECURE_ROM_DL_MODE", true)) }
        if aggressiveRevoke { lines.append(line("SECURE_BOOT_ENABLE_AGGRESSIVE_KEY_REVOKE", true)) }
        if flashEncryptionAES256 { lines.append(line("SECURE_FLASH_ENCRYPTION_AES256", true)) }
        lines.append(line("SECURE_FLASH_UART_BOOTLOADER_ALLOW_ENC", uartAllowEncrypt))
        lines.append(line("SECURE_FLASH_UART_BOOTLOADER_ALLOW_DEC", uartAllowDecrypt))
        lines.append(line("SECURE_FLASH_UART_BOOTLOADER_ALLOW_CACHE", uartAllowCache))
        lines.append(line("SECURE_BOOT_V2_ALLOW_EFUSE_RD_DIS", allowEFuseReadDisable))
        lines.append(line("SECURE_FLASH_SKIP_WRITE_PROTECTION_CACHE", skipWriteProtectCache))
        lines.append(line("SECURE_BOOT_REQUIRE_ALREADY_ENABLED", secureBootRequireAlreadyEnabled))
        lines.append(line("SECURE_FLASH_REQUIRE_ALREADY_ENABLED", flashEncryptionRequireAlreadyEnabled))
        lines.append(line("SECURE_FLASH_ENCRYPT_ONLY_IMAGE_LEN_IN_APP_PART", encryptOnlyImageLength))
        return lines.joined(separator: "\n") + "\n"
    }
}

public enum SDKConfigError: Error, Equatable, Sendable, DiagnosticConvertible {
    case badValue(name: String, value: String, line: Int)

    public var diagnostic: Diagnostic {
        switch self {
        case let .badValue(name, value, line):
            return Diagnostic("\(name) has the value '\(value)', expected a number",
                              line: line, hint: "write it as ESP-IDF does, e.g. \(name)=0x8000")
        }
    }
}
