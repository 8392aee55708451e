import BootSimulator

// The boot simulator and the diagnostics module each have their own `SDKConfig` (the options the
// bootloader acts on vs. the raw key/value text preflight reads). Files that import both refer to
// the simulator's one by this name.
typealias SimulatorSDKConfig = SDKConfig
