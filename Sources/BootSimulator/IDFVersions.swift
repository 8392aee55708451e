import ESPCore
import Foundation
import ImageFormat

/// An ESP-IDF release as a bootloader or an sdkconfig names it: `v5.2-dev-254-g1950b15`,
/// `5.1.2`, `v4.4`. Only major.minor.patch take part in comparisons; `label` is what the
/// bootloader banner prints (always starting with `v`).
public struct IDFVersion: Sendable, Equatable, Comparable, Codable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int
    public var label: String

    /// nil unless the text starts with `[v]MAJOR.MINOR`.
    public init?(_ text: String) {
        var s = Substring(text.trimmingCharacters(in: [" ", "\t", "\r", "\n"]))
        if s.hasPrefix("v") || s.hasPrefix("V") { s = s.dropFirst() }
        let numeric = s.prefix { $0.isNumber || $0 == "." }
        let parts = numeric.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.count <= 3, let a = Int(parts[0]), let b = Int(parts[1]),
              a < 100, b < 100 else { return nil }
        var c = 0
        if parts.count == 3 {
            guard let p = Int(parts[2]), p < 1000 else { return nil }
            c = p
        }
        major = a
        minor = b
        patch = c
        label = "v" + s
    }

    public var description: String { label }

    public static func < (l: IDFVersion, r: IDFVersion) -> Bool {
        (l.major, l.minor, l.patch) < (r.major, r.minor, r.patch)
    }

    public static func == (l: IDFVersion, r: IDFVersion) -> Bool {
        (l.major, l.minor, l.patch) == (r.major, r.minor, r.patch)
    }

    /// The version the simulator assumes when nothing names one.
    public static let fallback = IDFVersion(major: 4, minor: 4)

    init(major: Int, minor: Int, patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
        label = "v\(major).\(minor)" + (patch == 0 ? "" : ".\(patch)")
    }
}

/// Where the simulated bootloader's ESP-IDF version came from.
public enum IDFVersionSource: String, Sendable, Codable {
    /// `BootConfig.idfVersion` (set by the caller).
    case configured
    /// The `esp_bootloader_desc_t` in the flashed bootloader (ESP-IDF v5.2 and later).
    case bootloaderDescriptor = "bootloader descriptor"
    /// The header comment of the project's sdkconfig.
    case sdkconfig
    /// Nothing named a version: v4.4.
    case fallback = "default"
}

extension IDFVersion {
    /// The version of the bootloader that runs: the caller's choice, else the flashed bootloader's
    /// descriptor, else the sdkconfig header, else v4.4. `descriptor` is the first 80 bytes of the
    /// bootloader's first segment. The label printed is the source's own text.
    static func resolve(configured: String?, descriptor: [UInt8]?, sdkconfig: String?)
        -> (version: IDFVersion, source: IDFVersionSource, descriptor: BootloaderDescriptor?) {
        let desc = descriptor.flatMap { BootloaderDescriptor($0[...]) }
        if let configured {
            // A label the parser does not understand is printed as given, with v4.4 behaviour.
            var v = IDFVersion(configured) ?? .fallback
            v.label = IDFVersion(configured) == nil ? configured : v.label
            return (v, .configured, desc)
        }
        if let desc, let v = IDFVersion(desc.idfVersion) { return (v, .bootloaderDescriptor, desc) }
        if let sdkconfig, let v = IDFVersion(sdkconfig) { return (v, .sdkconfig, desc) }
        return (.fallback, .fallback, desc)
    }
}

/// How one generation of the ESP-IDF second-stage bootloader (ESP32 target) words its console
/// output and runs the first-boot security steps. One row per release line, in `rows`; a version
/// uses the newest row at or below it (so v5.4 and later use the v5.3 row, anything older than
/// v4.4 the v4.4 row). Facts from the ESP-IDF sources of each release and from real boot logs.
struct BootloaderDialect: Sendable {
    enum CompileTime { case timeOnly, dateAndTime }
    enum ChipRevision { case major, majorMinor }
    /// v4.4: the ESP32-specific Secure Boot V2 code; v5.x: the shared per-key-digest code
    /// (`secure_boot_v2/secure_boot.c`) with the ESP32 secure-features helper.
    enum SecureBootFlow { case esp32V44, sharedV5 }
    /// v4.4: BLOCK1 written by hand then protected; v5.x: `esp_efuse_write_keys` with a purpose.
    enum FlashEncryptionKey { case block1V44, keyPurposeV5 }

    /// First release of the row.
    var since: IDFVersion
    /// `compile time 14:43:01` (v4.4, v5.0) or `compile time Apr 25 2023 00:13:32` (v5.1+).
    var compileTime: CompileTime
    /// Printed when neither the caller nor a descriptor gives one.
    var defaultCompileTime: String
    /// `I (..) boot: Multicore bootloader` after the banner (v5.1+).
    var multicoreLine: Bool
    /// `chip revision: 3` (v4.4) or `chip revision: v3.0` (v5.x).
    var chipRevisionFormat: ChipRevision
    /// Minimum-revision check: header byte 14 (v4.4) or min/max_chip_rev_full (v5.x).
    var chipRevisionCheck: ChipRevision
    /// Level of `ota data partition invalid, ...`.
    var otadataInvalidLevel: Character
    /// Warning when only the test app is left.
    var testAppFallback: String
    var secureBoot: SecureBootFlow
    var secureBootAlreadyEnabled: String
    var secureBootRequireAlreadyEnabled: String
    /// Tag of the JTAG / ROM BASIC / download-mode lines while Secure Boot is enabled.
    var secureBootFeaturesTag: String
    var flashEncryptionKey: FlashEncryptionKey
    /// v5.x prints `Setting CRYPT_CONFIG efuse to 0xF` whether or not it still has to burn it.
    var cryptConfigAlwaysLogged: Bool
    /// v4.4 logs `Prevent read disabling of additional efuses...` in the flash-encryption step too.
    var flashEncryptionLogsReadDisableLock: Bool
    /// Release mode: `Setting CRYPT_CNT for permanent encryption` before the final burn.
    var logsPermanentCryptCnt: Bool

    static let v4_4 = BootloaderDialect(
        since: IDFVersion(major: 4, minor: 4), compileTime: .timeOnly, defaultCompileTime: "00:00:00",
        multicoreLine: false, chipRevisionFormat: .major, chipRevisionCheck: .major, otadataInvalidLevel: "W",
        testAppFallback: "Falling back to test app as last resort", secureBoot: .esp32V44,
        secureBootAlreadyEnabled: "secure boot v2 is already enabled. Continuing..",
        secureBootRequireAlreadyEnabled: "secure boot v2 is not enabled, and CONFIG_SECURE_BOOT_REQUIRE_ALREADY_ENABLED is set, refusing to boot.",
        secureBootFeaturesTag: "secure_boot_v2", flashEncryptionKey: .block1V44, cryptConfigAlwaysLogged: false,
        flashEncryptionLogsReadDisableLock: true, logsPermanentCryptCnt: false)

    static let v5_0: BootloaderDialect = {
        var d = v4_4
        d.since = IDFVersion(major: 5, minor: 0)
        d.chipRevisionFormat = .majorMinor
        d.chipRevisionCheck = .majorMinor
        d.otadataInvalidLevel = "E"
        d.testAppFallback = "Falling back to test app as only bootable partition"
        d.secureBoot = .sharedV5
        d.secureBootAlreadyEnabled = "secure boot v2 is already enabled, continuing.."
        d.secureBootRequireAlreadyEnabled = "secure boot is not enabled, and SECURE_BOOT_REQUIRE_ALREADY_ENABLED is set, refusing to boot."
        d.secureBootFeaturesTag = "secure_boot"
        d.flashEncryptionKey = .keyPurposeV5
        d.cryptConfigAlwaysLogged = true
        d.flashEncryptionLogsReadDisableLock = false
        d.logsPermanentCryptCnt = true
        return d
    }()

    static let v5_1: BootloaderDialect = {
        var d = v5_0
        d.since = IDFVersion(major: 5, minor: 1)
        d.compileTime = .dateAndTime
        d.defaultCompileTime = "Jan  1 2024 00:00:00"
        d.multicoreLine = true
        return d
    }()

    /// v5.2 adds the bootloader descriptor (the banner reads version and date from it); the
    /// console wording is v5.1's. v5.3 changes nothing the simulator prints.
    static let v5_2: BootloaderDialect = { var d = v5_1; d.since = IDFVersion(major: 5, minor: 2); return d }()
    static let v5_3: BootloaderDialect = { var d = v5_2; d.since = IDFVersion(major: 5, minor: 3); return d }()

    static let rows: [BootloaderDialect] = [v4_4, v5_0, v5_1, v5_2, v5_3]

    static func of(_ version: IDFVersion) -> BootloaderDialect {
        rows.last { $0.since <= version } ?? v4_4
    }
}
