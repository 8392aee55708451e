import ArgumentParser
import ESPCore
import Foundation
import ProductionLine
import VirtualDevice

struct DeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device", abstract: "A virtual ESP32, ESP32-S3 or ESP32-C3 in download mode that esptool and espefuse can talk to.",
        discussion: """
            A virtual device is a folder (--state DIR) holding device.json (chip, revision, MAC, \
            flash size and JEDEC id), flash.bin (the NOR flash), efuse.bin (the eFuse words) and \
            stats.json (traffic, operations and virtual time). `serve` speaks the ESP32 ROM serial \
            loader protocol, and the flasher stub's protocol after a stub upload.

            Example:
              espforge device create --state dev1 --mac 24:0a:c4:12:34:56
              espforge device serve --state dev1 --listen 127.0.0.1:5555 &
              esptool --chip esp32 --port socket://127.0.0.1:5555 --before no-reset --after no-reset flash-id
            """,
        subcommands: [DeviceCreate.self, DeviceServe.self, DeviceFleet.self, DeviceStatsCommand.self, DeviceDump.self, DeviceInspect.self, DeviceBoot.self]
    )
}

struct DeviceCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a blank virtual ESP32, ESP32-S3 or ESP32-C3 (flash erased, eFuses in factory state).",
        discussion: """
            ESP32: the eFuses get the factory MAC with its CRC, package, chip revision bits, CPU rating \
            and calibration values; everything else is 0 (coding scheme NONE, nothing protected). \
            ESP32-S3/C3: BLOCK1 gets the factory MAC (an Espressif OUI), the wafer revision and the \
            package; efuse.bin is in `espefuse --virt` file format (docs/virtual-device-chips.md).

            Example:
              espforge device create --chip esp32 --flash-size 4MB --chip-rev 3 --mac 24:0a:c4:12:34:56 --state dev1
              espforge device create --chip esp32c3 --chip-rev 0 --chip-rev-minor 4 --state c3dev
            """
    )

    @Option(help: "Chip to simulate: esp32, esp32s3 or esp32c3.") var chip = "esp32"
    @Option(name: .customLong("flash-size"), help: "Flash size: 1MB, 2MB, 4MB, 8MB or 16MB.") var flashSize = "4MB"
    @Option(name: .customLong("chip-rev"), help: "Major chip revision 0…3 (default: 3 on an ESP32 = ESP32-D0WD-V3, 0 on an S3/C3).") var chipRev: Int?
    @Option(name: .customLong("chip-rev-minor"), help: "Minor chip revision 0…15, ESP32-S3/C3 only (default: 2 on an S3, 4 on a C3).") var chipRevMinor: Int?
    @Option(help: "Factory MAC (default: 24:0a:c4 and three bytes derived from the state path).") var mac: String?
    @Option(name: .customLong("flash-id"), help: "JEDEC id as RDID returns it (default 0x1640EF, Winbond W25Q32).") var flashID: String?
    @Option(help: "State folder to create.") var state: String
    @Flag(help: "Replace an existing device in the folder.") var force = false
    @Option(help: "The project's sdkconfig, remembered for `device boot`.") var sdkconfig: String?

    func run() throws {
        let sdkconfigText = try sdkconfig.map { try FileIO.readText($0, limit: .configText) }
        let description = try DeviceReports.description(chip: chip, flashSize: flashSize, chipRevision: chipRev, mac: mac,
                                                        flashID: flashID, statePath: state, minorRevision: chipRevMinor)
        let device = try Device.create(description)
        try DeviceStore(directory: state).create(device, force: force)
        if let sdkconfigText { try FileIO.write(sdkconfigText, to: state + "/sdkconfig") }
        print(DeviceReports.createdLine(device.description, state: state))
    }
}

struct DeviceServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve a virtual device on a loopback TCP port or a pseudo-terminal.",
        discussion: """
            With --listen the chosen port is printed on stdout as `listening on 127.0.0.1:PORT` \
            (port 0 picks a free one). With --pty the device path is printed as `pty /dev/pts/N`. \
            Each TCP connection finds the chip freshly reset into ROM download mode; state is written \
            back to the folder as it changes. Stop with SIGTERM or Ctrl-C. When a client makes the \
            chip leave its loader for its firmware (ROM FLASH_END with the run flag, as `espforge \
            provision` does over socket://), the device boots: the boot simulator runs under \
            the sdkconfig remembered in the folder and its console log is sent on the connection.

            --faults injects reproducible transport faults from --seed: drop=P, flip=P, stall=P:MS, \
            disconnect-after=N (bytes), reset-after=N (commands). --realtime sleeps for the virtual \
            time so progress bars move at the speed of a real chip.

            One client at a time, like a serial port: a second TCP client gets one line, `espforge: busy: …`, and is closed. A TCP client that sends nothing for --idle-timeout seconds (default 30; 0 = never) is disconnected so a stuck client cannot hold the device.

            Example:
              espforge device serve --state dev1 --listen 127.0.0.1:0
            """
    )

    @Option(help: "State folder of the device.") var state: String
    @Option(help: "Loopback address and port, e.g. 127.0.0.1:5555 (port 0 = any free port).") var listen: String?
    @Flag(help: "Serve on a new pseudo-terminal instead of TCP.") var pty = false
    @Option(help: "Fault specification, e.g. drop=0.001,flip=0.0005.") var faults: String?
    @Option(help: "Seed for the fault generator.") var seed: UInt64 = 1
    @Flag(help: "Sleep for virtual time (slow, for demos).") var realtime = false
    @Option(name: .customLong("max-seconds"), help: "Stop after this many seconds of wall time (safety net for scripts).") var maxSeconds: Double?
    @Option(name: .customLong("idle-timeout"), help: "Disconnect a TCP client that sends nothing for this many seconds (0: never).") var idleTimeout: Double = 30
    @Option(name: .customLong("rng-seed"), help: ArgumentHelp("Seed for the simulated hardware RNG of the boots (tests only).", visibility: .hidden)) var rngSeed: UInt64?

    func run() throws {
        guard (listen != nil) != pty else {
            throw UsageError("choose exactly one of --listen HOST:PORT and --pty", hint: "e.g. --listen 127.0.0.1:0")
        }
        var options = VirtualDeviceServing.Options()
        (options.faults, options.seed, options.realtime, options.idleTimeout) = (faults, seed, realtime, idleTimeout)
        options.rngSeed = rngSeed
        options.onInferred = { SimulatorSDKConfig.printAssumptions($0) }
        let server = try VirtualDeviceServing.server(state: state, options)
        DeviceServer.installSignalHandlers()
        if let listen {
            let address = try VirtualDeviceServing.listenAddress(listen)
            let (fd, bound) = try DeviceServer.listen(host: address.host, port: address.port)
            FileHandle.standardOutput.write(Data("listening on 127.0.0.1:\(bound)\n".utf8))
            try server.serveTCP(listenFD: fd, maxSeconds: maxSeconds)
        } else {
            try server.servePTY(maxSeconds: maxSeconds) { path in FileHandle.standardOutput.write(Data("pty \(path)\n".utf8)) }
        }
    }
}

struct DeviceStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Show traffic, flash operations, injected faults and virtual time of a device.",
        discussion: """
            Virtual time counts UART wire time (10 bits per byte at the current baud), command \
            turnaround and W25Q32JV flash timings; it is deterministic, so it compares clients on \
            noisy machines.

            Example:
              espforge device stats --state dev1 --json
            """
    )

    @Option(help: "State folder of the device.") var state: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let stats = try DeviceStore(directory: state).load().stats
        if json { return try Output.printJSON(stats) }
        print(DeviceReports.statsText(stats))
    }
}

struct DeviceDump: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump", abstract: "Write out the flash image or print the eFuses of a device.",
        discussion: """
            Example:
              espforge device dump --state dev1 --flash -o flash.bin
              espforge device dump --state dev1 --efuses --json
            """
    )

    @Option(help: "State folder of the device.") var state: String
    @Flag(help: "Dump the whole flash to -o FILE.") var flash = false
    @Flag(help: "Print the eFuse fields.") var efuses = false
    @Option(name: .shortAndLong, help: "Output file for --flash.") var output: String?
    @Flag(help: "Print JSON (with --efuses).") var json = false

    func run() throws {
        guard flash != efuses else { throw UsageError("choose exactly one of --flash and --efuses") }
        let device = try DeviceStore(directory: state).load()
        if flash {
            guard let output else { throw UsageError("--flash needs -o FILE") }
            try FileIO.write(device.flash.bytes, to: output)
            print("wrote \(device.flash.size) bytes of flash to \(output)")
            return
        }
        let fields = DeviceInspector.fields(of: device)
        if json { return try Output.printJSON(fields) }
        print(DeviceReports.efuseText(fields))
    }
}

struct DeviceInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Summarize a device: chip, MAC, flash contents map, security eFuses, power-on view.",
        discussion: """
            The power-on view is what `espforge device boot` would report, predicted on a copy \
            (the state folder is not changed): the boot simulator under the sdkconfig remembered in \
            DIR (none: a bootloader without Secure Boot or flash encryption).

            Example:
              espforge device inspect --state dev1
            """
    )

    @Option(help: "State folder of the device.") var state: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let report = try DeviceInspection.of(state: state) { if !json { SimulatorSDKConfig.printAssumptions($0) } }
        if json { return try Output.printJSON(report) }
        print(report.text)
    }
}
