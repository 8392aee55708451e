import BootSimulator
import VirtualDevice

// `SimulatorSDKConfig` (the boot simulator's `SDKConfig`) is ProductionLine's public name for it.
import ESPCore
import Foundation
import ProductionLine

extension SimulatorSDKConfig {
    /// The remembered sdkconfig, else the options inferred from the device (assumptions printed
    /// on stderr as `espforge:` lines unless `quiet`).
    static func rememberedOrInferred(inStateFolder state: String, device: Device, quiet: Bool = false) throws -> SimulatorSDKConfig {
        let (config, assumptions) = try rememberedOrInferred(inStateFolder: state, device: device)
        if !quiet, let assumptions { printAssumptions(assumptions) }
        return config
    }

    static func printAssumptions(_ notes: [String]) {
        FileHandle.standardError.write(Data(assumptionsText(notes).utf8))
    }
}
