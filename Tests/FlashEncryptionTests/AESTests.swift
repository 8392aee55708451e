import CAES
import ESPCore
import FlashEncryption
import Testing
import TestSupport

@Suite("AES core")
struct AESTests {
    /// FIPS-197 known answers: (key, plaintext, ciphertext).
    static let vectors: [(String, String, String)] = [
        // Appendix B (AES-128 cipher example)
        ("2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734", "3925841d02dc09fbdc118597196a0b32"),
        // Appendix C.1 (AES-128)
        ("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff", "69c4e0d86a7b0430d8cdb78070b4c55a"),
        // Appendix C.3 (AES-256)
        ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
         "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089"),
    ]

    @Test("FIPS-197 known answers, both directions, every backend", arguments: [AESBackend.portable, .aesNI, .automatic])
    func knownAnswers(backend: AESBackend) throws {
        for (key, plain, cipher) in Self.vectors {
            let aes = try #require(AES(key: bytes(hex: key), backend: backend))
            #expect(aes.encryptBlock(bytes(hex: plain)).map(hex) == cipher, "key \(key)")
            #expect(aes.decryptBlock(bytes(hex: cipher)).map(hex) == plain, "key \(key)")
        }
    }

    @Test("FIPS-197 Appendix A key expansion: last round keys")
    func keyExpansion() {
        for backend in [Int32(CAES_BACKEND_PORTABLE), Int32(CAES_BACKEND_AESNI)] {
            var s = caes_schedule()
            let k128 = bytes(hex: "2b7e151628aed2a6abf7158809cf4f3c")
            #expect(k128.withUnsafeBufferPointer { caes_expand_key(&s, $0.baseAddress, 16, backend) } == 0)
            let enc128 = withUnsafeBytes(of: s.enc) { Array($0) }
            #expect(s.rounds == 10)
            #expect(hex(Array(enc128[160..<176])) == "d014f9a8c9ee2589e13f0cc8b6630ca6")
            let k256 = bytes(hex: "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            #expect(k256.withUnsafeBufferPointer { caes_expand_key(&s, $0.baseAddress, 32, backend) } == 0)
            let enc256 = withUnsafeBytes(of: s.enc) { Array($0) }
            #expect(s.rounds == 14)
            #expect(hex(Array(enc256[224..<240])) == "fe4890d1e6188d0b046df344706c631e")
        }
    }

    @Test("key and block lengths other than 16/32 and 16 are rejected")
    func badLengths() {
        for n in [0, 1, 15, 17, 24, 31, 33, 64] { #expect(AES(key: [UInt8](repeating: 1, count: n)) == nil, "\(n)") }
        let aes = AES(key: [UInt8](repeating: 0, count: 16))
        #expect(aes?.encryptBlock([1, 2, 3]) == nil)
        #expect(aes?.decryptBlock([UInt8](repeating: 0, count: 17)) == nil)
    }

    @Test("AES-NI and portable agree on random keys and blocks")
    func backendsAgree() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        if !AES.hardwareAvailable { print("note: no AES-NI on this CPU; both backends run the portable code") }
        for i in 0..<200 {
            let key = rng.bytes(i % 2 == 0 ? 16 : 32)
            let block = rng.bytes(16)
            let a = try #require(AES(key: key, backend: .portable))
            let b = try #require(AES(key: key, backend: .aesNI))
            #expect(a.encryptBlock(block) == b.encryptBlock(block), "seed \(seed) case \(i)")
            #expect(a.decryptBlock(block) == b.decryptBlock(block), "seed \(seed) case \(i)")
            #expect(a.decryptBlock(a.encryptBlock(block) ?? []) == block, "seed \(seed) case \(i)")
        }
    }

    @Test("bulk ESP32 and XTS paths: AES-NI and portable agree on random data and addresses")
    func bulkBackendsAgree() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for i in 0..<40 {
            let xts = i % 2 == 1
            let keyBytes = rng.bytes(xts ? (i % 4 == 1 ? 32 : 64) : 32)
            let scheme: FlashEncryptionScheme = xts ? .xtsAES : .esp32Tweak
            let conf = Int.random(in: 0...15, using: &rng)
            let address = 16 * Int.random(in: 0..<(1 << 21), using: &rng)
            let data = rng.bytes(16 * Int.random(in: 1...300, using: &rng))
            let key = try FlashEncryptionKey(keyBytes, scheme: scheme)
            let p = try FlashCipher(key: key, flashCryptConfig: conf, backend: .portable)
            let n = try FlashCipher(key: key, flashCryptConfig: conf, backend: .aesNI)
            for direction in [FlashCipherDirection.encrypt, .decrypt] {
                let a = try p.apply(direction, to: data, at: address)
                let b = try n.apply(direction, to: data, at: address)
                #expect(a == b, "seed \(seed) case \(i) \(direction) xts=\(xts) address \(address) length \(data.count)")
            }
        }
    }
}
