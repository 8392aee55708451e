import ESPCore
import FlashEncryption
import Foundation
import Testing
import TestSupport

@Suite("Differential against espsecure 5.6.0")
struct OracleTests {
    struct Case {
        var scheme: FlashEncryptionScheme
        var key: [UInt8]
        var address: Int
        var conf: Int
        var direction: FlashCipherDirection
        var data: [UInt8]
    }

    /// Addresses (kind 0-4, round robin) that exercise the interesting places: 32-byte block halves, 128-byte XTS units,
    /// the 16 MiB point where the ESP32 tweak pattern wraps, and high flash.
    static func address(_ rng: inout SeededRandom, length: Int, kind: Int) -> Int {
        switch kind % 5 {
        case 0: return 16 * Int.random(in: 0..<0x1000, using: &rng)                       // low flash
        case 1: return (1 << 24) - 16 * Int.random(in: 1...(length / 16 + 2), using: &rng) // straddles 16 MiB
        case 2: return 16 * Int.random(in: 0..<(1 << 22), using: &rng)                    // anywhere < 64 MiB
        case 3: return (1 << 24) + 16 * Int.random(in: 0..<(1 << 20), using: &rng)        // above 16 MiB
        default: return 16 * Int.random(in: 0..<((1 << 28) - length / 16 - 1), using: &rng) // up to 4 GiB
        }
    }

    static func randomCases(seed: UInt64) -> [Case] {
        var rng = SeededRandom(seed: seed)
        var cases: [Case] = []
        // ESP32: every FLASH_CRYPT_CONFIG value, both directions, 32- and 24-byte keys.
        for conf in 0...15 {
            for direction in [FlashCipherDirection.encrypt, .decrypt] where direction == .encrypt || conf % 3 == 0 {
                let length = 16 * Int.random(in: 1...160, using: &rng)
                cases.append(Case(scheme: .esp32Tweak, key: rng.bytes(conf % 5 == 4 ? 24 : 32),
                                  address: address(&rng, length: length, kind: cases.count), conf: conf, direction: direction,
                                  data: rng.bytes(length)))
            }
        }
        // XTS-AES-128, XTS-AES-256 and the 128-bit SHA-256-extended key, both directions.
        for (i, keyLength) in [32, 64, 32, 64, 32, 64, 32, 64, 16, 32, 64, 16].enumerated() {
            for direction in [FlashCipherDirection.encrypt, .decrypt] {
                let length = 16 * Int.random(in: 1...200, using: &rng)
                cases.append(Case(scheme: .xtsAES, key: rng.bytes(keyLength),
                                  address: i < 2 ? 0x10010 : address(&rng, length: length, kind: cases.count), conf: 0xF,
                                  direction: direction, data: rng.bytes(length)))
            }
        }
        return cases
    }

    @Test("randomized keys, addresses, configs: byte-identical in both directions",
          .enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func randomized() throws {
        let seed = testSeed()
        let cases = Self.randomCases(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("flashenc-oracle")
        defer { try? FileManager.default.removeItem(at: dir) }
        var batch: [OracleCase] = []
        for (i, c) in cases.enumerated() {
            let key = dir.appendingPathComponent("key\(i).bin"), input = dir.appendingPathComponent("in\(i).bin")
            try writeFile(c.key, key)
            try writeFile(c.data, input)
            batch.append(OracleCase(op: c.direction.rawValue, key: key.path, input: input.path,
                                    output: dir.appendingPathComponent("out\(i).bin").path,
                                    address: c.address, conf: c.conf, xts: c.scheme == .xtsAES))
        }
        try runOracleBatch(batch, in: dir)
        for (i, c) in cases.enumerated() {
            let expected = try readFile(URL(fileURLWithPath: batch[i].output))
            let cipher = try FlashCipher(key: FlashEncryptionKey(c.key, scheme: c.scheme), flashCryptConfig: c.conf)
            let actual = try cipher.apply(c.direction, to: c.data, at: c.address)
            #expect(actual == expected, """
                seed \(seed) case \(i): \(c.scheme) \(c.direction) key \(c.key.count) bytes, \
                address \(NumberParsing.hex(c.address)), conf \(c.conf), length \(c.data.count)
                """)
        }
        #expect(cases.count >= 40)
    }

    @Test("the espforge CLI matches the espsecure CLI (ESP32 and XTS, encrypt and decrypt)",
          .enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func cliAgainstCLI() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("flashenc-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let runs: [(chip: String, keyLength: Int, address: Int, conf: Int?, op: String)] = [
            ("esp32", 32, 0x10000, nil, "encrypt"), ("esp32", 32, 0xFFFFD0, 0x5, "decrypt"),
            ("esp32", 24, 0x1010, 0xA, "encrypt"),
            ("esp32s3", 64, 0x20040, nil, "encrypt"), ("esp32c3", 32, 0x0, nil, "decrypt"),
        ]
        for (i, r) in runs.enumerated() {
            let key = dir.appendingPathComponent("k\(i).bin"), input = dir.appendingPathComponent("i\(i).bin")
            let mine = dir.appendingPathComponent("mine\(i).bin"), theirs = dir.appendingPathComponent("theirs\(i).bin")
            try writeFile(rng.bytes(r.keyLength), key)
            try writeFile(rng.bytes(16 * Int.random(in: 1...400, using: &rng)), input)
            var args = ["flash-encryption", r.op, "--chip", r.chip, "--key", key.path,
                        "--address", NumberParsing.hex(r.address), input.path, "-o", mine.path]
            var oracleArgs = ["\(r.op)-flash-data", "--keyfile", key.path, "--address", String(r.address),
                              "-o", theirs.path]
            if let conf = r.conf {
                args += ["--flash-crypt-conf", "0x" + String(conf, radix: 16)]
                oracleArgs += ["--flash-crypt-conf", String(conf)]
            }
            if r.chip != "esp32" { oracleArgs.append("--aes-xts") }
            oracleArgs.append(input.path)
            let ours = try Espforge.run(args)
            #expect(ours.status == 0, "\(ours.err)")
            let ref = try Oracle.run("espsecure", oracleArgs)
            #expect(ref.status == 0, "\(ref.err)")
            #expect(try readFile(mine) == readFile(theirs), "seed \(seed) run \(i) \(r)")
        }
    }

    /// Espressif's own encrypted files (fixtures/espressif/secure, see INDEX.md).
    static let fixtures: [(plain: String, encrypted: String, key: String, address: Int, conf: Int, chip: ChipSpec)] = [
        ("bootloader.bin", "bootloader-encrypted.bin", "256bit_key.bin", 0x1000, 0xF, .esp32),
        ("bootloader.bin", "bootloader-encrypted-conf0.bin", "256bit_key.bin", 0x1000, 0x0, .esp32),
        ("bootloader.bin", "bootloader-encrypted-conf3.bin", "256bit_key.bin", 0x1000, 0x3, .esp32),
        ("bootloader.bin", "bootloader-encrypted-conf9.bin", "256bit_key.bin", 0x1000, 0x9, .esp32),
        ("bootloader.bin", "bootloader-encrypted-confc.bin", "256bit_key.bin", 0x1000, 0xC, .esp32),
        ("bootloader.bin", "bootloader-encrypted-aes-xts.bin", "256bit_key.bin", 0x1000, 0xF, .esp32c3),
        ("hello-world-signed.bin", "hello-world-signed-encrypted.bin", "ef-flashencryption-key.bin", 0x20000, 0xF, .esp32),
        ("hello-world-signed.bin", "hello-world-signed-encrypted-aes-xts.bin", "ef-flashencryption-key.bin", 0x20000, 0xF, .esp32s3),
        ("hello-world-signed.bin", "hello-world-signed-encrypted-aes-xts-256.bin", "512bit_key.bin", 0x10000, 0xF, .esp32s3),
    ]

    @Test("Espressif vectors: encrypt gives their file, decrypt gives the plaintext back",
          .enabled(if: TestEnvironment.fixturesOrCI, Comment(rawValue: "fixtures missing: ../shared/fixtures")))
    func espressifVectors() throws {
        for f in Self.fixtures {
            let plain = try TestEnvironment.fixtureBytes("secure/" + f.plain)
            let encrypted = try TestEnvironment.fixtureBytes("secure/" + f.encrypted)
            let key = try TestEnvironment.fixtureBytes("secure/" + f.key)
            for backend in [AESBackend.aesNI, .portable] {
                let cipher = try FlashCipher(chip: f.chip, key: key, flashCryptConfig: f.conf, backend: backend)
                #expect(try cipher.encrypt(plain, at: f.address) == encrypted, "\(f.encrypted) \(backend)")
                #expect(try cipher.decrypt(encrypted, at: f.address) == plain, "\(f.encrypted) \(backend)")
            }
        }
    }

    @Test("Espressif vectors through the CLI",
          .enabled(if: TestEnvironment.fixturesOrCI, Comment(rawValue: "fixtures missing: ../shared/fixtures")))
    func espressifVectorsCLI() throws {
        let dir = try TestEnvironment.temporaryDirectory("flashenc-fixtures")
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, f) in Self.fixtures.enumerated() where [0, 2, 5, 8].contains(i) {
            func args(_ op: String, _ input: String, _ output: String) -> [String] {
                var a = ["flash-encryption", op, "--chip", f.chip.name, "--key", TestEnvironment.fixture("secure/" + f.key).path,
                         "--address", NumberParsing.hex(f.address), input, "-o", output]
                if f.chip.flashEncryption == .esp32Tweak { a += ["--flash-crypt-conf", String(f.conf)] }
                return a
            }
            let out = dir.appendingPathComponent("out\(i).bin"), back = dir.appendingPathComponent("back\(i).bin")
            let e = try Espforge.run(args("encrypt", TestEnvironment.fixture("secure/" + f.plain).path, out.path))
            #expect(e.status == 0, "\(e.err)")
            #expect(try readFile(out) == TestEnvironment.fixtureBytes("secure/" + f.encrypted), "\(f.encrypted)")
            let d = try Espforge.run(args("decrypt", out.path, back.path))
            #expect(d.status == 0, "\(d.err)")
            #expect(try readFile(back) == TestEnvironment.fixtureBytes("secure/" + f.plain), "\(f.plain) decrypt")
        }
    }
}
