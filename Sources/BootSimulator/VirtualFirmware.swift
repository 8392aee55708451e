import VirtualDevice

/// The firmware a virtual device runs when it leaves its loader: this simulator's ROM and
/// second-stage bootloader, then the first lines an ESP-IDF app prints while it starts.
///
/// Installed on a ``ProtocolEngine`` (``ProtocolEngine/firmware``) by `espforge device serve`, so
/// a host that resets a served device into its firmware (esptool, `espforge provision` over
/// socket://) sees the same console a serial monitor shows on a real board.
public enum VirtualFirmware {
    /// Console lines an ESP-IDF app prints as it starts (`cpu_start` hands over to the app,
    /// `main_task` calls `app_main`); `provision` waits for one of them by default.
    public static let appStartLines = ["cpu_start: Pro cpu start user code", "main_task: Calling app_main()"]

    /// The firmware hook. With `config` nil (no sdkconfig known for the device) each boot runs
    /// under the options ``BuildInference`` reads off the device's flash and eFuses at that
    /// moment (ESP32, ESP32-S3 and ESP32-C3 alike); `onInferred` gets the assumptions made.
    /// `rngSeed` seeds the simulated hardware RNG of every boot (reproducible keys; tests only).
    public static func hook(config: BootConfig?, rngSeed: UInt64? = nil,
                            onInferred: (@Sendable ([String]) -> Void)? = nil) -> @Sendable (inout Device) -> FirmwareRun {
        { device in
            // The simulator charges its time to the device's statistics (for `device boot`); here
            // the protocol engine charges it, so the statistics are put back.
            let stats = device.stats
            var bootConfig: BootConfig
            if let config {
                bootConfig = config
            } else {
                let inferred = BuildInference.infer(device: device)
                onInferred?(inferred.assumptions)
                bootConfig = BootConfig(sdkconfig: inferred.sdkconfig)
            }
            if let rngSeed { bootConfig.rngSeed = rngSeed }
            let outcome = BootSimulator(config: bootConfig).boot(device: &device)
            let efusePrograms = device.stats.total.efusePrograms - stats.total.efusePrograms
            device.stats = stats
            var text = outcome.consoleText
            var ms = outcome.log.last?.milliseconds ?? outcome.virtualMilliseconds
            if outcome.booted {
                for line in appStartLines {
                    ms += 10
                    text += "I (\(ms)) \(line)\n"
                }
            }
            return FirmwareRun(console: Array(text.utf8), seconds: Double(outcome.virtualMilliseconds) / 1000,
                               sectorErases: outcome.sectorErases, pagePrograms: outcome.pagePrograms,
                               efusePrograms: efusePrograms)
        }
    }
}
