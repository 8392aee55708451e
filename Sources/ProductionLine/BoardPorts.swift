import BootSimulator
import ESPCore
import Foundation
import Transport
import VirtualDevice

/// How the line opens ports: serial, socket:// and `virtual:DIR`. A `virtual:DIR?lines=auto` port
/// boots its device on an EN pulse with IO0 high, like a board: with the boot simulator under the
/// sdkconfig remembered in the folder (else the options inferred from the device when it boots).
public enum BoardPorts {
    public static let opener = VirtualPorts.opener(firmware: { dir in
        VirtualFirmware.hook(config: ((try? SDKConfig.remembered(inStateFolder: dir)) ?? nil).map { BootConfig(sdkconfig: $0) })
    })
}

extension SDKConfig {
    /// The sdkconfig remembered in a device state folder (`device create/boot --sdkconfig`), or
    /// nil when there is none (then boots infer the options, see ``BuildInference``).
    public static func remembered(inStateFolder state: String) throws -> SDKConfig? {
        let path = state + "/sdkconfig"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do { return try SDKConfig.parse(try FileIO.readText(path, limit: .configText)) } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }

}

// The boot simulator and the diagnostics module each have their own `SDKConfig`; files of this
// module that import both refer to the simulator's one by this name.
public typealias SimulatorSDKConfig = SDKConfig
