import ESPCore
import FlashEncryption
import Foundation
import Testing
import TestSupport

@Suite("flash-encryption CLI")
struct CLITests {
    let dir: URL

    init() throws { dir = try TestEnvironment.temporaryDirectory("flashenc-cli-errors") }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        try writeFile(bytes, dir.appendingPathComponent(name))
        return path(name)
    }

    @Test("keygen: 256/512 bits, mode 0600, random, never printed, no silent overwrite")
    func keygen() throws {
        let a = path("a.bin"), b = path("b.bin"), c = path("c.bin")
        let r1 = try Espforge.run(["flash-encryption", "keygen", "-o", a])
        #expect(r1.status == 0, "\(r1.err)")
        let r2 = try Espforge.run(["flash-encryption", "keygen", "--bits", "256", "-o", b])
        #expect(r2.status == 0)
        let r3 = try Espforge.run(["flash-encryption", "keygen", "--bits", "512", "--output", c])
        #expect(r3.status == 0)
        let ka = try readFile(URL(fileURLWithPath: a)), kb = try readFile(URL(fileURLWithPath: b))
        let kc = try readFile(URL(fileURLWithPath: c))
        #expect(ka.count == 32 && kb.count == 32 && kc.count == 64)
        #expect(ka != kb)
        for (p, k, out) in [(a, ka, r1.out), (c, kc, r3.out)] {
            let mode = try FileManager.default.attributesOfItem(atPath: p)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            #expect(!out.lowercased().contains(hex(Array(k.prefix(4)))))
        }
        let again = try Espforge.run(["flash-encryption", "keygen", "-o", a])
        #expect(again.status == 1 && again.err.contains(a) && again.err.contains("--force"))
        #expect(try readFile(URL(fileURLWithPath: a)) == ka)
        let forced = try Espforge.run(["flash-encryption", "keygen", "-o", a, "--force"])
        let replaced = try readFile(URL(fileURLWithPath: a))
        #expect(forced.status == 0 && replaced != ka)
        let bad = try Espforge.run(["flash-encryption", "keygen", "--bits", "128", "-o", path("d.bin")])
        #expect(bad.status == 1 && bad.err.contains("256") && bad.err.contains("512"))
        #expect(!FileManager.default.fileExists(atPath: path("d.bin")))
    }

    func encrypt(_ args: [String]) throws -> ProcessResult {
        try Espforge.run(["flash-encryption", "encrypt"] + args)
    }

    @Test("bad keys: wrong length and unreadable files are named with the expected lengths")
    func badKeys() throws {
        let input = try write([UInt8](repeating: 0, count: 64), "in.bin")
        let short = try write([UInt8](repeating: 1, count: 20), "short.bin")
        let long = try write([UInt8](repeating: 1, count: 64), "long.bin")
        var r = try encrypt(["--chip", "esp32", "--key", short, "--address", "0x1000", input, "-o", path("o.bin")])
        #expect(r.status == 1)
        #expect(r.err.contains(short) && r.err.contains("20 bytes") && r.err.contains("32 bytes") && r.err.contains("24 bytes"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", long, "--address", "0x1000", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("64 bytes") && r.err.contains("ESP32"), "\(r.err)")
        r = try encrypt(["--chip", "esp32c3", "--key", long, "--address", "0x1000", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("ESP32-C3") && r.err.contains("32 bytes (XTS-AES-128)"), "\(r.err)")
        r = try encrypt(["--chip", "esp32s3", "--key", short, "--address", "0x1000", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("32 bytes (XTS-AES-128) or 64 bytes (XTS-AES-256)"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", path("missing.bin"), "--address", "0x1000", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains(path("missing.bin")) && r.err.contains("no such file"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", dir.path, "--address", "0x1000", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("directory"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: path("o.bin")))
    }

    @Test("bad addresses, lengths and options give one clear error and no output")
    func badInput() throws {
        let key = try write([UInt8](0..<32), "key.bin")
        let input = try write([UInt8](repeating: 0, count: 64), "in.bin")
        let odd = try write([UInt8](repeating: 0, count: 50), "odd.bin")
        let empty = try write([], "empty.bin")
        var r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0x1008", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("0x00001008") && r.err.contains("multiple of 16"), "\(r.err)")
        r = try encrypt(["--chip", "esp32s3", "--key", key, "--address", "0x10004", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("multiple of 16"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0x1000", odd, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains(odd) && r.err.contains("50") && r.err.contains("never pads"), "\(r.err)")
        r = try Espforge.run(["flash-encryption", "decrypt", "--chip", "esp32s3", "--key", key, "--address", "0", odd, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("multiple of 16"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0x1000", empty, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("empty"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0x1000", "--flash-crypt-conf", "0x10", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("0x0..0xF"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0xFFFFFFF0", input, "-o", path("o.bin")])
        #expect(r.status == 1 && r.err.contains("32-bit"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: path("o.bin")))
        // Usage mistakes: exit 64 with a message.
        r = try encrypt(["--chip", "esp32s3", "--key", key, "--address", "0", "--flash-crypt-conf", "0xF", input, "-o", path("o.bin")])
        #expect(r.status == 64 && r.err.contains("ESP32 only"), "\(r.err)")
        r = try encrypt(["--chip", "esp8266", "--key", key, "--address", "0", input, "-o", path("o.bin")])
        #expect(r.status == 64 && r.err.contains("esp32s3"), "\(r.err)")
        r = try encrypt(["--chip", "esp32", "--key", key, "--address", "banana", input, "-o", path("o.bin")])
        #expect(r.status == 64 && r.err.contains("banana"), "\(r.err)")
        // Never overwrite the key or the input.
        r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0", input, "-o", key])
        #expect(r.status == 1 && r.err.contains("key file"), "\(r.err)")
        #expect(try readFile(URL(fileURLWithPath: key)) == [UInt8](0..<32))
        r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0", input, "-o", input])
        #expect(r.status == 1 && r.err.contains("input file"), "\(r.err)")
    }

    @Test("large inputs stream through the CLI in chunks with the same bytes as the library")
    func largeInput() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let keyBytes = rng.bytes(64)
        let key = try write(keyBytes, "key64.bin"), key32 = try write(Array(keyBytes[0..<32]), "key32.bin")
        let data = rng.bytes(600 * 1024 + 48)
        let input = try write(data, "large.bin")
        for (chip, k, kb) in [(ChipSpec.esp32, key32, Array(keyBytes[0..<32])), (.esp32s3, key, keyBytes)] {
            for op in ["encrypt", "decrypt"] {
                let out = path("large-\(chip.name)-\(op).bin")
                let r = try Espforge.run(["flash-encryption", op, "--chip", chip.name, "--key", k, "--address", "0x12350", input, "-o", out])
                #expect(r.status == 0, "\(r.err)")
                let cipher = try FlashCipher(chip: chip, key: kb)
                let expected = try cipher.apply(op == "encrypt" ? .encrypt : .decrypt, to: data, at: 0x12350)
                #expect(try readFile(URL(fileURLWithPath: out)) == expected, "seed \(seed) \(chip.name) \(op)")
            }
        }
    }

    @Test("input from a pipe (not a regular file) gives the same bytes")
    func pipeInput() throws {
        let keyBytes = [UInt8](0..<32)
        let key = try write(keyBytes, "pk.bin")
        let data = [UInt8]((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let r = try Espforge.run(["flash-encryption", "encrypt", "--chip", "esp32", "--key", key, "--address", "0x8000",
                                  "/dev/stdin", "-o", path("piped.bin")], stdin: data)
        #expect(r.status == 0, "\(r.err)")
        let expected = try FlashCipher(chip: .esp32, key: keyBytes).encrypt(data, at: 0x8000)
        #expect(try readFile(URL(fileURLWithPath: path("piped.bin"))) == expected)
    }

    @Test("success output and --json never contain key material")
    func summary() throws {
        let keyBytes = [UInt8](repeating: 0xC3, count: 32)
        let key = try write(keyBytes, "key.bin")
        let input = try write([UInt8](repeating: 0, count: 64), "in.bin")
        let r = try encrypt(["--chip", "esp32", "--key", key, "--address", "0x1000", input, "-o", path("o.bin"), "--json"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("\"flashCryptConfig\" : \"0xF\"") && r.out.contains("\"bytes\" : 64"), "\(r.out)")
        #expect(!r.out.lowercased().contains("c3c3") && !r.err.lowercased().contains("c3c3"))
    }

    @Test("every flash-encryption command has an abstract, a discussion and an example")
    func help() throws {
        for sub in ["", "keygen", "encrypt", "decrypt", "bench"] {
            let r = try Espforge.run(["flash-encryption"] + (sub.isEmpty ? [] : [sub]) + ["--help"])
            #expect(r.status == 0)
            #expect(r.out.contains("Example:") && r.out.contains("OVERVIEW:"), "\(sub): \(r.out)")
        }
    }
}
