import BootSimulator

// The boot simulator and the diagnostics module each have their own `SDKConfig` (the options the
// bootloader acts on vs. the raw key/value text preflight reads). Files that import both refer to
// the simulator's one by this name.
typealias SimulatorSDKConfig = SDKConfig

import ESPCore
import Foundation

extension SimulatorSDKConfig {
    /// The sdkconfig remembered in a device state folder (`device create/boot --sdkconfig`);
    /// the defaults (no Secure Boot, no flash encryption) when there is none.
    static func remembered(inStateFolder state: String) throws -> SimulatorSDKConfig {
        let path = state + "/sdkconfig"
        guard FileManager.default.fileExists(atPath: path) else { return SimulatorSDKConfig() }
        do { return try SimulatorSDKConfig.parse(try FileIO.readText(path, limit: .configText)) } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }
}
