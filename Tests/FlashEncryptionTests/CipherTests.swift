import ESPCore
import FlashEncryption
import Foundation
import Testing
import TestSupport

@Suite("Flash ciphers")
struct CipherTests {
    static let counting32 = [UInt8](0..<32)
    static let counting64 = [UInt8](0..<64)

    @Test("spec vectors (re-confirmed with espsecure 5.6.0)")
    func specVectors() throws {
        let esp32 = try FlashCipher(key: FlashEncryptionKey(Self.counting32, scheme: .esp32Tweak))
        #expect(hex(try esp32.encrypt([UInt8](0..<64), at: 0x1000))
                == "a354ea55e9d9d83cd027e80a6b03a53cfc3886d3f8090e2da27c51dbc4a61351"
                + "cdf9f00c743bd33742e28544ffad8d92783779f1e794e3744df99032250a8f5a")
        #expect(hex(try esp32.encrypt([UInt8](0..<32), at: 0x10020))
                == "debcdd986a12b1d93469641a1c04d9ca8e65b794ff1149e67e8e6f49c3f9c37f")
        let xts128 = try FlashCipher(key: FlashEncryptionKey(Self.counting32, scheme: .xtsAES))
        #expect(hex(try xts128.encrypt([UInt8](0..<128), at: 0x10000))
                == "2c2a288e9e96647587883012b81d17396a80540eebdd2f9e323e7017d6d650de85f9cf9ddaf2b7305d5d979d8eeb5c59"
                + "417a69f0edda6d92f7085e228a6cda841c2bb5568a7565205c4ae3708ba3554824880706cd62f7ad4c48d6569bc67169"
                + "806d15e666da7ec7271d3e2f6b2b18c423cd8de5f72afcda58ee8fed7add2ae0")
        let xts256 = try FlashCipher(key: FlashEncryptionKey(Self.counting64, scheme: .xtsAES))
        #expect(hex(try xts256.encrypt([UInt8](0..<128), at: 0x10000))
                == "ed032950be116e860729b191d93e3cc2541e5722eec0a990b48e4eb691b0acf51af25657c4eb266eb201583254151c2f"
                + "e5f797b44e38a2971b56fed59a4773df1eb38c681241e42d81b1bbc8ff3081ed922b5f2d0692b3eca0c409192262af69"
                + "c966f8ff1947cbf5ded6d635149c13363341544f3ff5a79fd038a5637e016f3d")
    }

    @Test("ESP32 tweaked block key for 0x1000 (spec 1.5)")
    func tweakedKey() throws {
        let tweak = try ESP32FlashTweak(flashCryptConfig: 0xF)
        let key = try FlashEncryptionKey(Self.counting32, scheme: .esp32Tweak)
        #expect(tweak.blockKey(for: key, address: 0x1000).map(hex)
                == "0011020104054617080b0a0b4c0d06071010121334151217181b1a1b5c1d161f")
        // Both halves of a 32-byte block share the key; config 0 leaves the key alone.
        #expect(tweak.blockKey(for: key, address: 0x1010) == tweak.blockKey(for: key, address: 0x1000))
        #expect(try ESP32FlashTweak(flashCryptConfig: 0).blockKey(for: key, address: 0x1234560) == Self.counting32)
        let xtsKey = try FlashEncryptionKey(Self.counting32, scheme: .xtsAES)
        #expect(tweak.blockKey(for: xtsKey, address: 0) == nil)
    }

    /// The tweak pattern table of spec 1.3: the address bit that flips key bit n.
    static let pattern: [Int] = {
        let full = Array((5...23).reversed())
        var p: [Int] = []
        p += full + full + full + Array((5...14).reversed())
        p += full + full + full + Array((5...12).reversed())
        p += full + full + full + Array((5...10).reversed())
        p += full + full + full + Array((5...8).reversed())
        return p
    }()

    @Test("below 16 MiB the key tweak equals the spec's bit-pattern table, for every FLASH_CRYPT_CONFIG")
    func tweakMatchesPatternTable() throws {
        #expect(Self.pattern.count == 256)
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let ranges = [0..<67, 67..<132, 132..<195, 195..<256]
        for conf in 0...15 {
            let tweak = try ESP32FlashTweak(flashCryptConfig: conf)
            for _ in 0..<20 {
                let keyBytes = rng.bytes(32)
                let key = try FlashEncryptionKey(keyBytes, scheme: .esp32Tweak)
                let address = 32 * Int.random(in: 0..<(1 << 19), using: &rng)
                var expected = keyBytes
                for n in 0..<256 where ranges.enumerated().contains(where: { conf & (1 << $0.offset) != 0 && $0.element.contains(n) }) {
                    if address & (1 << Self.pattern[n]) != 0 { expected[n / 8] ^= UInt8(0x80 >> (n % 8)) }
                }
                #expect(tweak.blockKey(for: key, address: address) == expected,
                        "seed \(seed) conf \(conf) address \(NumberParsing.hex(address))")
            }
        }
    }

    @Test("round trip: decrypt(encrypt(x)) == x for every scheme and key size, at odd addresses")
    func roundTrip() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let variants: [(FlashEncryptionScheme, Int)] = [(.esp32Tweak, 32), (.esp32Tweak, 24), (.xtsAES, 32), (.xtsAES, 64), (.xtsAES, 16)]
        for (i, (scheme, keyLength)) in (variants + variants + variants).enumerated() {
            let cipher = try FlashCipher(key: FlashEncryptionKey(rng.bytes(keyLength), scheme: scheme),
                                         flashCryptConfig: Int.random(in: 0...15, using: &rng))
            let address = 16 * Int.random(in: 0..<(1 << 26), using: &rng)
            let plain = rng.bytes(16 * Int.random(in: 1...200, using: &rng))
            let stored = try cipher.encrypt(plain, at: address)
            #expect(stored != plain)
            #expect(try cipher.decrypt(stored, at: address) == plain, "seed \(seed) case \(i) \(scheme) \(keyLength)")
            // In-place variant gives the same bytes.
            var buffer = plain
            try buffer.withUnsafeMutableBytes { try cipher.apply(.encrypt, inPlace: $0, at: address) }
            #expect(buffer == stored, "seed \(seed) case \(i) in place")
        }
    }

    @Test("a chunk's ciphertext depends only on its own address (splitting data gives the same bytes)")
    func splitConsistency() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for scheme in [FlashEncryptionScheme.esp32Tweak, .xtsAES] {
            let cipher = try FlashCipher(key: FlashEncryptionKey(rng.bytes(32), scheme: scheme))
            let data = rng.bytes(1024)
            let address = 0xFFFF00 // straddles 16 MiB
            let whole = try cipher.encrypt(data, at: address)
            let cut = 16 * Int.random(in: 1..<64, using: &rng)
            let parts = try cipher.encrypt(Array(data[..<cut]), at: address)
                + cipher.encrypt(Array(data[cut...]), at: address + cut)
            #expect(whole == parts, "seed \(seed) \(scheme) cut \(cut)")
        }
    }

    @Test("buffer-to-buffer API: same bytes as the array API, also for identical and overlapping buffers")
    func bufferAPI() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for scheme in [FlashEncryptionScheme.esp32Tweak, .xtsAES] {
            let cipher = try FlashCipher(key: FlashEncryptionKey(rng.bytes(32), scheme: scheme))
            let data = rng.bytes(512)
            let expected = try cipher.encrypt(Array(data[0..<496]), at: 0x3010)
            var out = [UInt8](repeating: 0, count: 496)
            try data.withUnsafeBytes { src in
                try out.withUnsafeMutableBytes { dst in
                    try cipher.apply(.encrypt, from: UnsafeRawBufferPointer(rebasing: src[0..<496]), to: dst, at: 0x3010)
                }
            }
            #expect(out == expected, "seed \(seed) \(scheme)")
            // Overlapping: source bytes 0..<496, destination bytes 16..<512 of the same buffer.
            var shared = data
            try shared.withUnsafeMutableBytes { raw in
                try cipher.apply(.encrypt, from: UnsafeRawBufferPointer(rebasing: raw[0..<496]),
                                 to: UnsafeMutableRawBufferPointer(rebasing: raw[16..<512]), at: 0x3010)
            }
            #expect(Array(shared[16...]) == expected, "seed \(seed) \(scheme) overlapping")
            #expect(throws: FlashEncryptionError.outputSizeMismatch(input: 496, output: 480)) {
                try data.withUnsafeBytes { src in
                    try out.withUnsafeMutableBytes { dst in
                        try cipher.apply(.encrypt, from: UnsafeRawBufferPointer(rebasing: src[0..<496]),
                                         to: UnsafeMutableRawBufferPointer(rebasing: dst[0..<480]), at: 0x3010)
                    }
                }
            }
        }
    }

    @Test("invalid input is rejected with typed errors")
    func invalidInput() throws {
        let cipher = try FlashCipher(key: FlashEncryptionKey(Self.counting32, scheme: .esp32Tweak))
        #expect(throws: FlashEncryptionError.misalignedAddress(address: 0x1008, alignment: 16)) {
            try cipher.encrypt([UInt8](repeating: 0, count: 32), at: 0x1008)
        }
        #expect(throws: FlashEncryptionError.lengthNotMultipleOf16(length: 33)) {
            try cipher.encrypt([UInt8](repeating: 0, count: 33), at: 0x1000)
        }
        #expect(throws: FlashEncryptionError.emptyData) { try cipher.decrypt([], at: 0) }
        #expect(throws: FlashEncryptionError.addressOutOfRange(address: 0xFFFF_FFF0, length: 32)) {
            try cipher.encrypt([UInt8](repeating: 0, count: 32), at: 0xFFFF_FFF0)
        }
        #expect(throws: FlashEncryptionError.misalignedAddress(address: -16, alignment: 16)) {
            try cipher.encrypt([UInt8](repeating: 0, count: 32), at: -16)
        }
        #expect(throws: FlashEncryptionError.invalidFlashCryptConfig(16)) {
            try FlashCipher(key: FlashEncryptionKey(Self.counting32, scheme: .esp32Tweak), flashCryptConfig: 16)
        }
    }

    @Test("random lengths and addresses: a result of the same length or a typed error, never a crash")
    func randomInputsNeverCrash() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let ciphers = [try FlashCipher(chip: .esp32, key: rng.bytes(32), flashCryptConfig: 7),
                       try FlashCipher(chip: .esp32s3, key: rng.bytes(64))]
        for i in 0..<300 {
            let data = rng.bytes(Int.random(in: 0...300, using: &rng))
            let address = Int.random(in: -64...(1 << 33), using: &rng) & ~(i % 3 == 0 ? 0xF : 0)
            for cipher in ciphers {
                do {
                    let out = try cipher.apply(i % 2 == 0 ? .encrypt : .decrypt, to: data, at: address)
                    #expect(out.count == data.count && data.count % 16 == 0 && address % 16 == 0, "seed \(seed) case \(i)")
                } catch let error as FlashEncryptionError {
                    #expect(!error.diagnostic.message.isEmpty)
                }
            }
        }
    }

    @Test("key lengths: espsecure's per scheme, the eFuse's per chip; random key bytes never crash")
    func keyLengths() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for n in 0...80 {
            let k = rng.bytes(n)
            #expect(((try? FlashEncryptionKey(k, scheme: .esp32Tweak)) != nil) == [24, 32].contains(n), "\(n)")
            #expect(((try? FlashEncryptionKey(k, scheme: .xtsAES)) != nil) == [16, 32, 64].contains(n), "\(n)")
            #expect(((try? FlashCipher(chip: .esp32, key: k)) != nil) == [24, 32].contains(n), "\(n)")
            #expect(((try? FlashCipher(chip: .esp32s3, key: k)) != nil) == [32, 64].contains(n), "\(n)")
            #expect(((try? FlashCipher(chip: .esp32c3, key: k)) != nil) == (n == 32), "\(n)")
        }
        let error = try #require(throws: FlashEncryptionError.self) { try FlashCipher(chip: .esp32c3, key: Self.counting64) }
        let text = error.diagnostic.description
        #expect(text.contains("64 bytes") && text.contains("32 bytes (XTS-AES-128)") && text.contains("ESP32-C3"), "\(text)")
        // A key never shows its bytes.
        let key = try FlashEncryptionKey([UInt8](repeating: 0xAB, count: 32), scheme: .esp32Tweak)
        #expect(!String(describing: key).lowercased().contains("ab, ") && !String(reflecting: key).contains("171"))
        #expect(!"\(key)".contains("abab"))
    }

    @Test("24-byte ESP32 keys expand as K + K[8..<16]")
    func keyExpansionRules() throws {
        let k24 = [UInt8](100..<124)
        let expanded = k24 + k24[8..<16]
        let a = try FlashCipher(key: FlashEncryptionKey(k24, scheme: .esp32Tweak))
        let b = try FlashCipher(key: FlashEncryptionKey(expanded, scheme: .esp32Tweak))
        let data = [UInt8](repeating: 0x5A, count: 96)
        #expect(try a.encrypt(data, at: 0x2000) == b.encrypt(data, at: 0x2000))
    }

    @Test("flash plans: every region encrypted at its own address; overlaps rejected")
    func plans() throws {
        let cipher = try FlashCipher(chip: .esp32, key: Self.counting32)
        let plan = [FlashRegion(address: 0x1000, data: [UInt8](repeating: 1, count: 64), label: "bootloader"),
                    FlashRegion(address: 0x8000, data: [UInt8](repeating: 2, count: 0x1000), label: "partition table")]
        let out = try cipher.apply(.encrypt, to: plan)
        #expect(out.map(\.label) == plan.map(\.label) && out.map(\.address) == plan.map(\.address))
        #expect(out[0].data == (try cipher.encrypt(plan[0].data, at: 0x1000)))
        #expect(out[1].data == (try cipher.encrypt(plan[1].data, at: 0x8000)))
        #expect(try cipher.apply(.decrypt, to: out) == plan)
        let overlapping = plan + [FlashRegion(address: 0x1020, data: [UInt8](repeating: 3, count: 16))]
        #expect(throws: FlashEncryptionError.overlappingRegions(first: 0x1000, second: 0x1020)) {
            try cipher.apply(.encrypt, to: overlapping)
        }
    }
}
