import ESPCore
import VirtualDevice

/// The driver: one ``BootState`` through the phases, power cycle after power cycle.
///
/// Each cycle runs the ROM phase (``ROMPhase``), and when it hands over to an ESP-IDF bootloader
/// the bootloader phase (``BootloaderPhase``, which loads the app with ``ImageLoad`` and runs
/// ``SecureBootEnablePhase`` and ``FlashEncryptionEnablePhase`` on a first boot). A bootloader
/// that just turned flash encryption on ends in a reset: the clock restarts and the next cycle
/// begins with `SW_RESET`, until an app starts, the boot stops, or `maxPowerCycles` is reached.
enum BootDriver {
    /// Powers `device` on; the device comes back changed as the chip changes it.
    static func run(config: BootConfig, device: inout Device) -> BootOutcome {
        var s = BootState(config: config, device: device)
        let outcome = run(&s)
        device = s.device
        return outcome
    }

    static func run(_ s: inout BootState) -> BootOutcome {
        var result = BootOutcome.Result.noBootableApp
        var reason: String?
        var booted: (String, Int)?
        var ramEntry: Int?
        var resetReason = s.chip.powerOnReset
        while s.powerCycles < max(1, s.config.maxPowerCycles) {
            s.powerCycles += 1
            s.clock = 0
            do {
                if case .ramImage(let entry) = try ROMPhase.run(&s, resetReason: resetReason) {
                    result = .ramImageStarted
                    ramEntry = Int(entry)
                    reason = "the ROM started a RAM image at 0x\(hex8(entry)) (not an ESP-IDF bootloader)"
                    break
                }
                switch try BootloaderPhase.run(&s) {
                case .started(let name, let offset):
                    result = .appStarted
                    booted = (name, offset)
                    reason = nil
                case .reset:
                    reset(&s)
                    resetReason = s.chip.softwareReset
                    result = .bootloaderHalted
                    reason = "still resetting after \(s.powerCycles) power cycle(s)"
                    continue
                }
            } catch let stop as BootStop {
                result = stop.result
                reason = stop.reason
            } catch {
                result = .bootloaderHalted
                reason = "\(error)"
            }
            break
        }
        return finish(&s, result: result, reason: reason, booted: booted, ramEntry: ramEntry)
    }

    /// Reset phase: the time of this cycle is added up and the clock restarts (flash and eFuses
    /// keep what the cycle wrote).
    static func reset(_ s: inout BootState) {
        s.totalSeconds += s.clock
        s.clock = 0
    }

    /// Charges the run to the device's statistics and assembles the outcome.
    static func finish(_ s: inout BootState, result: BootOutcome.Result, reason: String?, booted: (String, Int)?,
                       ramEntry: Int?) -> BootOutcome {
        s.totalSeconds += s.clock
        s.device.stats.total.sectorErases += s.sectorErases
        s.device.stats.total.pagePrograms += s.pagePrograms
        s.device.stats.total.flashSeconds += s.totalSeconds
        s.device.stats.total.virtualSeconds += s.totalSeconds
        return BootOutcome(result: result, bootedPartition: booted?.0, bootedOffset: booted?.1, reason: reason,
                           errorCode: s.lastError, resets: s.powerCycles, efusesBurned: s.burnedFields(),
                           encryptedRegions: s.encrypted, sectorErases: s.sectorErases, pagePrograms: s.pagePrograms,
                           secureBootEnabled: s.secureBootEnabled, flashEncryptionEnabled: s.flashEncryptionEnabled,
                           virtualMilliseconds: Int(s.totalSeconds * 1000), log: s.log,
                           idfVersion: s.idfVersion?.label, idfVersionSource: s.idfVersion?.source,
                           ramImageEntry: ramEntry)
    }
}
