import BootSimulator
import ESPCore
import Foundation
import VirtualDevice

extension SDKConfig {
    /// The sdkconfig remembered in a device state folder, else the options inferred from the
    /// device's flash and eFuses (``BuildInference``) with the assumptions made (nil when remembered).
    public static func rememberedOrInferred(inStateFolder state: String, device: Device) throws -> (config: SDKConfig, assumptions: [String]?) {
        if let remembered = try remembered(inStateFolder: state) { return (remembered, nil) }
        let inferred = BuildInference.infer(device: device)
        return (inferred.sdkconfig, inferred.assumptions)
    }

    /// The `espforge:` lines that say which options were inferred (each ends with a newline).
    public static func assumptionsText(_ notes: [String]) -> String {
        var text = "espforge: no sdkconfig given or remembered; the bootloader's options are inferred:\n"
        for n in notes { text += "espforge:   \(n)\n" }
        return text
    }
}

/// Powering a virtual device on (`espforge device boot`): the ROM and the ESP-IDF bootloader's
/// first boot against the state folder, under the given sdkconfig (remembered for later boots),
/// else the remembered one, else options inferred from the device. The folder is updated with
/// what the chip did (flash, eFuses, statistics).
public enum VirtualDeviceBoot {
    public struct Options: Sendable {
        /// The project's sdkconfig file (remembered as `STATE/sdkconfig`).
        public var sdkconfigPath: String?
        /// The byte the ROM prints as boot:0x.. (default: a development board booting from flash).
        public var strapping: String?
        /// Seed for the simulated hardware RNG (reproducible keys; tests only).
        public var rngSeed: UInt64?
        /// Told which options were inferred when there is no sdkconfig (see ``SDKConfig/assumptionsText(_:)``).
        public var onInferred: (@Sendable ([String]) -> Void)?
        public init() {}
    }

    /// Boots the device in `state` and saves it; returns what happened.
    public static func run(state: String, _ options: Options) throws -> BootOutcome {
        let store = DeviceStore(directory: state)
        var device = try store.load()
        let remembered = state + "/sdkconfig"
        var configText: (text: String, file: String)?
        if let path = options.sdkconfigPath {
            let text = try BoundedFile.readText(path, limit: .configText)
            _ = try parse(text, file: path)
            try AtomicFile.write(Array(text.utf8), to: remembered, mode: AtomicFile.publicMode)
            configText = (text, path)
        } else if FileManager.default.fileExists(atPath: remembered) {
            configText = (try BoundedFile.readText(remembered, limit: .configText), remembered)
        }
        var config: BootConfig
        if let configText {
            config = BootConfig(sdkconfig: try parse(configText.text, file: configText.file))
        } else {
            // No sdkconfig: the options the flash and eFuses show, read the chip's way (each
            // assumption reported).
            let inferred = BuildInference.infer(device: device)
            options.onInferred?(inferred.assumptions)
            config = BootConfig(sdkconfig: inferred.sdkconfig)
        }
        if let strapping = options.strapping {
            guard let v = NumberParsing.integer(strapping), v >= 0, v <= 0xFF else {
                throw UsageError("'\(strapping)' is not a strapping byte", hint: "e.g. --strapping 0x13")
            }
            config.strapping = UInt8(v)
        }
        config.rngSeed = options.rngSeed
        let outcome = BootSimulator(config: config).boot(device: &device)
        try store.saveWholeFlash(device.flash)
        try store.saveEFuses(of: device)
        try store.saveStats(device.stats)
        return outcome
    }

    static func parse(_ text: String, file: String) throws -> SDKConfig {
        do { return try SDKConfig.parse(text) } catch { throw FileContextError(file: file, underlying: error) }
    }

    /// The console log as a serial monitor shows it, then `--- espforge:` lines: the result,
    /// eFuses burned, regions encrypted in place, virtual time and power cycles.
    public static func text(_ o: BootOutcome) -> String {
        var out = o.consoleText + "\n--- espforge: \(summary(o))\n"
        if !o.efusesBurned.isEmpty {
            out += "--- eFuses burned: " + o.efusesBurned.map { "\($0.name) \($0.before)→\($0.after)" }.joined(separator: ", ") + "\n"
        }
        if !o.encryptedRegions.isEmpty {
            out += "--- encrypted in place: " + o.encryptedRegions.map {
                "\($0.name) (\(NumberParsing.hex($0.offset)), \(NumberParsing.hex($0.length, width: 1)) bytes)"
            }.joined(separator: ", ") + "\n"
        }
        return out + "--- virtual time \(o.virtualMilliseconds) ms, \(o.resets) power cycle(s)\n"
    }

    /// One line: which app started from where, or why none did.
    public static func summary(_ o: BootOutcome) -> String {
        switch o.result {
        case .appStarted:
            return "app started from \(o.bootedPartition ?? "?") at \(NumberParsing.hex(o.bootedOffset ?? 0))"
        case .ramImageStarted:
            return o.reason ?? "the ROM started a RAM image (not an ESP-IDF bootloader)"
        default:
            return "no app started (\(o.result.rawValue)): \(o.reason ?? "")" + (o.errorCode.map { ", last error \($0)" } ?? "")
        }
    }
}
