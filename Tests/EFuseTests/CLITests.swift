import EFuse
import Foundation
import TestSupport
import Testing

@Suite struct EFuseCLITests {
    @Test func withoutYesNothingIsBurnedAndTheExitStatusIs2() throws {
        let dev = try DeviceFolder(mac: "24:0a:c4:00:11:22")
        let before = dev.efuseBin
        let plan = try Espforge.run(["efuse", "burn", "--port", dev.virtualPort, "JTAG_DISABLE=1", "FLASH_CRYPT_CONFIG=0xF"])
        #expect(plan.status == 2, "\(plan.err)")
        #expect(plan.out.contains("JTAG_DISABLE: 0x0 -> 0x1") && plan.out.contains("BLOCK0 word 6 bit 6") && plan.out.contains("--yes"))
        #expect(dev.efuseBin == before)
        let dry = try Espforge.run(["efuse", "burn", "--port", dev.virtualPort, "JTAG_DISABLE=1", "--dry-run"])
        #expect(dry.status == 0 && dev.efuseBin == before)
        let burn = try Espforge.run(["efuse", "burn", "--port", dev.virtualPort, "JTAG_DISABLE=1", "--yes"])
        #expect(burn.status == 0 && burn.out.contains("OK   JTAG_DISABLE"), "\(burn.err)")
        #expect(dev.efuseBin != before)
        // Burning it again: nothing to do, success.
        let again = try Espforge.run(["efuse", "burn", "--port", dev.virtualPort, "JTAG_DISABLE=1", "--yes"])
        #expect(again.status == 0 && again.out.contains("nothing to burn"))
        let s = try dev.espforgeSummary()
        #expect(s.security.jtagDisabled && s.field("JTAG_DISABLE")?.integer == 1)
        let text = try Espforge.run(["efuse", "summary", "--port", dev.virtualPort])
        #expect(text.status == 0 && text.out.contains("JTAG disabled yes") && text.out.contains("MAC 24:0a:c4:00:11:22"))
    }

    @Test func refusalsExitWith1AndExplain() throws {
        let dev = try DeviceFolder(mac: "24:0a:c4:00:11:23")
        let before = dev.efuseBin
        let cases: [([String], String)] = [
            (["efuse", "read-protect", "--port", dev.virtualPort, "BLOCK2", "--yes"], "refusing to read-protect BLOCK2"),
            (["efuse", "burn", "--port", dev.virtualPort, "ABS_DONE_1=1", "--yes"], "holds no key digest"),
            (["efuse", "burn", "--port", dev.virtualPort, "FLASH_CRYPT_CNT=1", "--yes"], "BLOCK1 holds no key"),
            (["efuse", "burn", "--port", dev.virtualPort, "JTAG_DISABLE=2", "--yes"], "does not fit in 1 bit"),
            (["efuse", "burn", "--port", dev.virtualPort, "JTAG_DISABLE", "--yes"], "is not NAME=VALUE"),
            (["efuse", "burn", "--port", dev.virtualPort, "NOPE=1", "--yes"], "no eFuse field named 'NOPE'"),
            (["efuse", "summary", "--port", "/dev/espforge-no-such-port"], "cannot open port /dev/espforge-no-such-port"),
            (["efuse", "summary", "--port", "socket://127.0.0.1:9"], "Connection refused"),
            (["efuse", "summary", "--port", "virtual:" + dev.path("missing")], "missing"),
            (["efuse", "burn-key", "--port", dev.virtualPort, "secure_boot_v2", dev.path("x")], "burn-key-digest"),
        ]
        for (args, text) in cases {
            let r = try Espforge.run(args)
            #expect(r.status == 1, "\(args): \(r.out) \(r.err)")
            #expect(r.err.contains(text), "\(args): \(r.err)")
        }
        let shortKey = try dev.write([1, 2, 3], "short.key")
        let r = try Espforge.run(["efuse", "burn-key", "--port", dev.virtualPort, "flash_encryption", shortKey, "--yes"])
        #expect(r.status == 1 && r.err.contains("short.key") && r.err.contains("3 bytes"), "\(r.err)")
        #expect(dev.efuseBin == before, "no refusal burned anything")
    }

    @Test func aReadableKeyIsNotShownUnlessAskedFor() throws {
        let dev = try DeviceFolder(mac: "24:0a:c4:00:11:25")
        let key = (0..<32).map { UInt8(0x40 + $0) }
        let path = try dev.write(key, "fe.key")
        let r = try Espforge.run(["efuse", "burn-key", "--port", dev.virtualPort, "flash_encryption", path, "--no-protect-key", "--yes"])
        #expect(r.status == 0 && r.out.contains("left readable"), "\(r.out) \(r.err)")
        let reversed = Array(key.reversed()).hexString
        for args in [["--json"], []] {
            let s = try Espforge.run(["efuse", "summary", "--port", dev.virtualPort] + args)
            #expect(s.status == 0 && !s.out.contains(reversed) && !s.out.contains(key.hexString) && s.out.contains("READABLE"))
            #expect(!s.out.replacingOccurrences(of: " ", with: "").contains(reversed))
        }
        let shown = try Espforge.run(["efuse", "summary", "--port", dev.virtualPort, "--json", "--show-key"])
        #expect(shown.out.contains(reversed))
        #expect(try dev.espforgeSummary().security.flashEncryptionKeyPresent)
    }

    @Test func uartDownloadDisabledDeviceNoLongerAnswers() throws {
        let dev = try DeviceFolder(mac: "24:0a:c4:00:11:24")
        let r = try Espforge.run(["efuse", "burn", "--port", dev.virtualPort, "UART_DOWNLOAD_DIS=1", "--yes"])
        #expect(r.status == 0 && r.out.contains("never enters UART download mode"), "\(r.err)")
        let after = try Espforge.run(["efuse", "summary", "--port", dev.virtualPort])
        #expect(after.status == 1 && after.err.contains("UART_DOWNLOAD_DIS"))
    }

    @Test func everyCommandHasHelpWithAnExample() throws {
        for sub in ["summary", "burn", "burn-key-digest", "burn-key", "write-protect", "read-protect", "decode"] {
            let r = try Espforge.run(["efuse", sub, "--help"])
            #expect(r.status == 0 && r.out.contains("Example:") && r.out.contains("espforge efuse \(sub)"), "\(sub)")
        }
        #expect(try Espforge.run(["efuse", "--help"]).out.contains("Example:"))
    }
}
