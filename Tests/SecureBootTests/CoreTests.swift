import Crypto
import _CryptoExtras
import ESPCore
import Foundation
import Testing
import TestSupport
@testable import SecureBoot

@Suite("SecureBoot core")
struct CoreTests {
    @Test("Montgomery constants equal those in Espressif-signed blocks", fixtureTrait)
    func montgomeryMatchesFixture() throws {
        for name in ["bootloader_signed_v2_rsa.bin", "bootloader_multi_signed_v2_rsa.bin"] {
            let file = try Fx.bytes(name)
            let sector = SignatureSector.parse(file: file, offset: file.count - 4096)
            #expect(!sector.validBlocks.isEmpty)
            for e in sector.validBlocks {
                guard case let .rsa(n, exponent, rinv, mdash) = e.block.key else {
                    Issue.record("block \(e.index) of \(name) is not RSA"); continue
                }
                #expect(exponent == 65537)
                #expect(Montgomery.rinv(modulusBE: n) == rinv, "\(name) block \(e.index) rinv")
                #expect(Montgomery.mdash(modulusBE: n) == mdash, "\(name) block \(e.index) mdash")
            }
        }
    }

    @Test("Montgomery constants on small moduli against plain arithmetic")
    func montgomerySmall() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for _ in 0..<200 {
            let n = UInt64.random(in: 3...UInt64(UInt32.max), using: &rng) | 1
            let bytes = Montgomery.bigEndianBytes([n], count: 8)
            let bits = 64 - n.leadingZeroBitCount
            // 2^(2·bits) mod n by repeated doubling in 128-bit-safe steps.
            var r: UInt64 = 1 % n
            for _ in 0..<(2 * bits) { r = (r * 2) % n }
            let expected = Montgomery.bigEndianBytes([r], count: 8)
            #expect(Montgomery.rinv(modulusBE: bytes) == expected, "n=\(n) seed=\(seed)")
            let m = Montgomery.mdash(modulusBE: bytes) ?? 0
            #expect(UInt32(truncatingIfNeeded: n) &* m == UInt32.max, "mdash n=\(n) seed=\(seed)") // n·m ≡ −1
        }
        #expect(Montgomery.rinv(modulusBE: [0x10]) == nil)
        #expect(Montgomery.mdash(modulusBE: [0x10]) == nil)
        #expect(Montgomery.rinv(modulusBE: []) == nil)
    }

    @Test("eFuse key digest of the fixture RSA key equals rsa_public_key_digest.bin", fixtureTrait)
    func rsaDigestFixture() throws {
        let expected = try Fx.bytes("rsa_public_key_digest.bin")
        #expect(try Fx.key(Fx.rsaKey).verifyingKey.keyDigest() == expected)
        #expect(try Fx.key(Fx.rsaPub).verifyingKey.keyDigest() == expected)
        let signed = try Fx.bytes("bootloader_signed_v2_rsa.bin")
        let block = try SignatureBlock.parse(signed[32768..<(32768 + 1216)])
        #expect(block.keyDigest == expected)
    }

    @Test("Fixture keys load with the right scheme; private and public halves agree", fixtureTrait)
    func fixtureKeys() throws {
        let cases: [(String, SignatureScheme, Bool)] = [
            (Fx.rsaKey, .rsa3072, true), (Fx.rsaKey2, .rsa3072, true), (Fx.rsaKey3, .rsa3072, true),
            (Fx.rsaPub, .rsa3072, false), (Fx.ec256Key, .ecdsa256, true), (Fx.ec256Pub, .ecdsa256, false),
            (Fx.ec384Key, .ecdsa384, true),
        ]
        for (name, scheme, isPrivate) in cases {
            let k = try Fx.key(name)
            #expect(k.scheme == scheme, "\(name)")
            if case .privateKey = k { #expect(isPrivate, "\(name)") } else { #expect(!isPrivate, "\(name)") }
        }
        #expect(try Fx.key(Fx.rsaKey).verifyingKey.keyDigest() == Fx.key(Fx.rsaPub).verifyingKey.keyDigest())
        #expect(try Fx.key(Fx.ec256Key).verifyingKey.keyDigest() == Fx.key(Fx.ec256Pub).verifyingKey.keyDigest())
    }

    @Test("PKCS#8 and SEC1/PKCS#1 encodings of one key give the same digest")
    func keyEncodings() throws {
        let p256 = P256.Signing.PrivateKey()
        let viaPKCS8 = try KeyMaterial.load(pem: p256.pemRepresentation)
        let viaSEC1 = try KeyMaterial.load(pem: SigningKey.p256(p256).pemRepresentation)
        #expect(SigningKey.p256(p256).pemRepresentation.hasPrefix("-----BEGIN EC PRIVATE KEY-----\n"))
        #expect(try viaPKCS8.verifyingKey.keyDigest() == viaSEC1.verifyingKey.keyDigest())
        let p384 = P384.Signing.PrivateKey()
        let a = try KeyMaterial.load(pem: p384.pemRepresentation)
        let b = try KeyMaterial.load(pem: SigningKey.p384(p384).pemRepresentation)
        let c = try KeyMaterial.load(pem: p384.publicKey.pemRepresentation)
        #expect(try a.verifyingKey.keyDigest() == b.verifyingKey.keyDigest())
        #expect(try a.verifyingKey.keyDigest() == c.verifyingKey.keyDigest())
        // openssl ecparam -genkey writes an EC PARAMETERS block first.
        let withParams = "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
            + SigningKey.p256(p256).pemRepresentation
        #expect(try KeyMaterial.load(pem: withParams).scheme == .ecdsa256)
    }

    @Test("Wrong keys are refused with the right error")
    func wrongKeys() throws {
        let rsa2048 = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        #expect(throws: SecureBootError.rsaKeySize(bits: 2048)) { try KeyMaterial.load(pem: rsa2048.pemRepresentation) }
        #expect(throws: SecureBootError.rsaKeySize(bits: 2048)) { try KeyMaterial.load(pem: rsa2048.pkcs8PEMRepresentation) }
        #expect(throws: SecureBootError.rsaKeySize(bits: 2048)) { try KeyMaterial.load(pem: rsa2048.publicKey.pemRepresentation) }
        let p521 = P521.Signing.PrivateKey()
        #expect(throws: SecureBootError.self) { try KeyMaterial.load(pem: p521.pemRepresentation) }
        #expect(throws: SecureBootError.notPEM) { try KeyMaterial.load(pem: "hello") }
        #expect(throws: SecureBootError.unsupportedPEMLabel("CERTIFICATE")) {
            try KeyMaterial.load(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        }
        #expect(throws: SecureBootError.encryptedKey) {
            try KeyMaterial.load(pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
        }
        #expect(throws: SecureBootError.schemeNotAllowed(scheme: .ecdsa256, chip: "ESP32", allowed: [.rsa3072])) {
            try SecureBootPolicy.esp32.check(.ecdsa256)
        }
    }

    @Test("Sign and verify in-process for every scheme; tampering is detected")
    func signVerifyRoundTrip() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        for scheme in [SignatureScheme.rsa3072, .ecdsa256, .ecdsa384] {
            let key = try SigningKey.generate(scheme)
            let image = randomImage(&rng)
            let r = try SecureBootSigner.sign(image: image, keys: [key], append: false, policy: .generic)
            #expect(r.image.count % 4096 == 0)
            #expect(r.padding == (4096 - image.count % 4096) % 4096)
            #expect(Array(r.image.prefix(image.count)) == image)
            #expect(r.image[image.count..<(r.image.count - 4096)].allSatisfy { $0 == 0xFF })
            #expect(r.image.suffix(4096 - 1216).allSatisfy { $0 == 0xFF })
            #expect(try SecureBootVerifier.verify(image: r.image, key: key.publicKey, policy: .generic) == 0)
            // Another key of the same scheme does not verify.
            let other = try SigningKey.generate(scheme)
            #expect(throws: SecureBootError.self) {
                try SecureBootVerifier.verify(image: r.image, key: other.publicKey, policy: .generic)
            }
            // One flipped bit anywhere in content, block fields or CRC is rejected.
            let contentLength = r.image.count - 4096
            for region in [0..<contentLength, contentLength..<(contentLength + 1196), (contentLength + 1196)..<(contentLength + 1200)] {
                var t = r.image
                let pos = Int.random(in: region, using: &rng)
                t[pos] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                #expect(throws: SecureBootError.self, "\(scheme) flip at \(pos) seed=\(seed)") {
                    try SecureBootVerifier.verify(image: t, key: key.publicKey, policy: .generic)
                }
            }
            // Signing an already signed image without --append is refused.
            #expect(throws: SecureBootError.self) {
                try SecureBootSigner.sign(image: r.image, keys: [key], append: false, policy: .generic)
            }
        }
    }

    @Test("Block serialisation round-trips through the parser")
    func blockRoundTrip() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let content = rng.bytes(8192)
        for scheme in [SignatureScheme.rsa3072, .ecdsa256, .ecdsa384] {
            let key = try SigningKey.generate(scheme)
            let digest = scheme.contentHash.digest(content)
            let sig = try key.sign(contentDigest: digest)
            let block = SignatureBlock.make(imageDigest: digest, key: try key.publicKey.fields(), signature: sig)
            let parsed = try SignatureBlock.parse(block.bytes)
            #expect(parsed == block)
            #expect(parsed.crcValid)
            #expect(parsed.paddingIsZero)
            #expect(parsed.keyDigest == (try key.publicKey.keyDigest()))
            #expect(parsed.bytes.count == 1216)
            #expect(parsed.bytes[0] == 0xE7)
            #expect(parsed.bytes[1] == (scheme == .rsa3072 ? 2 : 3))
        }
    }

    @Test("Append adds blocks after the existing ones; limits and mixing are enforced")
    func appendRules() throws {
        let a = try SigningKey.generate(.ecdsa256), b = try SigningKey.generate(.ecdsa256)
        let c = try SigningKey.generate(.ecdsa256), d = try SigningKey.generate(.ecdsa256)
        let image = [UInt8](repeating: 0x5A, count: 5000)
        let one = try SecureBootSigner.sign(image: image, keys: [a], append: false, policy: .generic)
        let two = try SecureBootSigner.sign(image: one.image, keys: [b], append: true, policy: .generic)
        #expect(two.totalBlocks == 2)
        #expect(two.image.count == one.image.count)
        #expect(Array(two.image.prefix(one.image.count - 4096 + 1216)) == Array(one.image.prefix(one.image.count - 4096 + 1216)))
        #expect(try SecureBootVerifier.verify(image: two.image, key: b.publicKey, policy: .generic) == 1)
        let three = try SecureBootSigner.sign(image: two.image, keys: [c], append: true, policy: .generic)
        #expect(throws: SecureBootError.tooManyBlocks(existing: 3, adding: 1)) {
            try SecureBootSigner.sign(image: three.image, keys: [d], append: true, policy: .generic)
        }
        let rsa = try Fx.key(Fx.rsaKey)
        if case .privateKey(let rsaKey) = rsa {
            #expect(throws: SecureBootError.mixedSchemes([.ecdsa256, .rsa3072])) {
                try SecureBootSigner.sign(image: one.image, keys: [rsaKey], append: true, policy: .generic)
            }
        }
        #expect(throws: SecureBootError.self) {
            try SecureBootSigner.sign(image: image, keys: [a], append: true, policy: .generic)
        }
        // ESP32: a second block is allowed but warned about; verification ignores block 1.
        let k1 = try SigningKey.generate(.rsa3072), k2 = try SigningKey.generate(.rsa3072)
        let esp = try SecureBootSigner.sign(image: image, keys: [k1, k2], append: false, policy: .esp32)
        #expect(esp.warnings.count == 1)
        #expect(try SecureBootVerifier.verify(image: esp.image, key: k1.publicKey, policy: .esp32) == 0)
        #expect(throws: SecureBootError.self) {
            try SecureBootVerifier.verify(image: esp.image, key: k2.publicKey, policy: .esp32)
        }
        #expect(try SecureBootVerifier.verify(image: esp.image, key: k2.publicKey, policy: .esp32c3) == 1)
    }

    @Test("Parsers survive random and truncated bytes")
    func fuzz() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let good = try SecureBootSigner.sign(image: rng.bytes(3000), keys: [SigningKey.generate(.ecdsa256)],
                                             append: false, policy: .generic).image
        for i in 0..<300 {
            var block = rng.bytes(1216)
            if i % 2 == 0 { block[0] = 0xE7 }
            if i % 4 == 0 { block[1] = UInt8.random(in: 2...3, using: &rng) }
            if i % 8 == 0 { block[2] = UInt8.random(in: 0...1, using: &rng); block[36] = UInt8.random(in: 0...3, using: &rng) }
            _ = try? SignatureBlock.parse(block)
            _ = try? SignatureBlock.parse(block.prefix(Int.random(in: 0...1216, using: &rng)))
            // Whole files: random, truncated and mutated signed images.
            var file = rng.bytes(Int.random(in: 0...9000, using: &rng))
            if i % 3 == 0 { file = Array(good.prefix(Int.random(in: 0...good.count, using: &rng))) }
            if i % 3 == 1 {
                file = good
                for _ in 0..<Int.random(in: 1...20, using: &rng) {
                    file[Int.random(in: (good.count - 4096)..<good.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            for off in [file.count - 4096, 0, -5, file.count, Int.random(in: -10...(file.count + 10), using: &rng)] {
                _ = SecureBootVerifier.inspect(image: file, sectorOffset: off)
            }
            _ = SignedImage.existingSignature(file)
            _ = SecureBootSigner.digestToSign(image: file, hash: .sha256)
            _ = try? SecureBootVerifier.verify(image: file, key: Fx.key(Fx.ec256Pub).verifyingKey, policy: .generic)
            // Key files: random text, and PEM wrappers around random DER.
            _ = try? KeyMaterial.load(pem: String(decoding: rng.bytes(200), as: UTF8.self))
            let label = ["PRIVATE KEY", "PUBLIC KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"][i % 4]
            _ = try? KeyMaterial.load(pem: PEMBlock.encode(label: label, der: rng.bytes(Int.random(in: 0...300, using: &rng))))
        }
        #expect(SecureBootVerifier.inspect(image: good, sectorOffset: good.count - 4096).checks.count == 1, "seed=\(seed)")
    }
}
