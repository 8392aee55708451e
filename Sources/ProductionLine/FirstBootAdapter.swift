import BootSimulator
import Diagnostics
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import ImageFormat
import VirtualDevice

/// `preflight --simulate`: the boot simulator behind Diagnostics' ``FirstBootSimulating``.
///
/// Loads the device state into memory (the folder is never written), writes the plan as
/// `esptool write-flash` would (sector erase + program; the bootloader's header rewritten and its
/// SHA-256 recomputed when the write uses --flash-mode/--flash-freq/--flash-size; entries marked
/// encrypted go through the chip's flash-encryption key when the eFuses hold one), then powers the
/// copy on and follows the reset after in-place encryption.
public struct FirstBootAdapter: FirstBootSimulating {
    /// Seed for the simulated RNG (reproducible flash-encryption key); nil = the host's RNG.
    public var rngSeed: UInt64?

    public init(rngSeed: UInt64? = nil) { self.rngSeed = rngSeed }

    public func simulateFirstBoot(plan: FlashPlan, stateDirectory: String, sdkconfig: Diagnostics.SDKConfig?) throws -> FirstBootPrediction {
        var device = try DeviceStore(directory: stateDirectory).load()
        let writes = try Self.apply(plan, to: &device)
        var assumptions: [String] = []
        var sdk: SimulatorSDKConfig
        if let known = try simulatorConfig(sdkconfig ?? plan.sdkconfig, stateDirectory: stateDirectory) {
            sdk = known
        } else {
            // No sdkconfig: the facts the plan shows, read the way the static rules read them
            // (and the eFuses the chip's way: ESP32 register layout or S3/C3 field map).
            let inferred = BuildInference.infer(device: device, hints: Self.hints(plan))
            sdk = inferred.sdkconfig
            assumptions = inferred.assumptions
        }
        // --partition-table-offset (or the sdkconfig's) is where this bootloader looks.
        if let offset = plan.partitionTableOffset { sdk.partitionTableOffset = offset }
        var config = BootConfig(sdkconfig: sdk)
        config.rngSeed = rngSeed
        let outcome = BootSimulator(config: config).boot(device: &device)
        var prediction = Self.prediction(outcome, writes: writes)
        prediction.assumptions = assumptions
        return prediction
    }

    /// What the plan says about its build: the table offset preflight's rules use (configured, or
    /// where the plan writes a table) and whether it encrypts.
    public static func hints(_ plan: FlashPlan) -> BuildInference.Hints {
        let context = PreflightContext(plan: plan, target: TargetFacts(chip: .esp32, source: "plan"))
        let encrypts = plan.options.encryptAll || plan.entries.contains(where: \.encrypted)
        return BuildInference.Hints(partitionTableOffset: context.tableOffsetKnown ? context.tableOffset : nil,
                                    flashEncryption: encrypts ? true : nil)
    }

    /// The bootloader's options: from the plan's sdkconfig, else the one remembered in the state
    /// folder; nil when there is neither (then they are inferred).
    public func simulatorConfig(_ sdk: Diagnostics.SDKConfig?, stateDirectory: String) throws -> SimulatorSDKConfig? {
        if let sdk {
            var text = ""
            for (k, v) in sdk.values.sorted(by: { $0.key < $1.key }) {
                text += v == "n" ? "# \(k) is not set\n" : "\(k)=\(v)\n"
            }
            return try SimulatorSDKConfig.parse(text)
        }
        return try SimulatorSDKConfig.remembered(inStateFolder: stateDirectory)
    }

    /// Writes every plan entry into `device` as the flasher would; returns one note per entry.
    public static func apply(_ plan: FlashPlan, to device: inout Device) throws -> [String] {
        var notes: [String] = []
        let bootloaderOffset = ChipSpec.named(device.description.chip)?.bootloaderOffset ?? 0x1000
        for entry in plan.entries {
            var data = entry.bytes
            var how: [String] = []
            if entry.address == bootloaderOffset, plan.options.rewritesHeader, let rewritten = rewriteHeader(data, plan.options) {
                if rewritten != data { how.append("header rewritten (\(plan.options.rewriteText))") }
                data = rewritten
            }
            let encrypt = entry.encrypted || plan.options.encryptAll
            if encrypt {
                if let cipher = cipher(device) {
                    while data.count % 32 != 0 { data.append(0xFF) }
                    data = try cipher.encrypt(data, at: entry.address)
                    how.append("encrypted with the chip's key")
                } else {
                    how.append("marked encrypted but the chip has no flash-encryption key yet: written as plaintext")
                }
            } else {
                how.append("plaintext")
            }
            guard entry.address >= 0, entry.address + data.count <= device.flash.size else {
                throw UsageError("\(entry.name) at \(NumberParsing.hex(entry.address)) (\(data.count) bytes) does not fit the \(device.flash.size >> 20)MB flash",
                                 hint: "fix the plan (see the preflight findings) before simulating")
            }
            device.flash.eraseSectors(entry.address, data.count, timing: .w25q32jv)
            device.flash.program(entry.address, data, timing: .w25q32jv)
            notes.append("\(NumberParsing.hex(entry.address)) \(entry.name): " + how.joined(separator: ", "))
        }
        return notes
    }

    /// esptool's write-time header rewrite: only a valid image at the bootloader offset; the
    /// appended SHA-256 is recomputed, anything after the image (signature sector) kept as is.
    public static func rewriteHeader(_ bytes: [UInt8], _ o: FlashOptions) -> [UInt8]? {
        guard let image = try? ESPImage(bytes), image.imageEnd <= bytes.count else { return nil }
        let params = FlashParameters(mode: o.mode, frequency: o.frequency, size: o.size)
        guard let body = try? ImageRetarget.retarget(Array(bytes[0..<image.imageEnd]), parameters: params, stripSignature: true) else {
            return nil
        }
        return body + bytes[image.imageEnd...]
    }

    /// The flash-encryption engine of a virtual ESP32; nil when BLOCK1 is empty.
    public static func cipher(_ efuses: EFuseArray) -> FlashCipher? { ESP32FlashKey.cipher(efuses) }

    /// The device's engine: the ESP32's BLOCK1 key, or an S3/C3's XTS key block(s).
    public static func cipher(_ device: Device) -> FlashCipher? {
        guard let chip = device.chip else { return cipher(device.efuses) }
        guard let cells = device.cells, let key = chip.flashEncryptionKey(cells),
              let spec = ChipSpec.named(chip.name) else { return nil }
        return try? FlashCipher(chip: spec, key: key)
    }

    public static func prediction(_ o: BootOutcome, writes: [String]) -> FirstBootPrediction {
        // One log per power cycle: each starts with the ROM banner (`ets <date>`).
        var logs: [[String]] = []
        for line in o.log {
            // ESP32: `ets <date>`; S3/C3: `ESP-ROM:<name>`.
            if logs.isEmpty || (line.source == "rom" && ((line.text.hasPrefix("ets ") && !line.text.hasPrefix("ets_main"))
                                                           || line.text.hasPrefix("ESP-ROM:"))) {
                logs.append([])
            }
            logs[logs.count - 1].append(line.text)
        }
        return FirstBootPrediction(
            bootLogs: logs.map { $0.joined(separator: "\n") + "\n" },
            bootedPartition: o.bootedPartition,
            burnedEFuses: o.efusesBurned.map { "\($0.name) \($0.before)→\($0.after)" },
            encryptedRegions: o.encryptedRegions.map { "\($0.name) (\(NumberParsing.hex($0.offset)), \(NumberParsing.hex($0.length, width: 1)) bytes)" },
            result: o.result.rawValue, reason: o.reason, errorCode: o.errorCode,
            secureBootEnabled: o.secureBootEnabled, flashEncryptionEnabled: o.flashEncryptionEnabled, writes: writes)
    }
}
