import ArgumentParser
import ESPCore
import Flasher
import Foundation

struct ChipCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chip",
        abstract: "Ask a chip in download mode what it is and how it is secured.",
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
        commandName: "info",
        abstract: "Chip, revision, MAC, crystal, flash id and size, and the security eFuses.",
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
            let session = FlashSession(port: ports[0], options: options)
            defer { session.finish() }
            try session.connect()
            let info = try session.chipInfo()
            if connection.json { return try Output.printJSON(info) }
            printInfo(info)
            return
        }
        let results = DeviceRunner.chipInfo(ports: ports, options: options)
        if connection.json {
            for r in results { print(try Output.jsonLine(r)) }
        } else {
            for r in results {
                print("== \(r.port)")
                if let info = r.info { printInfo(info) } else { print("FAILED: \(r.error ?? "unknown error")") }
            }
        }
        if results.contains(where: { $0.info == nil }) { throw ExitCode(1) }
    }

    func printInfo(_ info: ChipInfo) {
        let s = info.security
        print("Chip:         \(info.description) (revision \(info.revision))")
        print("Features:     \(info.features.joined(separator: ", "))")
        print("Crystal:      \(info.crystalMHz)MHz")
        print("MAC:          \(info.mac)")
        print("Flash:        manufacturer \(info.flashManufacturer), device \(info.flashDevice), \(info.flashSizeName) (JEDEC id \(info.flashID))")
        print("Security:")
        print("  Secure Boot V2 digest in BLOCK2: \(s.secureBootDigestBurned ? "burned" : "none")")
        print("  ABS_DONE_0 (SB v1): \(s.absDone0 ? 1 : 0)   ABS_DONE_1 (SB v2): \(s.absDone1 ? 1 : 0)")
        print("  FLASH_CRYPT_CNT: 0x\(String(s.flashCryptCnt, radix: 16)) -> flash encryption \(s.flashEncryptionEnabled ? "ON" : "off")")
        print("  DISABLE_DL_ENCRYPT \(s.disableDLEncrypt ? 1 : 0), DISABLE_DL_DECRYPT \(s.disableDLDecrypt ? 1 : 0), DISABLE_DL_CACHE \(s.disableDLCache ? 1 : 0), UART_DOWNLOAD_DIS \(s.uartDownloadDisabled ? 1 : 0)")
        print("  JTAG_DISABLE \(s.jtagDisabled ? 1 : 0), CONSOLE_DEBUG_DISABLE \(s.consoleDebugDisabled ? 1 : 0), coding scheme \(s.codingScheme)")
        print("  write-protected: \(s.writeProtected.isEmpty ? "none" : s.writeProtected.joined(separator: ", "))")
        print("  read-protected:  \(s.readProtected.isEmpty ? "none" : s.readProtected.joined(separator: ", "))")
    }
}
