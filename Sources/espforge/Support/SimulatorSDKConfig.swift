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
