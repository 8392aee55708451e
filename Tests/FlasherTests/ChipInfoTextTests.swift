import EFuse
import Flasher
import Foundation
import Testing
import TestSupport

/// `ChipInfo.read` and the text `chip info` prints, through the library on a virtual device.
@Suite("chip info text (library)")
struct ChipInfoTextTests {
    @Test("a virtual ESP32 with flash encryption on and JTAG off: identity and security lines")
    func readAndRender() throws {
        let dir = try makeDevice("chipinfo-text", mac: "24:0a:c4:00:00:42") {
            set(&$0, "FLASH_CRYPT_CNT", 1)
            set(&$0, "JTAG_DISABLE", 1)
        }
        defer { try? FileManager.default.removeItem(at: dir) }
        let info = try ChipInfo.read(port: "virtual:" + dir.path, options: options(stub: nil))
        #expect(info.mac == "24:0a:c4:00:00:42" && info.security.flashEncryptionEnabled && info.security.jtagDisabled)
        let lines = info.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count == 14 && lines.last == "")
        #expect(lines[0] == "Chip:         \(info.description) (revision \(info.revision))")
        #expect(lines[3] == "MAC:          24:0a:c4:00:00:42")
        #expect(lines.contains("  FLASH_CRYPT_CNT: 0x1 -> flash encryption ON"))
        #expect(lines.contains { $0.hasPrefix("  JTAG_DISABLE 1, CONSOLE_DEBUG_DISABLE 0, coding scheme ") })

        let several = PortChipInfo.text([PortChipInfo(port: "a", info: info, error: nil), PortChipInfo(port: "b", info: nil, error: "no chip")])
        #expect(several == "== a\n" + info.text + "== b\nFAILED: no chip\n")
    }
}
