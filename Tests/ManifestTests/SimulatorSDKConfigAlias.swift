import BootSimulator

// The boot simulator and Diagnostics both define `SDKConfig`, and the module `BootSimulator` has
// a type of the same name, so tests name the simulator's one through this alias (this file
// imports only BootSimulator).
typealias SimulatorSDKConfig = SDKConfig
typealias SimulatorSDKConfigError = SDKConfigError
