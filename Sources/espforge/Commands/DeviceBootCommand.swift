import ArgumentParser
import BootSimulator
import ESPCore
import Foundation
import ProductionLine
import VirtualDevice

struct DeviceBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Power a virtual device on: simulate the ESP32 ROM and the ESP-IDF bootloader's first boot.",
        discussion: """
            Runs the ESP32 (rev 3) ROM and the ESP-IDF second-stage bootloader (v4.4 behaviour and \
            log wording) against the device's flash and eFuses, configured by the project's sdkconfig \
            (Secure Boot V2, flash encryption and its mode, partition table offset, JTAG / ROM BASIC / \
            UART download options). Everything the real chip would do happens to the state folder: \
            Secure Boot digest and security eFuses burned (or nothing, when the bootloader cancels its \
            eFuse batch), flash-encryption key generated into BLOCK1, regions encrypted in place, \
            otadata written, resets followed. The console log is printed as a serial monitor shows it; \
            --json prints the structured outcome (booted app or why none, eFuses burned, regions encrypted).

            The sdkconfig given with --sdkconfig is remembered as DIR/sdkconfig for later boots. \
            Whatever sits at 0x1000 is only run as an ESP-IDF bootloader when it is one (its \
            descriptor or banner text); any other image is reported as a RAM image the ROM started. \
            --strapping defaults to 0x13 (a development board booting from flash); Espressif's QEMU \
            prints 0x12 (use it to compare with QEMU logs). \
            Exit status: 0 when an app (or a RAM image) was started, 2 when none was.

            Example:
              espforge device boot --state dev1 --sdkconfig build/sdkconfig
              espforge device boot --state dev1 --json
            """
    )

    @Option(help: "State folder of the device.") var state: String
    @Option(help: "The project's sdkconfig (remembered in the state folder).") var sdkconfig: String?
    @Option(help: "Strapping value the ROM prints as boot:0x.. (default 0x13, a board booting from flash; QEMU prints 0x12).") var strapping: String?
    @Option(name: .customLong("rng-seed"), help: "Seed for the simulated hardware RNG (reproducible keys; tests only).")
    var rngSeed: UInt64?
    @Flag(help: "Print the outcome as JSON (includes the log).") var json = false

    func run() throws {
        let store = DeviceStore(directory: state)
        var device = try store.load()
        let remembered = state + "/sdkconfig"
        var configText: String?
        if let sdkconfig {
            let text = try FileIO.readText(sdkconfig, limit: .configText)
            _ = try parse(text, file: sdkconfig)
            try FileIO.write(text, to: remembered)
            configText = text
        } else if FileManager.default.fileExists(atPath: remembered) {
            configText = try FileIO.readText(remembered, limit: .configText)
        }
        var config: BootConfig
        if let configText {
            config = BootConfig(sdkconfig: try parse(configText, file: sdkconfig ?? remembered))
        } else {
            // No sdkconfig: the options the flash and eFuses show (each assumption printed).
            let inferred = BuildInference.infer(device: device)
            SimulatorSDKConfig.printAssumptions(inferred.assumptions)
            config = BootConfig(sdkconfig: inferred.sdkconfig)
        }
        if let strapping {
            guard let v = NumberParsing.integer(strapping), v >= 0, v <= 0xFF else {
                throw UsageError("'\(strapping)' is not a strapping byte", hint: "e.g. --strapping 0x13")
            }
            config.strapping = UInt8(v)
        }
        config.rngSeed = rngSeed
        let outcome = BootSimulator(config: config).boot(device: &device)
        try store.saveWholeFlash(device.flash)
        try store.saveEFuses(device.efuses)
        try store.saveStats(device.stats)
        if json {
            try Output.printJSON(outcome)
        } else {
            print(outcome.consoleText, terminator: "")
            print("")
            print("--- espforge: \(summary(outcome))")
            if !outcome.efusesBurned.isEmpty {
                print("--- eFuses burned: " + outcome.efusesBurned.map { "\($0.name) \($0.before)→\($0.after)" }.joined(separator: ", "))
            }
            if !outcome.encryptedRegions.isEmpty {
                print("--- encrypted in place: " + outcome.encryptedRegions.map {
                    "\($0.name) (\(NumberParsing.hex($0.offset)), \(NumberParsing.hex($0.length, width: 1)) bytes)"
                }.joined(separator: ", "))
            }
            print("--- virtual time \(outcome.virtualMilliseconds) ms, \(outcome.resets) power cycle(s)")
        }
        if !outcome.running { throw ExitCode(2) }
    }

    func parse(_ text: String, file: String) throws -> SDKConfig {
        do { return try SDKConfig.parse(text) } catch { throw FileContextError(file: file, underlying: error) }
    }

    func summary(_ o: BootOutcome) -> String {
        switch o.result {
        case .appStarted:
            return "app started from \(o.bootedPartition ?? "?") at \(NumberParsing.hex(o.bootedOffset ?? 0))"
        case .ramImageStarted:
            return o.reason ?? "the ROM started a RAM image (not an ESP-IDF bootloader)"
        default:
            return "no app started (\(o.result.rawValue)): \(o.reason ?? "")" + (o.errorCode.map { ", last error \($0)" } ?? "")
        }
    }
}
