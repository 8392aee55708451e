@testable import EFuse
import ESPCore
import Foundation
import TestSupport
import Testing

/// What `efuse summary` and a burn's read-back print, and the burn requests the commands build,
/// through the library.
@Suite struct EFuseTextTests {
    @Test func summaryTextShowsFieldsAndSecurityButNoKey() throws {
        let key = (0..<32).map { UInt8($0 + 0x40) }
        let s = EFuseSummary(snapshot: try chip {
            set(&$0, "JTAG_DISABLE", 1)
            set(&$0, "FLASH_CRYPT_CNT", 1)
            $0.program(block: 1, words: stride(from: 0, to: 32, by: 4).map { key[$0..<$0 + 4].loadLE(UInt32.self) }, layout: .esp32)
        })
        let text = s.text
        #expect(text.hasPrefix("Chip: ESP32"))
        #expect(text.contains("MAC 24:0a:c4:12:34:56 (CRC OK)"))
        #expect(text.contains("\nJTAG_DISABLE (BLOCK0)          R/W  true\n"))
        #expect(text.contains("\nFLASH_CRYPT_CNT (BLOCK0)       R/W  0x1\n"))
        #expect(text.contains("  FLASH_CRYPT_CNT: 0x01 -> flash encryption ON; key in BLOCK1: present\n"))
        #expect(text.contains("  JTAG disabled yes, "))
        #expect(!text.contains(key.hexString), "the key is not shown without revealKeys")
        #expect(text.hasSuffix("\n") && !text.contains("WARNING"))
        let json = try JSONDecoder().decode(EFuseSummary.self, from: Data(try s.json().utf8))
        #expect(json == s)
    }

    @Test func readBackLinesSayWhatStuck() throws {
        let snapshot = try chip()
        let report = EFuseBurnReport(changes: [EFuseChangeResult(name: "JTAG_DISABLE", secret: false, stuck: true, missingBits: 0, bits: 1),
                                               EFuseChangeResult(name: "BLOCK1", secret: true, stuck: false, missingBits: 3, bits: 256)],
                                     protections: [EFuseProtectionResult(kind: .write, bit: 7, stuck: true)],
                                     programCycles: 2, decodeErrors: false, after: snapshot, strayBits: [3: 1])
        #expect(report.readBackLines == [
            "burned in 2 program cycles; read back:",
            "  OK   JTAG_DISABLE",
            "  FAIL BLOCK1 (3 of 256 bits did not stick)",
            "  OK   WR_DIS bit 7",
            "  FAIL BLOCK3: 1 bit read back as 1 that neither the chip had nor the plan asked for",
        ])
    }

    @Test func burnRequestsFromCommandLineText() throws {
        #expect(try EFuseBurnRequest.fields(["JTAG_DISABLE=1", "CUSTOM_MAC=aa:bb:cc:dd:ee:ff"])
                == [.field(name: "JTAG_DISABLE", value: "1"), .field(name: "CUSTOM_MAC", value: "aa:bb:cc:dd:ee:ff")])
        #expect(throws: UsageError.self) { try EFuseBurnRequest.fields(["=1"]) }
        #expect(throws: UsageError.self) { try EFuseBurnRequest.fields([]) }
        let dir = try TestEnvironment.temporaryDirectory("efuse-key")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("k.bin").path
        try AtomicFile.write([UInt8](repeating: 9, count: 32), to: path)
        #expect(try EFuseBurnRequest.key(purpose: "FLASH_ENCRYPTION", keyFile: path, protect: true)
                == .flashEncryptionKey([UInt8](repeating: 9, count: 32), protect: true))
        do {
            _ = try EFuseBurnRequest.key(purpose: "secure_boot_v2", keyFile: path, protect: true)
            Issue.record("accepted a Secure Boot key purpose")
        } catch let e as UsageError {
            #expect(e.diagnostic.hint?.contains("burn-key-digest") == true)
        }
    }
}
