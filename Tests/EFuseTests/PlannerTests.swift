import EFuse
import ESPCore
import TestSupport
import Testing

/// A factory-fresh ESP32 v3 with some fuses pre-burned, as the read registers show it.
func chip(revision: Int = 3, _ burn: (inout EFuseArray) -> Void = { _ in }) throws -> EFuseSnapshot {
    var a = try EFuseArray.esp32Factory(mac: MACAddress.parse("24:0a:c4:12:34:56"), revision: revision)
    burn(&a)
    return EFuseSnapshot(array: a, apbCtrlDate: revision >= 3 ? 0x9604_2000 : 0x1604_2000)
}

func set(_ a: inout EFuseArray, _ name: String, _ value: UInt64) {
    if let f = EFuseLayout.esp32.field(named: name) { a.factorySet(f, value: value) }
}

func refusal(_ requests: [EFuseBurnRequest], on s: EFuseSnapshot) -> EFusePlanError? {
    do { _ = try EFuseBurnPlanner.plan(requests, snapshot: s); return nil } catch { return error }
}

@Suite struct PlannerTests {
    let digest = (0..<32).map { UInt8(0xA0 &+ $0) }
    let key = (0..<32).map { UInt8($0 + 1) }

    @Test func simpleFieldPlanListsEveryBitAndBurnsBlock0Last() throws {
        let plan = try EFuseBurnPlanner.plan([.field(name: "jtag_disable", value: "1"),
                                              .field(name: "SECURE_VERSION", value: "0x5"),
                                              .field(name: "FLASH_CRYPT_CNT", value: "0")], snapshot: chip())
        #expect(plan.changes.map(\.name) == ["JTAG_DISABLE", "SECURE_VERSION"], "FLASH_CRYPT_CNT=0 changes nothing")
        #expect(plan.changes[0].bitList == ["BLOCK0 word 6 bit 6"])
        #expect(plan.changes[1].bitList == ["BLOCK3 word 4 bit 0", "BLOCK3 word 4 bit 2"])
        #expect(plan.cycles.map(\.block) == [3, 0])
        #expect(plan.cycles[1].words[6] == 1 << 6)
        #expect(plan.bitCount == 3)
    }

    @Test func keyDigestGoesToBlock2InNaturalOrderAndIsWriteProtectedLate() throws {
        let plan = try EFuseBurnPlanner.plan([.secureBootDigest(digest, writeProtect: true)], snapshot: chip())
        #expect(plan.cycles.map(\.block) == [2, 0])
        #expect(plan.cycles[0].words[0] == 0xA3A2_A1A0 && plan.cycles[0].words[7] == 0xBFBE_BDBC)
        #expect(plan.cycles[1].words == [1 << 8, 0, 0, 0, 0, 0, 0])
        #expect(plan.protections == [EFuseProtectionChange(kind: .write, bit: 8, fields: ["BLOCK2"])])
        #expect(plan.lines.joined().contains(digest.hexString), "a public-key digest is public and shown")
        let unprotected = try EFuseBurnPlanner.plan([.secureBootDigest(digest, writeProtect: false)], snapshot: chip())
        #expect(unprotected.cycles.map(\.block) == [2])
    }

    @Test func flashEncryptionKeyIsReversedProtectedAndNeverPrinted() throws {
        let plan = try EFuseBurnPlanner.plan([.flashEncryptionKey(key, protect: true)], snapshot: chip())
        // Block byte j = key byte 31 − j: word 0 = bytes 32,31,30,29 little-endian.
        #expect(plan.cycles[0].block == 1 && plan.cycles[0].words[0] == 0x1D1E_1F20 && plan.cycles[0].words[7] == 0x0102_0304)
        #expect(plan.cycles[1].words[0] == (1 << 7) | (1 << 16), "WR_DIS bit 7 and RD_DIS bit 0 in the last cycle")
        let text = plan.lines.joined(separator: "\n")
        #expect(!text.contains(key.hexString) && !text.contains(Array(key.reversed()).hexString))
        #expect(!text.contains("BLOCK1 word"), "no bit positions of a key")
        #expect(plan.changes[0].secret)
    }

    @Test func refusesClearingBits() throws {
        let s = try chip { set(&$0, "FLASH_CRYPT_CNT", 0b11); set(&$0, "SPI_PAD_CONFIG_CLK", 6) }
        #expect(refusal([.field(name: "FLASH_CRYPT_CNT", value: "0b100")], on: s)
                == .wouldClearBits(field: "FLASH_CRYPT_CNT", current: "0x3", requested: "0x4"))
        #expect(refusal([.field(name: "SPI_PAD_CONFIG_CLK", value: "1")], on: s) != nil)
        // Keeping the set bits and adding one is fine.
        #expect(refusal([.field(name: "FLASH_CRYPT_CNT", value: "0xF"), .field(name: "SPI_PAD_CONFIG_CLK", value: "7")], on: s) == nil)
    }

    @Test func refusesValuesThatDoNotFit() throws {
        #expect(refusal([.field(name: "JTAG_DISABLE", value: "2")], on: try chip()) != nil)
        #expect(refusal([.field(name: "FLASH_CRYPT_CONFIG", value: "16")], on: try chip()) != nil)
        #expect(refusal([.field(name: "FLASH_CRYPT_CONFIG", value: "-1")], on: try chip()) != nil)
        #expect(refusal([.field(name: "FLASH_CRYPT_CONFIG", value: "x")], on: try chip()) != nil)
        #expect(refusal([.field(name: "NO_SUCH_FUSE", value: "1")], on: try chip()) == .unknownField("NO_SUCH_FUSE"))
        #expect(refusal([.field(name: "JTAG_DISABLE", value: "1"), .field(name: "jtag_disable", value: "1")], on: try chip())
                == .duplicate("JTAG_DISABLE"))
        #expect(refusal([.field(name: "BLOCK3", value: "0011")], on: try chip()) != nil, "short block value")
    }

    @Test func refusesWriteProtectedFields() throws {
        let s = try chip { set(&$0, "WR_DIS", 1 << 15) }
        #expect(refusal([.field(name: "DISABLE_DL_ENCRYPT", value: "1")], on: s) == .writeProtected(field: "DISABLE_DL_ENCRYPT", bit: 15))
        #expect(refusal([.field(name: "CONSOLE_DEBUG_DISABLE", value: "1")], on: s) != nil, "bit 15 is shared")
        let b3 = try chip { set(&$0, "WR_DIS", 1 << 9) }
        #expect(refusal([.field(name: "SECURE_VERSION", value: "1")], on: b3) == .writeProtected(field: "SECURE_VERSION", bit: 9))
    }

    @Test func refusesNonEmptyOrHiddenKeyBlocks() throws {
        let used = try chip { $0.program(block: 1, words: [1, 0, 0, 0, 0, 0, 0, 0], layout: .esp32) }
        #expect(refusal([.flashEncryptionKey(key, protect: true)], on: used) == .keyBlockNotEmpty(block: 1))
        let hidden = try chip { set(&$0, "RD_DIS", 1) }
        #expect(refusal([.flashEncryptionKey(key, protect: true)], on: hidden) == .readProtected(field: "BLOCK1"))
        let digestThere = try chip { $0.program(block: 2, words: [0, 0, 0, 0, 0, 0, 0, 0x8000_0000], layout: .esp32) }
        #expect(refusal([.secureBootDigest(digest, writeProtect: true)], on: digestThere) == .keyBlockNotEmpty(block: 2))
        let locked = try chip { set(&$0, "WR_DIS", 1 << 8) }
        #expect(refusal([.secureBootDigest(digest, writeProtect: true)], on: locked) == .writeProtected(field: "BLOCK2", bit: 8))
        #expect(refusal([.flashEncryptionKey([1, 2, 3], protect: true)], on: try chip()) == .badKeyLength(what: "the flash encryption key", length: 3))
    }

    @Test func secureBootDigestNeedsRevision3AndCodingNone() throws {
        #expect(refusal([.secureBootDigest(digest, writeProtect: true)], on: try chip(revision: 1)) == .revisionTooLow(revision: 100))
        #expect(refusal([.secureBootDigest(digest, writeProtect: true)], on: try chip(revision: 2)) == .revisionTooLow(revision: 200))
        let coded = try chip { set(&$0, "CODING_SCHEME", 1) }
        #expect(refusal([.secureBootDigest(digest, writeProtect: true)], on: coded) == .codingSchemeNotNone(raw: 1))
        #expect(refusal([.flashEncryptionKey(key, protect: true)], on: coded) == .codingSchemeNotNone(raw: 1))
        let hidden = try chip { set(&$0, "RD_DIS", 8) }
        #expect(refusal([.flashEncryptionKey(key, protect: true)], on: hidden) == .codingSchemeHidden)
        let three = try chip { set(&$0, "CODING_SCHEME", 3) } // 3 also means NONE
        #expect(refusal([.secureBootDigest(digest, writeProtect: true)], on: three) == nil)
    }

    @Test func refusesReadProtectingBlock2WithAReason() throws {
        #expect(refusal([.readProtect("BLOCK2")], on: try chip()) == .readProtectBlock2)
        let d = EFusePlanError.readProtectBlock2.diagnostic
        #expect(d.message.contains("digest") && d.hint?.contains("reads as zeros") == true)
        #expect(refusal([.readProtect("JTAG_DISABLE")], on: try chip()) == .cannotReadProtect("JTAG_DISABLE"))
        #expect(refusal([.writeProtect("CHIP_PACKAGE")], on: try chip()) == .cannotWriteProtect("CHIP_PACKAGE"))
        // Protections themselves locked.
        #expect(refusal([.readProtect("BLOCK3")], on: try chip { set(&$0, "WR_DIS", 1) }) == .protectionLocked("RD_DIS"))
        #expect(refusal([.writeProtect("BLOCK3")], on: try chip { set(&$0, "WR_DIS", 2) }) == .protectionLocked("WR_DIS"))
        // Already protected: a note, nothing to burn.
        let done = try EFuseBurnPlanner.plan([.writeProtect("BLOCK3")], snapshot: try chip { set(&$0, "WR_DIS", 1 << 9) })
        #expect(done.isEmpty && done.notes.first?.contains("already") == true)
    }

    @Test func sharedProtectionBitsNameEveryField() throws {
        let plan = try EFuseBurnPlanner.plan([.writeProtect("DISABLE_DL_CACHE"), .readProtect("CODING_SCHEME")], snapshot: try chip())
        #expect(plan.protections[0].fields == ["CONSOLE_DEBUG_DISABLE", "DISABLE_DL_ENCRYPT", "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE"])
        #expect(plan.protections[1].fields == ["BLK3_PART_RESERVE", "FLASH_CRYPT_CONFIG", "CODING_SCHEME", "KEY_STATUS"])
        #expect(plan.cycles.count == 1 && plan.cycles[0].words[0] == (1 << 15) | (1 << 19))
    }

    @Test func flashCryptCountSemantics() throws {
        #expect(refusal([.field(name: "FLASH_CRYPT_CNT", value: "1")], on: try chip()) == .encryptionWithoutKey)
        let withKey = try EFuseBurnPlanner.plan([.flashEncryptionKey(key, protect: true), .field(name: "FLASH_CRYPT_CNT", value: "1")],
                                                snapshot: try chip())
        #expect(withKey.notes.contains { $0.contains("turns ON") })
        // FLASH_CRYPT_CNT goes in the last cycle together with the protections.
        #expect(withKey.cycles.last?.words[0] == (1 << 7) | (1 << 16) | (1 << 20))
        let on = try chip { set(&$0, "RD_DIS", 1); set(&$0, "FLASH_CRYPT_CNT", 1) }
        let off = try EFuseBurnPlanner.plan([.field(name: "FLASH_CRYPT_CNT", value: "3")], snapshot: on)
        #expect(off.notes.contains { $0.contains("turns OFF") })
        let final = try EFuseBurnPlanner.plan([.field(name: "FLASH_CRYPT_CNT", value: "0x7F")], snapshot: on)
        #expect(final.notes.contains { $0.contains("never change again") })
    }

    @Test func guardsAgainstBrickingBits() throws {
        #expect(refusal([.field(name: "ABS_DONE_1", value: "1")], on: try chip()) == .secureBootWithoutDigest)
        #expect(refusal([.field(name: "ABS_DONE_1", value: "1")], on: try chip(revision: 2)) == .revisionTooLow(revision: 200))
        #expect(refusal([.secureBootDigest(digest, writeProtect: true), .field(name: "ABS_DONE_1", value: "1")], on: try chip()) == nil)
        #expect(refusal([.field(name: "ABS_DONE_0", value: "1")], on: try chip()) == .secureBootV1)
        #expect(refusal([.field(name: "MAC", value: "1")], on: try chip()) == .factoryField("MAC"))
        #expect(refusal([.field(name: "WR_DIS", value: "1")], on: try chip()) == .useProtectCommand("WR_DIS"))
        #expect(refusal([.field(name: "BLOCK1", value: String(repeating: "00", count: 32))], on: try chip()) != nil)
        let uart = try EFuseBurnPlanner.plan([.field(name: "UART_DOWNLOAD_DIS", value: "1")], snapshot: try chip())
        #expect(uart.notes.contains { $0.contains("never enters UART download mode") })
        #expect(uart.cycles.count == 1 && uart.cycles[0].words[0] == 1 << 27)
    }

    @Test func customMACAddsCRCAndVersion() throws {
        let plan = try EFuseBurnPlanner.plan([.field(name: "CUSTOM_MAC", value: "02:11:22:33:44:55")], snapshot: try chip())
        #expect(plan.changes.map(\.name) == ["CUSTOM_MAC", "CUSTOM_MAC_CRC", "MAC_VERSION"])
        #expect(plan.cycles[0].words[0] == 0x2211_02D6 && plan.cycles[0].words[1] == 0x0055_4433 && plan.cycles[0].words[5] == 0x0100_0000)
        #expect(refusal([.field(name: "CUSTOM_MAC", value: "01:11:22:33:44:55")], on: try chip()) != nil, "multicast")
    }

    @Test func everyDiagnosticHasAMessageAndHint() {
        let all: [EFusePlanError] = [.unknownField("X"), .badValue(field: "A", text: "b", reason: "c"),
            .wouldClearBits(field: "A", current: "1", requested: "0"), .writeProtected(field: "A", bit: 1), .readProtected(field: "A"),
            .keyBlockNotEmpty(block: 1), .useProtectCommand("WR_DIS"), .duplicate("A"), .revisionTooLow(revision: 100),
            .codingSchemeNotNone(raw: 1), .readProtectBlock2, .cannotWriteProtect("A"), .cannotReadProtect("A"),
            .protectionLocked("WR_DIS"), .badKeyLength(what: "k", length: 1), .encryptionWithoutKey, .secureBootWithoutDigest, .secureBootV1, .codingSchemeHidden]
        for e in all {
            #expect(!e.diagnostic.message.isEmpty && e.diagnostic.hint?.isEmpty == false, "\(e)")
        }
    }

    /// Random snapshots and random requests: the planner either refuses or returns a plan whose
    /// bits are all currently 0 (never a crash, never a 1→0 bit).
    @Test func randomRequestsNeverPlanClearedOrExistingBits() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let layout = EFuseLayout.esp32
        let names = layout.fields.map(\.name)
        for _ in 0..<60 {
            var a = EFuseArray(layout: layout)
            for b in 0..<4 {
                var words = [UInt32](repeating: 0, count: layout.blockWordCounts[b])
                for w in words.indices where Bool.random(using: &rng) { words[w] = UInt32.random(in: 0...UInt32.max, using: &rng) & UInt32.random(in: 0...UInt32.max, using: &rng) }
                a.program(block: b, words: words, layout: layout)
            }
            let s = EFuseSnapshot(array: a, apbCtrlDate: 0x9604_2000)
            var requests: [EFuseBurnRequest] = []
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let n = names.randomElement(using: &rng) ?? "JTAG_DISABLE"
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: requests.append(.writeProtect(n))
                case 1: requests.append(.readProtect(n))
                case 2: requests.append(.flashEncryptionKey(rng.bytes(32), protect: true))
                default: requests.append(.field(name: n, value: String(UInt64.random(in: 0...255, using: &rng))))
                }
            }
            guard let plan = try? EFuseBurnPlanner.plan(requests, snapshot: s) else { continue }
            for (block, words) in plan.cycles {
                for (w, bits) in words.enumerated() {
                    #expect(bits & s.word(block, w) == 0, "seed \(seed): plan re-burns set bits in BLOCK\(block) word \(w)")
                }
            }
            _ = EFuseSummary(snapshot: s)
        }
    }
}
