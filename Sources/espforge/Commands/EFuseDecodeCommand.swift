import ArgumentParser
import EFuse
import ESPCore

/// `espforge efuse decode`: the ESP32-S3 / ESP32-C3 field maps applied to a saved eFuse file.
struct EFuseDecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode an ESP32-S3 / ESP32-C3 eFuse file (espefuse --virt format) with espforge's field map.",
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
    @Option(name: .customLong("from-file"), help: "The eFuse file (espefuse --virt --path-efuse-file).")
    var fromFile: String
    @Flag(help: "Print JSON.") var json = false
    @Flag(name: .customLong("show-key"), help: "Print readable secret keys (XTS, HMAC) in full.")
    var showKey = false

    func run() throws {
        let (map, words) = try EFuseVirtualFile.read(fromFile, chip: chip)
        let s = EFuseFieldMapSummary(words: words, map: map, revealKeys: showKey)
        if json { try Output.printJSON(s); return }
        print("Chip: \(s.chip.uppercased()) revision \(s.revision), MAC \(s.mac)")
        print("")
        for f in s.fields {
            let perms = (f.readable ? "R" : "-") + "/" + (f.writeable ? "W" : "-")
            let block = f.width == 0 || f.name == map.blockNames[f.block] ? "" : " (\(map.blockNames[f.block]))"
            print("\((f.name + block).padding(toLength: 46, withPad: " ", startingAt: 0)) \(perms)  \(f.value)")
        }
        func yn(_ b: Bool) -> String { b ? "yes" : "no" }
        func list(_ v: [Int]) -> String { v.isEmpty ? "none" : v.map(String.init).joined(separator: ", ") }
        print("")
        print("Key blocks:")
        for k in s.keyBlocks {
            var notes: [String] = []
            if k.readProtected { notes.append("read-protected") }
            if k.writeProtected { notes.append("write-protected") }
            if k.purposeWriteProtected { notes.append("purpose locked") }
            let state = k.readProtected ? "unreadable" : (k.empty ? "empty" : "programmed")
            print("  BLOCK_KEY\(k.index): \(k.purposeName), \(state)" + (notes.isEmpty ? "" : " (\(notes.joined(separator: ", ")))")
                  + (k.digest.map { "\n    digest \($0)" } ?? ""))
        }
        let sec = s.security
        print("")
        print("Security:")
        print("  SECURE_BOOT_EN \(yn(sec.secureBootEnabled)); digest slots \(list(sec.secureBootDigestSlots)); "
              + "revoked \(list(sec.revokedDigestSlots)); aggressive revoke \(yn(sec.aggressiveRevoke))")
        print("  SPI_BOOT_CRYPT_CNT \(NumberParsing.hex(sec.spiBootCryptCnt, width: 1)) -> flash encryption "
              + "\(sec.flashEncryptionEnabled ? "ON" : "off"); keys: "
              + (sec.flashEncryptionKeyPurposes.isEmpty ? "none" : sec.flashEncryptionKeyPurposes.joined(separator: ", ")))
        print("  DIS_DOWNLOAD_MANUAL_ENCRYPT \(yn(sec.disDownloadManualEncrypt)), ENABLE_SECURITY_DOWNLOAD "
              + "\(yn(sec.enableSecurityDownload)), DIS_DOWNLOAD_MODE \(yn(sec.disDownloadMode)), DIS_DIRECT_BOOT \(yn(sec.disDirectBoot))")
        print("  DIS_USB_JTAG \(yn(sec.disUSBJTAG)), DIS_PAD_JTAG \(yn(sec.disPadJTAG))")
        print("  write-protected (WR_DIS bits): \(list(sec.writeProtectedBits))")
        print("  read-protected (RD_DIS bits): \(list(sec.readProtectedBits))")
    }
}
