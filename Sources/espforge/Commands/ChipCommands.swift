import ArgumentParser
import ESPCore
import Flasher

struct ChipCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chip", abstract: "Ask a chip in download mode what it is and how it is secured.",
        discussion: """
            Talks to the ROM loader over a serial port, socket://HOST:PORT or virtual:DIR.

            Example:
              espforge chip info --port /dev/ttyUSB0
              espforge chip info --port virtual:dev1 --json
            """,
        subcommands: [ChipInfoCommand.self]
    )
}

struct ChipInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Chip, revision, MAC, crystal, flash id and size, and the security eFuses.",
        discussion: """
            Security state: Secure Boot V2 key digest in BLOCK2, ABS_DONE_0/1, FLASH_CRYPT_CNT and \
            whether flash encryption is on (odd bit count), DISABLE_DL_ENCRYPT/DECRYPT/CACHE, \
            UART_DOWNLOAD_DIS, JTAG_DISABLE, coding scheme, and the fields WR_DIS/RD_DIS protect. \
            Reads only; uses the ROM loader (no stub upload). With several --port, every chip is \
            read at once (one thread per port) and each is reported under its port; --json then \
            prints one object per port. Exit status 1 when any port could not be read.

            Examples:
              espforge chip info --port socket://127.0.0.1:5555 --before no-reset --json
              espforge chip info --port /dev/ttyUSB0 --port /dev/ttyUSB1
            """
    )

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let ports = try connection.allPorts()
        let options = try connection.sessionOptions(needStub: false)
        if ports.count == 1 {
            let info = try ChipInfo.read(port: ports[0], options: options)
            if connection.json { print(try JSONText.render(info)) } else { print(info.text, terminator: "") }
            return
        }
        let results = DeviceRunner.chipInfo(ports: ports, options: options)
        if connection.json {
            for r in results { print(try Output.jsonLine(r)) }
        } else {
            print(PortChipInfo.text(results), terminator: "")
        }
        if results.contains(where: { $0.info == nil }) { throw ExitCode(1) }
    }
}
