import ESPCore
import Partitions
import Testing
import TestSupport

@Suite struct OtadataTests {
    /// CRC vectors: Python `binascii.crc32(struct.pack('<I', seq), 0xFFFFFFFF)` — the formula
    /// ESP-IDF's otatool.py uses, equal to the bootloader's `esp_rom_crc32_le(UINT32_MAX, &seq, 4)`.
    @Test func crcVectors() {
        let vectors: [(UInt32, UInt32)] = [
            (1, 0x4743_989A), (2, 0x55F6_3774), (3, 0xED4A_5011), (16, 0xAFE6_A860), (0xFFFF_FFFE, 0x99F8_B879),
        ]
        for (seq, crc) in vectors { #expect(Otadata.crc(sequence: seq) == crc, "seq \(seq)") }
    }

    @Test func buildLayout() throws {
        let bin = Otadata.build(bootSlot: 1)
        #expect(bin.count == 0x2000)
        // seq 2, 20 × FF label, state UNDEFINED, CRC; everything else erased.
        let expected: [UInt8] = [0x02, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 20) + [0xFF, 0xFF, 0xFF, 0xFF]
            + [0x74, 0x37, 0xF6, 0x55]
        #expect(Array(bin[0..<32]) == expected)
        #expect(bin[32...].allSatisfy { $0 == 0xFF })
        #expect(Otadata.blank().allSatisfy { $0 == 0xFF } && Otadata.blank().count == 0x2000)
        let withState = Otadata.build(bootSlot: 0, state: .valid)
        #expect(Array(withState[24..<28]) == [2, 0, 0, 0])
    }

    @Test func parseAndBootSlot() throws {
        for slot in 0..<4 {
            let p = try Otadata.parse(Otadata.build(bootSlot: slot))
            #expect(p.activeCopy == 0)
            #expect(p.copies[0].crcValid && p.copies[0].isValid)
            #expect(p.copies[1].isErased && !p.copies[1].isValid)
            #expect(p.boot(otaAppCount: 4, hasFactory: false) == .ota(slot))
            // (seq − 1) mod app count.
            #expect(p.boot(otaAppCount: 2, hasFactory: true) == .ota(slot % 2))
        }
        // No OTA apps: factory regardless of otadata.
        #expect(try Otadata.parse(Otadata.build(bootSlot: 1)).boot(otaAppCount: 0, hasFactory: true) == .factory)
    }

    func twoCopies(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out = Otadata.blank()
        out.replaceSubrange(0..<32, with: a)
        out.replaceSubrange(0x1000..<0x1020, with: b)
        return out
    }

    @Test func higherValidSequenceWins() throws {
        let p = try Otadata.parse(twoCopies(Otadata.entry(sequence: 5), Otadata.entry(sequence: 6)))
        #expect(p.activeCopy == 1)
        #expect(p.boot(otaAppCount: 2, hasFactory: false) == .ota(1)) // (6 − 1) mod 2
        // Equal sequences: the first copy.
        #expect(try Otadata.parse(twoCopies(Otadata.entry(sequence: 3), Otadata.entry(sequence: 3))).activeCopy == 0)
        // A bad CRC disqualifies the higher one.
        var bad = Otadata.entry(sequence: 9)
        bad[28] ^= 1
        let q = try Otadata.parse(twoCopies(Otadata.entry(sequence: 4), bad))
        #expect(!q.copies[1].crcValid)
        #expect(q.activeCopy == 0)
        #expect(q.boot(otaAppCount: 2, hasFactory: false) == .ota(1)) // (4 − 1) mod 2
        // Invalid and aborted states disqualify too.
        let r = try Otadata.parse(twoCopies(Otadata.entry(sequence: 2), Otadata.entry(sequence: 3, state: .aborted)))
        #expect(r.activeCopy == 0)
        #expect(r.copies[1].state == .aborted)
    }

    @Test func fallbacks() throws {
        let blank = try Otadata.parse(Otadata.blank())
        #expect(blank.activeCopy == nil)
        #expect(blank.boot(otaAppCount: 2, hasFactory: true) == .factory)
        #expect(blank.boot(otaAppCount: 2, hasFactory: false) == .firstOTA)
        // Sequences set but both CRCs wrong: not "erased", so the bootloader's invalid-otadata path.
        var a = Otadata.entry(sequence: 1), b = Otadata.entry(sequence: 2)
        a[31] ^= 0xFF
        b[31] ^= 0xFF
        let broken = try Otadata.parse(twoCopies(a, b))
        #expect(broken.activeCopy == nil)
        #expect(broken.boot(otaAppCount: 2, hasFactory: false) == .invalidFallback(hasFactory: false))
        // Both copies invalid by state: treated like erased.
        let states = try Otadata.parse(twoCopies(Otadata.entry(sequence: 1, state: .invalid),
                                                 Otadata.entry(sequence: 2, state: .aborted)))
        #expect(states.boot(otaAppCount: 2, hasFactory: false) == .firstOTA)
    }

    @Test func tooShortIsAnError() {
        #expect(throws: Otadata.ParseError.tooShort(length: 0x1000)) { try Otadata.parse([UInt8](repeating: 0xFF, count: 0x1000)) }
        #expect(throws: Never.self) { try Otadata.parse([UInt8](repeating: 0, count: 0x1020)) }
    }

    @Test func randomBytesNeverCrash() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for _ in 0..<200 {
            let bytes = rng.bytes(Int.random(in: 0...0x2100, using: &rng))
            if let p = try? Otadata.parse(bytes) {
                for apps in 0...3 {
                    if case let .ota(n) = p.boot(otaAppCount: apps, hasFactory: false) {
                        #expect(n >= 0 && n < apps, "seed \(seed)")
                    }
                }
            } else {
                #expect(bytes.count < 0x1020, "seed \(seed)")
            }
        }
    }
}
