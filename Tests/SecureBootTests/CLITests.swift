import Crypto
import _CryptoExtras
import ESPCore
import Foundation
import Testing
import TestSupport
@testable import SecureBoot

@Suite("secure-boot command line")
struct CLITests {
    @Test("Every subcommand has help with an example")
    func help() throws {
        for sub in ["keygen", "sign", "digest-to-sign", "verify", "info", "digest"] {
            let r = try Espforge.run(["secure-boot", sub, "--help"])
            #expect(r.status == 0)
            #expect(r.out.contains("Example:"), "\(sub) --help has an example")
        }
        #expect(try Espforge.run(["secure-boot", "--help"]).out.contains("Example:"))
    }

    /// Runs espforge expecting exit 1 and a message containing `needle`.
    func expectError(_ args: [String], _ needle: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try Espforge.run(args)
        #expect(r.status == 1, "exit status \(r.status) for \(args): \(r.err)", sourceLocation: sourceLocation)
        #expect(r.err.hasPrefix("error: "), "\(r.err)", sourceLocation: sourceLocation)
        #expect(r.err.contains(needle), "expected \"\(needle)\" in: \(r.err)", sourceLocation: sourceLocation)
        #expect(!r.err.contains("Fatal error"), sourceLocation: sourceLocation)
    }

    @Test("Bad keys, chips and files give one clear error and exit 1")
    func errors() throws {
        let s = try Scratch(); defer { s.remove() }
        let image = try s.write([UInt8](repeating: 0xAA, count: 5000), "in.bin")
        let rsa2048 = try s.write(Array(try _RSA.Signing.PrivateKey(keySize: .bits2048).pemRepresentation.utf8), "rsa2048.pem")
        let p256 = try s.write(Array(SigningKey.p256(P256.Signing.PrivateKey()).pemRepresentation.utf8), "p256.pem")
        let p521 = try s.write(Array(P521.Signing.PrivateKey().pemRepresentation.utf8), "p521.pem")
        let junk = try s.write(Array("not a key".utf8), "junk.pem")
        let out = s.path("out.bin")
        try expectError(["secure-boot", "sign", "--key", rsa2048, image, "-o", out], "2048 bits")
        try expectError(["secure-boot", "sign", "--key", p256, image, "-o", out], "not valid for ESP32")
        try expectError(["secure-boot", "sign", "--key", p521, "--chip", "generic", image, "-o", out], "unsupported key")
        try expectError(["secure-boot", "sign", "--key", junk, image, "-o", out], "not a PEM key")
        try expectError(["secure-boot", "sign", "--key", s.path("missing.pem"), image, "-o", out], "no such file")
        try expectError(["secure-boot", "sign", "--key", p256, "--chip", "esp99", image, "-o", out], "unknown chip")
        try expectError(["secure-boot", "verify", "--key", p256, "--chip", "generic", image], "not a multiple of 4096")
        try expectError(["secure-boot", "verify", "--key", p256, "--chip", "generic", s.path("nope.bin")], "no such file")
        try expectError(["secure-boot", "digest", "--key", rsa2048, "-o", out], "Secure Boot V2 accepts only RSA-3072")
        #expect(!FileManager.default.fileExists(atPath: out))
        // Public key where a private key is needed.
        let pub = try s.write(Array(P256.Signing.PrivateKey().publicKey.pemRepresentation.utf8), "pub.pem")
        try expectError(["secure-boot", "sign", "--chip", "generic", "--key", pub, image, "-o", out], "public key")
        // Unsigned aligned image: nothing to verify.
        let aligned = try s.write([UInt8](repeating: 0xFF, count: 8192), "aligned.bin")
        try expectError(["secure-boot", "verify", "--chip", "generic", "--key", p256, aligned], "no valid Secure Boot V2 signature block")
        try expectError(["secure-boot", "sign", "--append", "--chip", "generic", "--key", p256, aligned, "-o", out], "--append")
        // Signed image: refuse signing again, refuse mixed schemes.
        try espforgeOK(["secure-boot", "sign", "--chip", "generic", "--key", p256, image, "-o", s.path("signed.bin")])
        try expectError(["secure-boot", "sign", "--chip", "generic", "--key", p256, s.path("signed.bin"), "-o", out], "already signed")
        let rsa = try s.write(Array(try SigningKey.generate(.rsa3072).pemRepresentation.utf8), "rsa.pem")
        try expectError(["secure-boot", "sign", "--append", "--chip", "generic", "--key", rsa, s.path("signed.bin"), "-o", out], "cannot mix schemes")
        // External signature of the wrong size.
        let sig = try s.write([1, 2, 3], "sig.bin")
        try expectError(["secure-boot", "sign", "--pub-key", rsa, "--signature", sig, image, "-o", out], "384-byte")
        // keygen never overwrites silently.
        try expectError(["secure-boot", "keygen", "--scheme", "ecdsa256", "-o", p256], "already exists")
        try expectError(["secure-boot", "keygen", "--scheme", "dsa", "-o", s.path("k.pem")], "unknown --scheme")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("info and verify never crash on random files")
    func randomFiles() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let s = try Scratch(); defer { s.remove() }
        let key = try s.write(Array(SigningKey.p256(P256.Signing.PrivateKey()).pemRepresentation.utf8), "k.pem")
        for i in 0..<6 {
            var bytes = rng.bytes(4096 * Int.random(in: 1...3, using: &rng))
            bytes[bytes.count - 4096] = 0xE7
            bytes[bytes.count - 4095] = UInt8(2 + i % 2)
            let p = try s.write(bytes, "r\(i).bin")
            for args in [["secure-boot", "info", p], ["secure-boot", "info", "--json", p],
                         ["secure-boot", "verify", "--chip", "generic", "--key", key, p]] {
                let r = try Espforge.run(args)
                #expect(r.status == 0 || r.status == 1, "\(args) exit \(r.status) seed=\(seed): \(r.err)")
                #expect(!r.err.contains("Fatal error"))
            }
            // A random key file is rejected cleanly.
            let kp = try s.write(rng.bytes(300), "k\(i).pem")
            let r = try Espforge.run(["secure-boot", "digest", "--key", kp, "-o", s.path("d.bin")])
            #expect(r.status == 1, "seed=\(seed)")
        }
    }

    @Test("digest-to-sign pads like sign and names the hash")
    func digestToSign() throws {
        let s = try Scratch(); defer { s.remove() }
        let image: [UInt8] = Array(repeating: 0x11, count: 100)
        let p = try s.write(image, "in.bin")
        let r = try espforgeOK(["secure-boot", "digest-to-sign", p])
        let padded = image + [UInt8](repeating: 0xFF, count: 4096 - 100)
        #expect(r.out.trimmingCharacters(in: .whitespacesAndNewlines) == Array(SHA256.hash(data: padded)).hexString)
        #expect(r.err.contains("padded with 3996 bytes"))
        let r384 = try espforgeOK(["secure-boot", "digest-to-sign", "--hash", "sha384", p, "-o", s.path("d.bin")])
        #expect(try s.read("d.bin") == Array(SHA384.hash(data: padded)))
        #expect(r384.out.contains(Array(SHA384.hash(data: padded)).hexString))
    }
}
