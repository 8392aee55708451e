import ArgumentParser
import ProductionLine

struct DeviceBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot", abstract: "Power a virtual device on: simulate the ESP32 ROM and the ESP-IDF bootloader's first boot.",
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
    @Option(name: .customLong("rng-seed"), help: "Seed for the simulated hardware RNG (reproducible keys; tests only).") var rngSeed: UInt64?
    @Flag(help: "Print the outcome as JSON (includes the log).") var json = false

    func run() throws {
        var options = VirtualDeviceBoot.Options()
        (options.sdkconfigPath, options.strapping, options.rngSeed) = (sdkconfig, strapping, rngSeed)
        options.onInferred = { SimulatorSDKConfig.printAssumptions($0) }
        let outcome = try VirtualDeviceBoot.run(state: state, options)
        if json { try Output.printJSON(outcome) } else { print(VirtualDeviceBoot.text(outcome), terminator: "") }
        if !outcome.running { throw ExitCode(2) }
    }
}
