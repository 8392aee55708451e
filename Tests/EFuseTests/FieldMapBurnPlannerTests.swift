import EFuse
import ESPCore
import Foundation
import TestSupport
import Testing

/// The S3/C3 burn planner without the oracle: what each request sets, and every refusal.
@Suite struct FieldMapBurnPlannerTests {
    static let chips = ["esp32s3", "esp32c3"]

    func map(_ chip: String) throws -> EFuseFieldMap { try #require(EFuseFieldMap.named(chip)) }
    func key(_ seed: UInt8, _ n: Int = 32) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: Int(seed) &* 31 &+ $0 &* 7 &+ 1) } }

    func refusal(_ body: () throws(FieldMapBurnError) -> FieldMapBurnPlan) -> FieldMapBurnError? {
        do { _ = try body(); return nil } catch { return error }
    }

    // MARK: burn NAME=VALUE

    @Test(arguments: chips) func burnSetsFieldsAndProtectsNothingElse(chip: String) throws {
        let m = try map(chip)
        let w = EFuseBlockWords(map: m)
        let plan = try FieldMapBurnPlanner.burnFields(
            [("SECURE_BOOT_EN", "1"), ("spi_boot_crypt_cnt", "0b1"), ("SECURE_VERSION", "0x1234"), ("KEY_PURPOSE_5", "6")],
            words: w, map: m)
        let after = plan.applied(to: w, map: m)
        let s = EFuseFieldMapSummary(words: after, map: m)
        #expect(s.security.secureBootEnabled && s.security.spiBootCryptCnt == 1 && s.security.flashEncryptionEnabled)
        #expect(s.field("SECURE_VERSION")?.integer == 0x1234)
        #expect(s.field("KEY_PURPOSE_5")?.value == "HMAC_DOWN_JTAG")
        #expect(s.security.writeProtectedBits.isEmpty && s.security.readProtectedBits.isEmpty)
        #expect(plan.programOrder == [0])
        #expect(plan.lines.contains("BLOCK0: SECURE_VERSION 0x0 -> 0x1234"))
        // Bits already set: nothing to burn, a note.
        let again = try FieldMapBurnPlanner.burnFields([("SPI_BOOT_CRYPT_CNT", "1")], words: after, map: m)
        #expect(again.isEmpty && again.notes.count == 1)
        // The next bit of the counter keeps the first.
        let next = try FieldMapBurnPlanner.burnFields([("SPI_BOOT_CRYPT_CNT", "3")], words: after, map: m)
        #expect(next.applied(to: after, map: m).integer(try #require(m.field(named: "SPI_BOOT_CRYPT_CNT"))) == 3)
    }

    @Test(arguments: chips) func burnRefusals(chip: String) throws {
        let m = try map(chip)
        var w = EFuseBlockWords(map: m)
        w.setInteger(try #require(m.field(named: "SPI_BOOT_CRYPT_CNT")), 1)
        w.setInteger(try #require(m.field(named: "WR_DIS")), 1 << 2)  // locks DIS_PAD_JTAG and others
        func burn(_ n: String, _ v: String) -> FieldMapBurnError? {
            refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.burnFields([(n, v)], words: w, map: m) }
        }
        #expect(burn("SPI_BOOT_CRYPT_CNT", "2") == .wouldClearBits("SPI_BOOT_CRYPT_CNT", current: "0x1", requested: "0x2"))
        #expect(burn("SPI_BOOT_CRYPT_CNT", "8") != nil)  // 4 bits into a 3-bit field
        if case .badValue = burn("SPI_BOOT_CRYPT_CNT", "8") {} else { Issue.record("8 fits a 3-bit field?") }
        if case .badValue = burn("SECURE_BOOT_EN", "2") {} else { Issue.record("a 1-bit field took 2") }
        if case .badValue = burn("SECURE_VERSION", "0") {} else { Issue.record("0 accepted") }
        if case .badValue = burn("SECURE_VERSION", "twelve") {} else { Issue.record("a word accepted") }
        if case .badValue = burn("SECURE_VERSION", "012") {} else { Issue.record("a leading zero accepted (Python's int(s, 0) refuses it)") }
        #expect(burn("DIS_PAD_JTAG", "1") == .writeProtected("DIS_PAD_JTAG", bit: 2))
        #expect(burn("NO_SUCH_FIELD", "1") == .unknownName("NO_SUCH_FIELD", chip: chip))
        if case .notBurnable = burn("BLOCK_KEY0", String(repeating: "00", count: 32)) {} else { Issue.record("a key block took burn") }
        if case .notBurnable = burn("WAFER_VERSION_MINOR", "1") {} else { Issue.record("a composite took burn") }
        if case .badValue = burn("CUSTOM_MAC", "11:22:33:44:55:66") {} else { Issue.record("a multicast MAC accepted") }
        if case .badValue = burn("CUSTOM_MAC", "10:22:33:44:55") {} else { Issue.record("a 5-byte MAC accepted") }
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnFields([("SECURE_BOOT_EN", "1"), ("secure_boot_en", "1")], words: w, map: m)
        } == .duplicateName("SECURE_BOOT_EN"))
        var hidden = w
        hidden.setInteger(try #require(m.field(named: "RD_DIS")), 1 << 6)
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnFields([("BLOCK_SYS_DATA2", String(repeating: "01", count: 32))], words: hidden, map: m)
        } == .readProtected("BLOCK_SYS_DATA2", bit: 6))
        #expect(refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.burnKeys([], words: w, map: m) } == .nothingRequested("burn-key"))
        #expect(refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.writeProtect([], words: w, map: m) } == .nothingRequested("write-protect"))
        #expect(refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.readProtect([], words: w, map: m) } == .nothingRequested("read-protect"))
        // Reed–Solomon blocks are programmed once.
        let mac = try FieldMapBurnPlanner.burnFields([("CUSTOM_MAC", "10:22:33:44:55:66")], words: w, map: m)
        let withMac = mac.applied(to: w, map: m)
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnFields([("BLOCK_USR_DATA", String(repeating: "ff", count: 32))], words: withMac, map: m)
        } == .codingSchemeForbids("BLOCK_USR_DATA", block: "BLOCK_USR_DATA"))
        if chip == "esp32s3" {
            if case .incompatible = refusal({ () throws(FieldMapBurnError) in
                try FieldMapBurnPlanner.burnFields([("DIS_USB_JTAG", "1"), ("DIS_USB_SERIAL_JTAG", "1")], words: EFuseBlockWords(map: m), map: m)
            }) {} else { Issue.record("DIS_USB_JTAG with DIS_USB_SERIAL_JTAG accepted on the S3") }
        }
    }

    @Test func valuesParseAsEspefuseTakesThem() throws {
        let m = try map("esp32s3")
        let w = EFuseBlockWords(map: m)
        let usr = try #require(m.field(named: "BLOCK_USR_DATA"))
        let hex = (0..<32).map { String(format: "%02x", $0) }.joined()
        let natural = try FieldMapBurnPlanner.burnFields([("BLOCK_USR_DATA", hex)], words: w, map: m).applied(to: w, map: m)
        #expect(natural.bytes(of: usr) == Array(0..<32))
        let reversed = try FieldMapBurnPlanner.burnFields([("BLOCK_USR_DATA", "0x" + hex)], words: w, map: m).applied(to: w, map: m)
        #expect(reversed.bytes(of: usr) == Array((0..<32).reversed()))
        let cnt = try #require(m.field(named: "SECURE_VERSION"))
        for (v, n) in [("0o17", 15), ("0b101", 5), ("1_000", 1000), ("0x_ff", 255)] {
            #expect(try FieldMapBurnPlanner.burnFields([("SECURE_VERSION", v)], words: w, map: m).applied(to: w, map: m).integer(cnt) == UInt64(n), "\(v)")
        }
    }

    // MARK: burn-key

    @Test(arguments: chips) func burnKeyStoresAndProtectsAsEspefuse(chip: String) throws {
        let m = try map(chip)
        let w = EFuseBlockWords(map: m)
        let k = key(1)
        let plan = try FieldMapBurnPlanner.burnKeys(
            [.init(block: "BLOCK_KEY0", data: k, purpose: "XTS_AES_128_KEY"), .init(block: "block5", data: key(2), purpose: "USER")],
            words: w, map: m)
        let raw = plan.applied(to: w, map: m, hideReadProtected: false)
        #expect(raw.bytes(of: try #require(m.field(named: "BLOCK_KEY0"))) == k.reversed())
        #expect(raw.bytes(of: try #require(m.field(named: "BLOCK_KEY1"))) == key(2))
        let s = EFuseFieldMapSummary(words: plan.applied(to: w, map: m), map: m)
        #expect(s.keyBlocks[0].readProtected && s.keyBlocks[0].writeProtected && s.keyBlocks[0].purposeWriteProtected)
        #expect(s.keyBlocks[0].purposeName == "XTS_AES_128_KEY")
        #expect(!s.keyBlocks[1].readProtected && s.keyBlocks[1].writeProtected && s.keyBlocks[1].purposeWriteProtected)
        #expect(s.field("BLOCK_KEY0")?.integer == nil && s.keyBlocks[0].empty == false)
        #expect(plan.applied(to: w, map: m).word(m.firstKeyBlock, 0) == 0, "a read-protected block reads as zero")
        #expect(plan.programOrder == [m.firstKeyBlock + 1, m.firstKeyBlock, 0])
        // Key material is never in the plan's text.
        let text = (plan.lines + plan.notes).joined(separator: "\n")
        #expect(!text.contains(k.hexString) && !text.contains(Array(k.reversed()).hexString) && !text.contains(key(2).hexString))

        let loose = try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY3", data: k, purpose: "HMAC_UP")],
                                                     noReadProtect: true, noWriteProtect: true, words: w, map: m)
        let ls = EFuseFieldMapSummary(words: loose.applied(to: w, map: m), map: m)
        #expect(!ls.keyBlocks[3].readProtected && !ls.keyBlocks[3].writeProtected && ls.keyBlocks[3].purposeWriteProtected)
    }

    @Test func xts256SplitsIntoTheNextFreeBlocks() throws {
        let m = try map("esp32s3")
        var w = EFuseBlockWords(map: m)
        w.setInteger(try #require(m.field(named: "KEY_PURPOSE_3")), 9)  // BLOCK_KEY3 taken (purpose set)
        let k = key(7, 64)
        let plan = try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY2", data: k, purpose: "XTS_AES_256_KEY")], words: w, map: m)
        let raw = plan.applied(to: w, map: m, hideReadProtected: false)
        #expect(raw.bytes(of: try #require(m.field(named: "BLOCK_KEY2"))) == Array(k[0..<32]).reversed())
        #expect(raw.bytes(of: try #require(m.field(named: "BLOCK_KEY4"))) == Array(k[32..<64]).reversed())
        let s = EFuseFieldMapSummary(words: plan.applied(to: w, map: m), map: m)
        #expect(s.keyBlocks[2].purposeName == "XTS_AES_256_KEY_1" && s.keyBlocks[4].purposeName == "XTS_AES_256_KEY_2")
        #expect(s.security.flashEncryptionKeyPurposes == ["XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2"])
        #expect(s.keyBlocks[2].readProtected && s.keyBlocks[4].readProtected)
        // Wraps around; refuses when no second block is free.
        var five = w
        five.setInteger(try #require(m.field(named: "KEY_PURPOSE_5")), 5)
        let wrap = try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY4", data: k, purpose: "XTS_AES_256_KEY")], words: five, map: m)
        #expect(wrap.programOrder == [m.firstKeyBlock + 4, m.firstKeyBlock, 0])
        // The next free block is BLOCK_KEY5, which cannot hold an XTS key: refused, as espefuse does.
        if case .purposeNotAllowed = refusal({ () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY4", data: k, purpose: "XTS_AES_256_KEY")], words: w, map: m)
        }) {} else { Issue.record("XTS_AES_256_KEY_2 went into BLOCK_KEY5") }
        var full = w
        for i in 0..<6 where i != 2 { full.setInteger(try #require(m.field(named: "KEY_PURPOSE_\(i)")), 9) }
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY2", data: k, purpose: "XTS_AES_256_KEY")], words: full, map: m)
        } == .noSecondKeyBlock(first: "BLOCK_KEY2"))
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY0", data: key(1), purpose: "XTS_AES_256_KEY")], words: w, map: m)
        } == .badKeyLength(block: "BLOCK_KEY0", purpose: "XTS_AES_256_KEY", expected: 64, actual: 32))
    }

    @Test(arguments: chips) func burnKeyRefusals(chip: String) throws {
        let m = try map(chip)
        var w = EFuseBlockWords(map: m)
        w.setBytes(try #require(m.field(named: "BLOCK_KEY1")), key(3))           // holds data
        w.setInteger(try #require(m.field(named: "KEY_PURPOSE_2")), 9)          // purpose taken
        w.setInteger(try #require(m.field(named: "RD_DIS")), 1 << 3)            // BLOCK_KEY3 hidden
        w.setInteger(try #require(m.field(named: "WR_DIS")), 1 << 27 | 1 << 8)  // BLOCK_KEY4 locked, KEY_PURPOSE_0 locked
        func burn(_ b: String, _ p: String, _ d: [UInt8]? = nil) -> FieldMapBurnError? {
            refusal { () throws(FieldMapBurnError) in
                try FieldMapBurnPlanner.burnKeys([.init(block: b, data: d ?? key(9), purpose: p)], words: w, map: m)
            }
        }
        #expect(burn("BLOCK_KEY1", "USER") == .keyBlockInUse("BLOCK_KEY1", state: "already holds data"))
        #expect(burn("BLOCK_KEY2", "HMAC_UP") == .purposeInUse(block: "BLOCK_KEY2", current: "SECURE_BOOT_DIGEST0", requested: "HMAC_UP"))
        #expect(burn("BLOCK_KEY3", "HMAC_UP") == .keyBlockInUse("BLOCK_KEY3", state: "read-protected"))
        #expect(burn("BLOCK_KEY4", "HMAC_UP") == .writeProtected("BLOCK_KEY4", bit: 27))
        #expect(burn("BLOCK_KEY0", "HMAC_UP") == .writeProtected("KEY_PURPOSE_0", bit: 8))
        #expect(burn("BLOCK_KEY5", "XTS_AES_128_KEY") != nil)
        if case .purposeNotAllowed = burn("BLOCK_KEY5", "XTS_AES_128_KEY") {} else { Issue.record("XTS in KEY_PURPOSE_5") }
        #expect(burn("BLOCK_KEY5", "HMAC_UP", key(1, 31)) == .badKeyLength(block: "BLOCK_KEY5", purpose: "HMAC_UP", expected: 32, actual: 31))
        #expect(burn("BLOCK_MAC_SYS", "USER") == .notAKeyBlock("BLOCK_MAC_SYS", chip: chip))
        #expect(burn("BLOCK_KEY5", "NOT_A_PURPOSE") == .unknownPurpose("NOT_A_PURPOSE", chip: chip))
        if chip == "esp32c3" {
            #expect(burn("BLOCK_KEY5", "XTS_AES_256_KEY", key(1, 64)) == .purposeNotOnChip("XTS_AES_256_KEY", chip: chip))
            #expect(burn("BLOCK_KEY5", "XTS_AES_256_KEY_1") == .purposeNotOnChip("XTS_AES_256_KEY_1", chip: chip))
        }
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY5", data: key(1), purpose: "USER"),
                                              .init(block: "BLOCK9", data: key(2), purpose: "USER")], words: w, map: m)
        } == .duplicateName("BLOCK_KEY5"))
        // RD_DIS locked: a secret key cannot be hidden.
        var rdLocked = EFuseBlockWords(map: m)
        rdLocked.setInteger(try #require(m.field(named: "WR_DIS")), 1)
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY0", data: key(1), purpose: "HMAC_UP")], words: rdLocked, map: m)
        } == .writeProtected("RD_DIS", bit: 0))
    }

    @Test(arguments: chips) func burnKeyDigestTakesDigestPurposesOnly(chip: String) throws {
        let m = try map(chip)
        let w = EFuseBlockWords(map: m)
        let ds = (0..<3).map { key(UInt8(40 + $0)) }
        let plan = try FieldMapBurnPlanner.burnKeyDigests(
            (0..<3).map { .init(block: "BLOCK_KEY\($0 + 1)", data: ds[$0], purpose: "SECURE_BOOT_DIGEST\($0)") }, words: w, map: m)
        let s = EFuseFieldMapSummary(words: plan.applied(to: w, map: m), map: m)
        #expect(s.security.secureBootDigestSlots == [0, 1, 2])
        #expect(s.keyBlocks[1...3].map(\.digest) == ds.map { Optional($0.hexString) })
        #expect(s.keyBlocks[1...3].allSatisfy { $0.writeProtected && !$0.readProtected && $0.purposeWriteProtected })
        if case .purposeNotAllowed = refusal({ () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnKeyDigests([.init(block: "BLOCK_KEY0", data: ds[0], purpose: "XTS_AES_128_KEY")], words: w, map: m)
        }) {} else { Issue.record("burn-key-digest took an XTS purpose") }
        #expect(refusal { () throws(FieldMapBurnError) in
            try FieldMapBurnPlanner.burnKeyDigests([.init(block: "BLOCK_KEY0", data: [1, 2], purpose: "SECURE_BOOT_DIGEST0")], words: w, map: m)
        } == .badKeyLength(block: "BLOCK_KEY0", purpose: "SECURE_BOOT_DIGEST0", expected: 32, actual: 2))
    }

    // MARK: write-protect / read-protect

    @Test(arguments: chips) func protectAndTheirRefusals(chip: String) throws {
        let m = try map(chip)
        var w = EFuseBlockWords(map: m)
        w.setInteger(try #require(m.field(named: "KEY_PURPOSE_1")), 9)
        w.setInteger(try #require(m.field(named: "KEY_PURPOSE_2")), 5)
        let wp = try FieldMapBurnPlanner.writeProtect(["DIS_PAD_JTAG", "BLOCK_KEY3", "MAC"], words: w, map: m)
        let after = wp.applied(to: w, map: m)
        #expect(EFuseFieldMapSummary(words: after, map: m).security.writeProtectedBits == [2, 20, 26])
        #expect(wp.lines[0].contains("DIS_ICACHE"), "the plan lists every field WR_DIS bit 2 locks")
        let again = try FieldMapBurnPlanner.writeProtect(["DIS_PAD_JTAG"], words: after, map: m)
        #expect(again.isEmpty && again.notes.count == 1)
        if case .notProtectable = refusal({ () throws(FieldMapBurnError) in try FieldMapBurnPlanner.writeProtect(["WR_DIS"], words: w, map: m) }) {} else {
            Issue.record("WR_DIS write-protected")
        }
        #expect(refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.writeProtect(["NOPE"], words: w, map: m) } == .unknownName("NOPE", chip: chip))

        let rp = try FieldMapBurnPlanner.readProtect(["BLOCK_SYS_DATA2", "BLOCK_KEY2"], words: w, map: m)
        #expect(EFuseFieldMapSummary(words: rp.applied(to: w, map: m), map: m).security.readProtectedBits == [2, 6])
        #expect(refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.readProtect(["BLOCK_KEY1"], words: w, map: m) }
                == .mustStayReadable("BLOCK_KEY1", purpose: "SECURE_BOOT_DIGEST0"))
        #expect(refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.readProtect(["BLOCK_KEY0"], words: w, map: m) }
                == .mustStayReadable("BLOCK_KEY0", purpose: "USER"))
        if case .notProtectable = refusal({ () throws(FieldMapBurnError) in try FieldMapBurnPlanner.readProtect(["SECURE_BOOT_EN"], words: w, map: m) }) {} else {
            Issue.record("a BLOCK0 field read-protected")
        }
        var locked = w
        locked.setInteger(try #require(m.field(named: "WR_DIS")), 1)
        #expect(refusal { () throws(FieldMapBurnError) in try FieldMapBurnPlanner.readProtect(["BLOCK_SYS_DATA2"], words: locked, map: m) }
                == .writeProtected("RD_DIS", bit: 0))
    }

    @Test func everyRefusalRendersAsADiagnostic() {
        let all: [FieldMapBurnError] = [
            .unknownName("X", chip: "esp32s3"), .duplicateName("X"), .notBurnable("X", reason: "r"), .badValue("X", "v", expected: "e"),
            .wouldClearBits("X", current: "1", requested: "2"), .writeProtected("X", bit: 1), .readProtected("X", bit: 1),
            .codingSchemeForbids("X", block: "B"), .incompatible(["A", "B"], reason: "r"), .notAKeyBlock("X", chip: "esp32c3"),
            .unknownPurpose("P", chip: "esp32c3"), .purposeNotOnChip("P", chip: "esp32c3"), .purposeNotAllowed(block: "B", purpose: "P", reason: "r"),
            .badKeyLength(block: "B", purpose: "P", expected: 64, actual: 3), .keyBlockInUse("B", state: "s"),
            .purposeInUse(block: "B", current: "C", requested: "R"), .noSecondKeyBlock(first: "B"), .notProtectable("X", what: "w"),
            .mustStayReadable("X", purpose: "P"), .nothingRequested("burn-key"),
        ]
        for e in all { #expect(!e.diagnostic.message.isEmpty) }
        #expect(FieldMapBurnError.purposeNotOnChip("XTS_AES_256_KEY", chip: "esp32c3").diagnostic.hint?.contains("XTS_AES_128_KEY") == true)
    }

    // MARK: the virtual file

    /// A burn writes the blocks' read registers and the program-cycle registers only; every other
    /// byte of the register space stays; an empty plan leaves the file as it is.
    @Test(arguments: chips) func virtualFileBurnTouchesOnlyItsRegisters(chip: String) throws {
        let m = try map(chip)
        var rng = SeededRandom(seed: 17)
        let junk = (0..<512).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let regsJunk = Array(junk.reversed())
        // Zero the blocks' read registers so the plan is valid; keep junk everywhere else.
        var regs = regsJunk
        let blocks = Int(m.readRegisterOffset(block: 0))..<Int(m.readRegisterOffset(block: 10) + 32)
        for i in blocks { regs[i] = 0 }
        let file = Array(regs.reversed())
        let w = try EFuseVirtualFile.decode(file, map: m)
        let empty = try FieldMapBurnPlanner.writeProtect(["DIS_PAD_JTAG"], words: w.settingWRDIS(2, map: m), map: m)
        let unchanged = try EFuseVirtualFile.burned(file, plan: empty, map: m)
        #expect(empty.isEmpty && unchanged == file)
        let plan = try FieldMapBurnPlanner.burnKeys([.init(block: "BLOCK_KEY1", data: key(5), purpose: "USER")], words: w, map: m)
        let out = Array(try EFuseVirtualFile.burned(file, plan: plan, map: m).reversed())
        let p = try #require(EFuseProgramRegisters.of(chip: chip))
        var allowed = Set(blocks)
        for o in [p.conf, p.cmd] + p.timing.map(\.offset) { allowed.formUnion(o..<o + 4) }
        allowed.formUnion(p.pgmData..<(p.checkValue + 12))
        for i in 0..<512 where !allowed.contains(i) { #expect(out[i] == regs[i], "register byte \(i) changed") }
        #expect(Array(out[p.checkValue..<p.checkValue + 12]) == EFuseReedSolomon.checkValue(key(5)))
        #expect(out[p.pgmData..<p.pgmData + 32].allSatisfy { $0 == 0 })
        #expect(out[p.conf..<p.conf + 4].loadLE(UInt32.self) == 0x5AA5)
        let back = try EFuseVirtualFile.decode(Array(out.reversed()), map: m)
        #expect(back == plan.applied(to: w, map: m))
    }

    // MARK: Reed–Solomon

    /// A vector recorded from `espefuse --virt --chip esp32c3 burn-key BLOCK_KEY1 k.bin USER`: the
    /// PGM_CHECK_VALUE registers it left in the file.
    @Test func reedSolomonRecordedVector() {
        let data: [UInt8] = [0x98, 0xdf, 0xea, 0x78, 0x14, 0x34, 0x38, 0xfe, 0x9a, 0x07, 0xb4, 0x53, 0x94, 0x0a, 0xb7, 0xd1,
                             0x07, 0x3e, 0x59, 0x28, 0x1f, 0x25, 0xd6, 0x99, 0x15, 0xbe, 0x1d, 0xcb, 0x7e, 0xe7, 0x98, 0xaa]
        #expect(EFuseReedSolomon.checkValue(data) == [0x53, 0x6d, 0x7a, 0xee, 0x8b, 0xe6, 0x6a, 0xa7, 0x60, 0x0f, 0xae, 0x91])
        #expect(EFuseReedSolomon.checkValue([UInt8](repeating: 0, count: 32)) == [UInt8](repeating: 0, count: 12))
        #expect(EFuseReedSolomon.checkWords([0x78eadf98, 0xfe383414, 0x53b4079a, 0xd1b70a94, 0x28593e07, 0x99d6251f, 0xcb1dbe15, 0xaa98e77e])
                == [0xee7a6d53, 0xa76ae68b, 0x91ae0f60])
    }

    /// Random blocks against the oracle's own encoder (`reedsolo.RSCodec(12)`, as espefuse uses it).
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func reedSolomonAgreesWithTheOracleEncoder() throws {
        var rng = SeededRandom(seed: 0x5EED_0017)
        var cases: [[Int]] = [[Int](repeating: 0xFF, count: 32), [1] + [Int](repeating: 0, count: 31)]
        for _ in 0..<40 { cases.append((0..<32).map { _ in Int(rng.next() & 0xFF) }) }
        let script = """
        import sys, json, reedsolo
        rs = reedsolo.RSCodec(12)
        print(json.dumps([list(rs.encode(bytes(c)))[32:] for c in json.load(sys.stdin)]))
        """
        let out = try PythonOracle.run(script: script, cases: cases)
        for (c, o) in zip(cases, out) {
            let theirs = try #require(o as? [Int]).map { UInt8($0) }
            #expect(EFuseReedSolomon.checkValue(c.map { UInt8($0) }) == theirs, "\(c)")
        }
    }
}

extension EFuseBlockWords {
    func settingWRDIS(_ bit: Int, map: EFuseFieldMap) -> EFuseBlockWords {
        var c = self
        if let f = map.field(named: "WR_DIS") { c.setInteger(f, integer(f) | 1 << UInt64(bit)) }
        return c
    }
}
