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
struct FirstBootAdapter: FirstBootSimulating {
    /// Seed for the simulated RNG (reproducible flash-encryption key); nil = the host's RNG.
    var rngSeed: UInt64?

    func simulateFirstBoot(plan: FlashPlan, stateDirectory: String, sdkconfig: Diagnostics.SDKConfig?) throws -> FirstBootPrediction {
        var device = try DeviceStore(directory: stateDirectory).load()
        let writes = try Self.apply(plan, to: &device)
        var sdk = try simulatorConfig(sdkconfig ?? plan.sdkconfig, stateDirectory: stateDirectory)
        // --partition-table-offset (or the sdkconfig's) is where this bootloader looks.
        if let offset = plan.partitionTableOffset { sdk.partitionTableOffset = offset }
        var config = BootConfig(sdkconfig: sdk)
        config.rngSeed = rngSeed
        let outcome = BootSimulator(config: config).boot(device: &device)
        return Self.prediction(outcome, writes: writes)
    }

    /// The bootloader's options: from the plan's sdkconfig, else the one remembered in the state folder.
    func simulatorConfig(_ sdk: Diagnostics.SDKConfig?, stateDirectory: String) throws -> SimulatorSDKConfig {
        if let sdk {
            var text = ""
            for (k, v) in sdk.values.sorted(by: { $0.key < $1.key }) {
                text += v == "n" ? "# \(k) is not set\n" : "\(k)=\(v)\n"
            }
            return try SimulatorSDKConfig.parse(text)
        }
        let remembered = stateDirectory + "/sdkconfig"
        if FileManager.default.fileExists(atPath: remembered) {
            do { return try SimulatorSDKConfig.parse(try FileIO.readText(remembered, limit: .configText)) } catch {
                throw FileContextError(file: remembered, underlying: error)
            }
        }
        FileHandle.standardError.write(Data("espforge: no sdkconfig given or remembered; simulating a bootloader without Secure Boot or flash encryption\n".utf8))
        return SimulatorSDKConfig()
    }

    /// Writes every plan entry into `device` as the flasher would; returns one note per entry.
    static func apply(_ plan: FlashPlan, to device: inout Device) throws -> [String] {
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
                if let cipher = cipher(device.efuses) {
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
    static func rewriteHeader(_ bytes: [UInt8], _ o: FlashOptions) -> [UInt8]? {
        guard let image = try? ESPImage(bytes), image.imageEnd <= bytes.count else { return nil }
        let params = FlashParameters(mode: o.mode, frequency: o.frequency, size: o.size)
        guard let body = try? ImageRetarget.retarget(Array(bytes[0..<image.imageEnd]), parameters: params, stripSignature: true) else {
            return nil
        }
        return body + bytes[image.imageEnd...]
    }

    /// The flash-encryption engine of a virtual ESP32: the key in BLOCK1's cells (stored
    /// reversed) and the tweak from FLASH_CRYPT_CONFIG. Nil when BLOCK1 is empty.
    static func cipher(_ efuses: EFuseArray) -> FlashCipher? {
        let words = efuses.blocks[1]
        guard words.contains(where: { $0 != 0 }) else { return nil }
        var bytes: [UInt8] = []
        for w in words { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
        let layout = EFuseLayout.esp32
        var conf = 0xF
        if let f = layout.field(named: "FLASH_CRYPT_CONFIG") {
            conf = Int(efuses.value(of: f, layout: layout, raw: true).first ?? 0xF)
        }
        return try? FlashCipher(chip: .esp32, key: Array(bytes.reversed()), flashCryptConfig: conf)
    }

    static func prediction(_ o: BootOutcome, writes: [String]) -> FirstBootPrediction {
        // One log per power cycle: each starts with the ROM banner (`ets <date>`).
        var logs: [[String]] = []
        for line in o.log {
            if logs.isEmpty || (line.source == "rom" && line.text.hasPrefix("ets ") && !line.text.hasPrefix("ets_main")) {
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
