import ESPCore
import Foundation
import VirtualDevice

/// Options of one simulated power-on.
public struct BootConfig: Sendable {
    /// The project's configuration (what the flashed bootloader was built with).
    public var sdkconfig: SDKConfig
    /// Flash and eFuse timing (virtual time).
    public var timing: TimeModel = .w25q32jv
    /// GPIO strapping value the ROM prints as `boot:0x..`. Any value with GPIO0 high boots from
    /// SPI flash (`SPI_FAST_FLASH_BOOT`); only the printed number differs. The default is
    /// ``devKitStrapping`` (0x13, what ESP32 DevKitC-style boards print); Espressif's QEMU and the
    /// golden recordings use ``qemuStrapping`` (0x12), so replays pass that explicitly.
    public var strapping: UInt8 = BootConfig.devKitStrapping
    /// `boot:0x13`: the default (typical development board booting from flash).
    public static let devKitStrapping: UInt8 = 0x13
    /// `boot:0x12`: Espressif's QEMU esp32 machine booting from flash (the golden recordings).
    public static let qemuStrapping: UInt8 = 0x12
    /// ESP-IDF version of the bootloader (wording and behaviour follow it, see ``IDFVersion``);
    /// default: the flashed bootloader's descriptor, else the sdkconfig header, else v4.4.
    public var idfVersion: String?
    /// Compile time the banner prints; default: the descriptor's, else a placeholder.
    public var compileTime: String?
    /// Seed for the hardware RNG (flash-encryption key); nil = the host's secure RNG.
    public var rngSeed: UInt64?
    /// How many resets the simulation follows (the flash-encryption reset needs one).
    public var maxPowerCycles = 3
    /// How many `invalid header` lines to print before giving up (the real ROM loops forever).
    public var invalidHeaderRepeats = 4

    public init(sdkconfig: SDKConfig = SDKConfig()) { self.sdkconfig = sdkconfig }
}

/// The first-boot simulator: the ESP32 (rev 3) ROM and the ESP-IDF second-stage bootloader
/// (v4.4 or v5.0–v5.3 wording and behaviour, per ``BootloaderDialect``), run against a ``Device``'s flash and eFuses. It changes the device exactly as the
/// chip would (eFuse burns, in-place encryption, otadata writes) and returns the console log and a
/// structured outcome.
public struct BootSimulator: Sendable {
    public var config: BootConfig
    public init(config: BootConfig) { self.config = config }

    /// Powers `device` on and follows resets until an app starts, the boot stops, or
    /// `maxPowerCycles` is reached.
    public func boot(device: inout Device) -> BootOutcome {
        BootDriver.run(config: config, device: &device)
    }
}

extension BootSimulator: PowerOnSimulator {
    /// Read-only prediction for `device inspect`: boots a copy.
    public func powerOn(_ device: Device) -> PowerOnReport {
        var copy = device
        let o = boot(device: &copy)
        return PowerOnReport(bootMode: "SPI_FAST_FLASH_BOOT", bootloaderHeaderValid: o.result != .romHalted,
                             detail: o.booted ? "app started from \(o.bootedPartition ?? "?")" : (o.reason ?? o.result.rawValue),
                             flashEncryptionEnabled: o.flashEncryptionEnabled, secureBootEnabled: o.secureBootEnabled)
    }
}

// MARK: - ESP-IDF error codes

enum ESPErr {
    static let fail = -1
    static let invalidArg = 0x102
    static let invalidState = 0x103
    static let invalidSize = 0x104
    static let notFound = 0x105
    static let notSupported = 0x106
    /// ESP_ERR_NOT_ENOUGH_UNUSED_KEY_BLOCKS (ESP_ERR_EFUSE + 5).
    static let notEnoughKeyBlocks = 0x1605
    static let imageFlashFail = 0x2001
    static let imageInvalid = 0x2002
}

/// A halt of the whole boot (ROM stop, bootloader reset loop).
struct BootStop: Error {
    var result: BootOutcome.Result
    var reason: String
}

func hex8(_ v: some BinaryInteger) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 8 - s.count)) + s
}

func hex2(_ v: some BinaryInteger) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 2 - s.count)) + s
}

func padLeft(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
func padRight(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
