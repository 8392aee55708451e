import BootSimulator
import VirtualDevice

// The boot simulator and the diagnostics module each have their own `SDKConfig` (the options the
// bootloader acts on vs. the raw key/value text preflight reads). Files that import both refer to
// the simulator's one by this name.
typealias SimulatorSDKConfig = SDKConfig

import ESPCore
import Foundation

extension SimulatorSDKConfig {
    /// The sdkconfig remembered in a device state folder (`device create/boot --sdkconfig`), or
    /// nil when there is none (then boots infer the options, see ``BuildInference``).
    static func remembered(inStateFolder state: String) throws -> SimulatorSDKConfig? {
        let path = state + "/sdkconfig"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do { return try SimulatorSDKConfig.parse(try FileIO.readText(path, limit: .configText)) } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }

    /// The remembered sdkconfig, else the options inferred from the device (assumptions printed
    /// on stderr as `espforge:` lines unless `quiet`).
    static func rememberedOrInferred(inStateFolder state: String, device: Device, quiet: Bool = false) throws -> SimulatorSDKConfig {
        if let remembered = try remembered(inStateFolder: state) { return remembered }
        let inferred = BuildInference.infer(device: device)
        if !quiet { printAssumptions(inferred.assumptions) }
        return inferred.sdkconfig
    }

    static func printAssumptions(_ notes: [String]) {
        var text = "espforge: no sdkconfig given or remembered; the bootloader's options are inferred:\n"
        for n in notes { text += "espforge:   \(n)\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }
}
