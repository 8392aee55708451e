import ArgumentParser
import EFuse
import ESPCore

/// `espforge efuse decode`: the ESP32-S3 / ESP32-C3 field maps applied to a saved eFuse file.
struct EFuseDecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode", abstract: "Decode an ESP32-S3 / ESP32-C3 eFuse file (espefuse --virt format) with espforge's field map.",
        discussion: """
            Reads the file `espefuse --virt --chip CHIP --path-efuse-file FILE` keeps (the eFuse \
            controller's 512-byte register space) and prints every field of the chip's table with \
            its value and protection (R/W: readable / writeable), then the key blocks with their \
            purposes and the security state: SECURE_BOOT_EN, digest slots and revocations, \
            SPI_BOOT_CRYPT_CNT, download-mode and JTAG bits, WR_DIS and RD_DIS. Read-protected \
            fields are shown as `?`; a secret key (XTS, HMAC) left readable is reported but not \
            shown unless --show-key. Reading and burning a live S3/C3 chip is not supported yet.

            Example:
              espforge efuse decode --chip esp32s3 --from-file efuse.bin --json
            """
    )
    @Option(help: "The chip: esp32s3 or esp32c3.") var chip: String
    @Option(name: .customLong("from-file"), help: "The eFuse file (espefuse --virt --path-efuse-file).") var fromFile: String
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .customLong("show-key"), help: "Print readable secret keys (XTS, HMAC) in full.") var showKey = false

    func run() throws {
        let (map, words) = try EFuseVirtualFile.read(fromFile, chip: chip)
        let s = EFuseFieldMapSummary(words: words, map: map, revealKeys: showKey)
        if json { try Output.printJSON(s); return }
        print(s.text(map: map), terminator: "")
    }
}
