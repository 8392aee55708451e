import Foundation

/// One line of the serial console, with the virtual time (ms since reset) it was printed at.
public struct BootLogLine: Sendable, Equatable, Codable {
    /// `rom` (ROM printf) or `bootloader` (ESP-IDF log, incl. untagged ROM helper output).
    public var source: String
    public var text: String
    public var milliseconds: Int
}

/// A flash region the bootloader re-wrote through the encryption engine.
public struct EncryptedRegion: Sendable, Equatable, Codable {
    public var name: String
    public var offset: Int
    public var length: Int
}

/// An eFuse field whose value changed during the power-on (read without protection: the cells).
public struct BurnedField: Sendable, Equatable, Codable {
    public var name: String
    public var before: String
    public var after: String
}

/// What happened when the virtual device was powered on.
public struct BootOutcome: Sendable, Equatable, Codable {
    public enum Result: String, Sendable, Codable {
        /// An app was loaded and started.
        case appStarted = "app-started"
        /// The ROM stopped (invalid header, flash read error, secure boot check fail).
        case romHalted = "rom-halted"
        /// The bootloader found no bootable app (the real chip resets and tries again forever).
        case noBootableApp = "no-bootable-app"
        /// The bootloader stopped for another reason (partition table, eFuse programming).
        case bootloaderHalted = "bootloader-halted"
        /// The image at 0x1000 is not an ESP-IDF bootloader (no descriptor, no bootloader banner
        /// text): the ROM loaded it into RAM and jumped to its entry point, so it runs (e.g.
        /// esptool's `ram_helloworld`). Nothing further is simulated.
        case ramImageStarted = "ram-image-started"
    }

    public var result: Result
    /// Partition the app was started from (name, offset).
    public var bootedPartition: String?
    public var bootedOffset: Int?
    /// Why nothing booted, in a sentence (nil when an app started; for a RAM image, what the ROM started).
    public var reason: String?
    /// The last ESP-IDF error code reported (e.g. 8194 = ESP_ERR_IMAGE_INVALID), if any.
    public var errorCode: Int?
    /// Number of power-on/reset cycles simulated (2 after the flash-encryption reset).
    public var resets: Int
    public var efusesBurned: [BurnedField]
    public var encryptedRegions: [EncryptedRegion]
    /// Flash sectors erased / pages programmed by the bootloader.
    public var sectorErases: Int
    public var pagePrograms: Int
    public var secureBootEnabled: Bool
    public var flashEncryptionEnabled: Bool
    /// Virtual time from power-on to the end of the simulation, in milliseconds.
    public var virtualMilliseconds: Int
    public var log: [BootLogLine]
    /// ESP-IDF version of the simulated second-stage bootloader (e.g. `v4.4`, `v5.2-dev-254-g1950b15`)
    /// and where it came from (nil when the ROM stopped before the bootloader ran).
    public var idfVersion: String? = nil
    public var idfVersionSource: IDFVersionSource? = nil
    /// Entry point of the RAM image the ROM started (``Result/ramImageStarted``), else nil.
    public var ramImageEntry: Int? = nil

    /// An ESP-IDF app was started.
    public var booted: Bool { result == .appStarted }
    /// Something runs after the boot: an app, or a RAM image the ROM started.
    public var running: Bool { result == .appStarted || result == .ramImageStarted }

    /// The console text as a serial monitor shows it (ESP-IDF lines with their level and timestamp).
    public var consoleText: String { log.map(\.text).joined(separator: "\n") + "\n" }
}
