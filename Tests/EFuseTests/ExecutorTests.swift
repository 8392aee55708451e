import EFuse
import ESPCore
import TestSupport
import Testing
import VirtualDevice

/// In-process register access to a virtual device's protocol engine, recording every access.
final class EngineAccess: RegisterAccess {
    let engine: ProtocolEngine
    var log: [(write: Bool, address: UInt32, value: UInt32)] = []
    /// Program-register bits that never stick (a weak fuse), per absolute address.
    var weakBits: [UInt32: UInt32] = [:]
    /// Bits flipped on the way in the next write to an address (a noisy link; register writes
    /// carry no checksum); `flipEveryTime` keeps flipping.
    var flipNext: [UInt32: UInt32] = [:]
    var flipEveryTime = false
    /// Written into a program register right before each program command (a stray bit).
    var strayBeforeProgram: (address: UInt32, value: UInt32)?

    init(mac: String = "24:0a:c4:12:34:56", revision: Int = 3) throws {
        let d = try Device.create(DeviceDescription(chipRevision: revision, mac: mac, flashSize: 4 << 20, flashID: 0x16_40EF))
        engine = ProtocolEngine(device: d)
        engine.beginConnection()
    }

    /// Reads of an address counted from 1; `flipRead[address] = (n, mask)` flips `mask` in the
    /// n-th read of it (a noisy link: register reads carry no checksum either); `alternate` flips
    /// every other read from the n-th on.
    var readCount: [UInt32: Int] = [:]
    var flipRead: [UInt32: (n: Int, mask: UInt32, alternate: Bool)] = [:]

    func readRegister(_ address: UInt32) throws -> UInt32 {
        var v = engine.readRegister(address)
        readCount[address, default: 0] += 1
        if let f = flipRead[address], let k = readCount[address], k >= f.n, f.alternate ? (k - f.n) % 2 == 0 : k == f.n {
            v ^= f.mask
        }
        log.append((false, address, v))
        return v
    }

    func writeRegister(_ address: UInt32, _ value: UInt32) throws {
        log.append((true, address, value))
        var v = value
        if let flip = flipNext[address] {
            v ^= flip
            if !flipEveryTime { flipNext[address] = nil }
        }
        if address == 0x3FF5_A000 + EFuseController.cmdOffset, value == 2 {
            if let stray = strayBeforeProgram { engine.writeRegister(stray.address, stray.value) }
            // Weak fuses: the registers hold the bits, the program cycle does not blow them.
            for (register, mask) in weakBits { engine.writeRegister(register, engine.readRegister(register) & ~mask) }
        }
        engine.writeRegister(address, v)
    }
}

@Suite struct ExecutorTests {
    let layout = EFuseLayout.esp32
    let base: UInt32 = 0x3FF5_A000

    @Test("a bit flipped in one eFuse reading (before, during or after a burn) is neither a changed chip nor a stray bit",
          arguments: 1...6)
    func oneCorruptedReadingIsOutvoted(n: Int) throws {
        var rng = SeededRandom(seed: testSeed())
        let digest = rng.bytes(32)
        let access = try EngineAccess()
        let client = EFuseClient(access: access)
        let plan = try client.plan([.secureBootDigest(digest, writeProtect: false), .field(name: "ABS_DONE_1", value: "1")])
        // BLOCK2 word 0 as read from here on: the check before burning, the read-back after the
        // cycle, the final reading; a bit the digest does not have, so it would look stray.
        let address = base + layout.readRegisterOffsets[2]
        let word0 = digest[0..<4].loadLE(UInt32.self)
        let stray = UInt32(1) << UInt32((0..<32).first { word0 & (1 << $0) == 0 } ?? 0)
        access.readCount = [:]
        access.flipRead[address] = (n, stray, false)
        let report = try client.execute(plan)
        #expect(report.allStuck && report.strayBits.isEmpty, "read \(n) corrupted: \(report.changes) stray \(report.strayBits)")
        #expect(access.engine.device.efuses.blocks[2][0] == word0, "the fuses hold the digest, nothing more")
        #expect(report.after.blocks[2][0] == word0)
    }

    @Test("readings that never agree twice stop the burn before anything is programmed")
    func unstableReadingsBurnNothing() throws {
        let access = try EngineAccess()
        let client = EFuseClient(access: access)
        let plan = try client.plan([.field(name: "DISABLE_DL_DECRYPT", value: "1")])
        access.readCount = [:]
        access.flipRead[base + layout.readRegisterOffsets[0]] = (1, 1 << 3, true)
        #expect(throws: EFuseClientError.unstableReadings(6)) { _ = try client.execute(plan) }
        #expect(!access.log.contains { $0.write && $0.address == base + EFuseController.cmdOffset && $0.value == 2 }, "no program command")
        #expect(access.engine.device.efuses.rawWord(block: 0, word: 6) & (1 << 8) == 0, "DISABLE_DL_DECRYPT not burned")
    }

    @Test func burnsThroughTheRegistersAndReadsBack() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let key = rng.bytes(32), digest = rng.bytes(32)
        let access = try EngineAccess()
        let client = EFuseClient(access: access)
        let plan = try client.plan([.secureBootDigest(digest, writeProtect: true), .flashEncryptionKey(key, protect: true),
                                    .field(name: "FLASH_CRYPT_CONFIG", value: "0xF"), .field(name: "FLASH_CRYPT_CNT", value: "1"),
                                    .field(name: "ABS_DONE_1", value: "1"), .field(name: "DISABLE_DL_DECRYPT", value: "1")])
        let report = try client.execute(plan)
        #expect(report.allStuck, "seed \(seed): \(report.changes)")
        #expect(report.programCycles == 4, "BLOCK2, BLOCK1, BLOCK0, BLOCK0 (late)")
        // The fuse cells themselves.
        let a = access.engine.device.efuses
        #expect(a.blocks[2] == (0..<8).map { digest[(4 * $0)..<(4 * $0 + 4)].loadLE(UInt32.self) }, "seed \(seed)")
        let reversed = Array(key.reversed())
        #expect(a.blocks[1] == (0..<8).map { reversed[(4 * $0)..<(4 * $0 + 4)].loadLE(UInt32.self) }, "seed \(seed)")
        #expect(a.rawWord(block: 0, word: 0) == (1 << 7) | (1 << 8) | (1 << 16) | (1 << 20))
        #expect(a.rawWord(block: 0, word: 5) >> 28 == 0xF)
        #expect(a.rawWord(block: 0, word: 6) == (1 << 5) | (1 << 8))
        // Read back through the registers: BLOCK1 now hidden, the summary says so.
        let s = try client.summary()
        #expect(s.security.flashEncryptionEnabled && s.security.flashEncryptionKeyPresent && s.security.blk1ReadProtected)
        #expect(s.security.secureBootDigest == digest.hexString && s.security.secureBootV2Enabled && s.security.blk2WriteProtected)
        #expect(s.field("BLOCK1")?.value == "?" && s.field("BLOCK1")?.readable == false && s.field("BLOCK1")?.writeable == false)
        #expect(s.security.disableDLDecrypt && !s.security.disableDLEncrypt)
        #expect(report.after == (try client.snapshot()))
        // Nothing more can be planned into the locked blocks.
        #expect(throws: EFusePlanError.self) { try client.plan([.flashEncryptionKey(key, protect: true)]) }
    }

    @Test func followsTheControllerSequence() throws {
        let access = try EngineAccess()
        let client = EFuseClient(access: access)
        _ = try client.execute(try client.plan([.field(name: "JTAG_DISABLE", value: "1")]))
        let writes = access.log.filter(\.write)
        // All 31 program registers (BLOCK0's word 6 = 0x40), then timing, CONF=0x5A5A, CMD=2, CONF=0x5AA5, CMD=1.
        let programAddresses: [UInt32] = (0..<7).map { base + 0x1C + UInt32(4 * $0) } + (0..<24).map { base + 0x98 + UInt32(4 * $0) }
        let firstAddresses: [UInt32] = writes.prefix(31).map(\.address).sorted()
        #expect(firstAddresses == programAddresses)
        #expect(writes.first { $0.address == base + 0x34 }?.value == 0x40)
        #expect(writes.prefix(31).filter { $0.address != base + 0x34 }.allSatisfy { $0.value == 0 })
        let tail = writes.dropFirst(31).map { ($0.address - base, $0.value) }
        #expect(tail.map(\.0) == [0x118, 0x0F8, 0x0F8, 0x0FC, 0x104, 0x0FC, 0x104, 0x0FC, 0x104])
        #expect(tail[0].1 & 0xFF == 80 && tail[2].1 & 0xFFFF == 0xFFA0, "40 MHz timing: DAC 80, SEL0 160, SEL1 255")
        #expect(tail[3].1 == 0x5A5A && tail[4].1 == 2 && tail[5].1 == 0x5AA5 && tail[6].1 == 1)
        #expect(access.engine.device.efuses.rawWord(block: 0, word: 6) == 0x40)
        // 26 MHz crystal timing.
        let a26 = try EngineAccess()
        let c26 = EFuseClient(access: a26, crystalHz: 26_000_000)
        _ = try c26.execute(try c26.plan([.field(name: "JTAG_DISABLE", value: "1")]))
        let clk = a26.log.filter { $0.write && $0.address == base + 0xF8 }.last?.value ?? 0
        #expect(clk & 0xFFFF == 0xFFFA)
    }

    @Test func reportsBitsThatDidNotStickAfterThreeTries() throws {
        let access = try EngineAccess()
        access.weakBits[base + 0x030] = 1 << 28 // FLASH_CRYPT_CONFIG bit 0 never burns
        let client = EFuseClient(access: access)
        let report = try client.execute(try client.plan([.field(name: "FLASH_CRYPT_CONFIG", value: "0xF"),
                                                         .field(name: "JTAG_DISABLE", value: "1")]))
        #expect(!report.allStuck)
        #expect(report.programCycles == 3)
        let fcc = report.changes.first { $0.name == "FLASH_CRYPT_CONFIG" }
        #expect(fcc?.stuck == false && fcc?.missingBits == 1 && fcc?.bits == 4)
        #expect(report.changes.first { $0.name == "JTAG_DISABLE" }?.stuck == true)
    }

    @Test func refusesToBurnWhenTheChipChangedSincePlanning() throws {
        let access = try EngineAccess()
        let client = EFuseClient(access: access)
        let plan = try client.plan([.field(name: "JTAG_DISABLE", value: "1")])
        _ = try client.execute(try client.plan([.field(name: "DISABLE_DL_CACHE", value: "1")]))
        #expect(throws: EFuseClientError.chipChanged) { try client.execute(plan) }
    }

    @Test func protectionsStickAndLockLaterBurns() throws {
        let access = try EngineAccess()
        let client = EFuseClient(access: access)
        let r = try client.execute(try client.plan([.writeProtect("DISABLE_DL_ENCRYPT"), .readProtect("BLOCK3"),
                                                    .field(name: "SECURE_VERSION", value: "3")]))
        #expect(r.allStuck && r.protections.count == 2)
        let s = try client.summary()
        #expect(s.field("SECURE_VERSION")?.readable == false && s.field("SECURE_VERSION")?.value == "?")
        #expect(access.engine.device.efuses.rawWord(block: 3, word: 4) == 3, "burned before the read protection")
        #expect(s.field("CONSOLE_DEBUG_DISABLE")?.writeable == false)
        #expect(throws: EFusePlanError.writeProtected(field: "DISABLE_DL_DECRYPT", bit: 15)) {
            try client.plan([.field(name: "DISABLE_DL_DECRYPT", value: "1")])
        }
    }

    @Test func summaryDecodesIdentityAndRevision() throws {
        for rev in 0...3 {
            let client = EFuseClient(access: try EngineAccess(mac: "24:0a:c4:01:02:03", revision: rev))
            let s = try client.summary()
            #expect(s.majorRevision == rev && s.revision == "v\(rev).0")
            #expect(s.mac == "24:0a:c4:01:02:03" && s.macCRCValid && s.package == 1)
            #expect(s.security.codingScheme == "NONE" && !s.security.flashEncryptionEnabled)
            #expect(s.fields.count == layout.fields.count)
            #expect(s.field("CLK8M_FREQ")?.integer == 0x32)
        }
    }

    /// Arbitrary register contents decode without trapping.
    @Test func summarySurvivesArbitraryWords() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for _ in 0..<50 {
            let blocks = layout.blockWordCounts.map { n in (0..<n).map { _ in UInt32.random(in: 0...UInt32.max, using: &rng) } }
            let s = EFuseSummary(snapshot: EFuseSnapshot(blocks: blocks, apbCtrlDate: UInt32.random(in: 0...UInt32.max, using: &rng)))
            #expect(s.fields.count == layout.fields.count, "seed \(seed)")
            #expect((0...3).contains(s.majorRevision))
        }
        // Truncated snapshots (missing words) read as zero.
        let s = EFuseSummary(snapshot: EFuseSnapshot(blocks: [[0xFFFF_FFFF]], apbCtrlDate: 0))
        #expect(s.security.writeProtectedBits.count == 16 && s.field("BLOCK1")?.hex == String(repeating: "0", count: 64))
    }
}

@Suite("eFuse burns over a link that corrupts register writes")
struct CorruptedRegisterWriteTests {
    let layout = EFuseLayout.esp32
    let base: UInt32 = 0x3FF5_A000

    @Test("a bit flipped while loading the key is caught before the burn; the right key is burned")
    func flippedKeyWordIsReloaded() throws {
        let key = (0..<32).map { UInt8($0 &* 7 &+ 1) }
        let access = try EngineAccess()
        // BLOCK1 word 3's program register gets one bit flipped on its first write.
        access.flipNext[base + layout.writeRegisterOffsets[1] + 12] = 1 << 9
        let client = EFuseClient(access: access)
        let report = try client.execute(try client.plan([.flashEncryptionKey(key, protect: false)]))
        #expect(report.allStuck && report.strayBits.isEmpty)
        let reversed = Array(key.reversed())
        #expect(access.engine.device.efuses.blocks[1] == (0..<8).map { reversed[(4 * $0)..<(4 * $0 + 4)].loadLE(UInt32.self) },
                "the key as planned, not the flipped one")
    }

    @Test("a link that keeps corrupting the program registers burns nothing")
    func persistentCorruptionBurnsNothing() throws {
        let access = try EngineAccess()
        access.flipNext[base + layout.writeRegisterOffsets[0] + 4 * 6] = 1 << 3
        access.flipEveryTime = true
        let client = EFuseClient(access: access)
        let before = access.engine.device.efuses
        #expect(throws: EFuseClientError.programRegistersCorrupted(block: 0)) {
            try client.execute(try client.plan([.field(name: "JTAG_DISABLE", value: "1")]))
        }
        #expect(access.engine.device.efuses == before, "no program cycle ran")
    }

    @Test("bits burned beyond the plan are reported, not taken as success")
    func strayBitsAreReported() throws {
        let access = try EngineAccess()
        // Something sets a BLOCK3 program bit between the verified load and the program command.
        access.strayBeforeProgram = (base + layout.writeRegisterOffsets[3], 1 << 4)
        let client = EFuseClient(access: access)
        let report = try client.execute(try client.plan([.field(name: "JTAG_DISABLE", value: "1")]))
        let planned = report.changes.allSatisfy { $0.stuck }
        #expect(planned)
        #expect(report.strayBits == [3: 1])
        #expect(!report.allStuck)
    }
}
