import ESPCore
import Foundation
import Testing
import TestSupport
@testable import SecureBoot

/// ECDSA P-192 against espsecure 5.6.0 with keys espsecure generates (`generate-signing-key
/// --scheme ecdsa192`): the block layout, external signatures and both verification directions.
/// The key-set tables in OracleTests cover espforge-generated P-192 keys.
@Suite("SecureBoot P-192 vs espsecure", oracleTrait)
struct P192OracleTests {
    @Test("Block layout byte-identical with espsecure's apart from (r, s) and the CRC")
    func blockLayout() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let s = try Scratch("p192"); defer { s.remove() }
        let key = s.path("k.pem")
        try espsecureOK(["generate-signing-key", "--version", "2", "--scheme", "ecdsa192", key])
        let input = try s.write(randomImage(&rng), "in.bin")
        try espsecureOK(["sign-data", input, "--version", "2", "-k", key, "-o", s.path("ref.bin")])
        try espforgeOK(["secure-boot", "sign", "--chip", "generic", "--key", key, input, "-o", s.path("ours.bin")])
        let ref = try s.read("ref.bin"), ours = try s.read("ours.bin")
        #expect(ref.count == ours.count)
        let c = ref.count - 4096
        #expect(Array(ref.prefix(c)) == Array(ours.prefix(c)), "padded content, seed=\(seed)")
        // Block: magic, version 3, hash id 0 (SHA-256), digest, curve id 1 at 36, X‖Y little-endian
        // from 37 zero-filled to 64 bytes; r at 101, s at 125 (24 bytes each, little-endian), zeros to
        // the CRC at 1196; then 16 zero bytes and 0xFF to the end of the sector.
        #expect(Array(ref[c..<(c + 101)]) == Array(ours[c..<(c + 101)]))
        #expect(Array(ref[(c + 149)..<(c + 1196)]) == Array(ours[(c + 149)..<(c + 1196)]))
        #expect(Array(ref[(c + 1200)...]) == Array(ours[(c + 1200)...]))
        #expect(ref[c + 36] == 1 && ref[c + 2] == 0)
        #expect(ref[(c + 149)..<(c + 1196)].allSatisfy { $0 == 0 })
        // Both verify with both tools.
        for image in ["ref.bin", "ours.bin"] {
            try espsecureOK(["verify-signature", s.path(image), "--version", "2", "-k", key], image)
            try espforgeOK(["secure-boot", "verify", "--chip", "generic", "--key", key, s.path(image)], image)
        }
        // The signature espsecure made verifies with espforge's own P-192 code over the block's digest.
        let block = try SignatureBlock.parse(ref[c..<(c + 1216)])
        guard case .privateKey(let k) = try KeyMaterial.load(pem: String(decoding: try s.read("k.pem"), as: UTF8.self)) else {
            Issue.record("not a private key"); return
        }
        #expect(k.publicKey.isValidSignature(block.signature, contentDigest: ContentHash.sha256.digest(Array(ref.prefix(c)))))
    }

    @Test("External P-192 signatures: espforge and espsecure assemble identical images")
    func externalSignature() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let s = try Scratch("p192x"); defer { s.remove() }
        let key = s.path("k.pem"), pub = s.path("pub.pem")
        try espsecureOK(["generate-signing-key", "--version", "2", "--scheme", "ecdsa192", key])
        try espsecureOK(["extract-public-key", "--version", "2", "-k", key, pub])
        guard case .privateKey(let k) = try KeyMaterial.load(pem: String(decoding: try s.read("k.pem"), as: UTF8.self)) else {
            Issue.record("not a private key"); return
        }
        let image = SignedImage.padded(randomImage(&rng)).content   // espsecure wants aligned input here
        let input = try s.write(image, "in.bin")
        try espforgeOK(["secure-boot", "digest-to-sign", "--hash", "sha256", input, "-o", s.path("digest.bin")])
        let digest = ContentHash.sha256.digest(image)
        #expect(try s.read("digest.bin") == digest.bytes)
        let sig = try s.write(P192Tests.derSignature(try k.sign(contentDigest: digest)), "sig.der")
        try espforgeOK(["secure-boot", "sign", "--chip", "generic", "--pub-key", pub, "--signature", sig, input, "-o", s.path("ours.bin")])
        try espsecureOK(["sign-data", input, "--version", "2", "--pub-key", pub, "--signature", sig, "-o", s.path("ref.bin")])
        #expect(try s.read("ours.bin") == s.read("ref.bin"), "seed=\(seed)")
        // The public key espforge writes gives espsecure the same digest.
        let ourPub = try s.write(Array(k.publicKey.pemRepresentation.utf8), "ourpub.pem")
        try espsecureOK(["digest-sbv2-public-key", "-k", ourPub, "-o", s.path("d1.bin")])
        try espsecureOK(["digest-sbv2-public-key", "-k", pub, "-o", s.path("d2.bin")])
        #expect(try s.read("d1.bin") == s.read("d2.bin"))
        #expect(try s.read("d1.bin") == k.publicKey.keyDigest())
    }

    /// The oracle venv's `cryptography` (OpenSSL's P-192) on the bare primitive: random scalars
    /// (including ones near 1 and n − 1) and digests. It derives each public key and verifies our
    /// signature; its own signature verifies with ours; a flipped digest bit verifies with neither.
    static let script = """
        import json, sys
        from cryptography.hazmat.primitives.asymmetric import ec, utils
        from cryptography.hazmat.primitives import hashes
        from cryptography.exceptions import InvalidSignature
        out = []
        for c in json.load(sys.stdin):
            d = int(c["d"], 16); digest = bytes.fromhex(c["digest"]); sig = bytes.fromhex(c["sig"])
            key = ec.derive_private_key(d, ec.SECP192R1())
            pub = key.public_key()
            n = pub.public_numbers()
            algo = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
            der = utils.encode_dss_signature(int.from_bytes(sig[:24], "big"), int.from_bytes(sig[24:], "big"))
            def ok(data):
                try:
                    pub.verify(der, data, algo); return True
                except InvalidSignature:
                    return False
            flipped = bytes([digest[0] ^ 1]) + digest[1:]
            r, s = utils.decode_dss_signature(key.sign(digest, algo))
            out.append({"x": "%048x" % n.x, "y": "%048x" % n.y, "ours": ok(digest), "flipped": ok(flipped),
                        "theirs": "%048x%048x" % (r, s)})
        print(json.dumps(out))
        """

    @Test("ECDSA P-192 primitive agrees with OpenSSL (cryptography) both ways")
    func primitiveAgainstOpenSSL() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let n = try P192Tests.hex("ffffffffffffffffffffffff99def836146bc9b1b4d22831")
        var scalars: [[UInt8]] = [[UInt8](repeating: 0, count: 23) + [1], [UInt8](repeating: 0, count: 23) + [2]]
        var nMinus = n
        nMinus[23] -= 1
        scalars.append(nMinus)
        nMinus[23] -= 1
        scalars.append(nMinus)
        while scalars.count < 24 {
            let b = rng.bytes(24)
            if (try? P192.PrivateKey(scalar: b)) != nil { scalars.append(b) }
        }
        var keys: [P192.PrivateKey] = []
        var digests: [[UInt8]] = []
        var cases: [Any] = []
        for d in scalars {
            let key = try P192.PrivateKey(scalar: d)
            let digest = rng.bytes(32)
            keys.append(key)
            digests.append(digest)
            cases.append(["d": d.hexString, "digest": digest.hexString, "sig": key.signature(digest: digest).hexString])
        }
        let results = try PythonOracle.run(script: Self.script, cases: cases)
        for (i, any) in results.enumerated() {
            let r = try #require(any as? [String: Any])
            #expect(r["x"] as? String == keys[i].publicKey.x.hexString, "public x, case \(i), seed \(seed)")
            #expect(r["y"] as? String == keys[i].publicKey.y.hexString, "public y, case \(i), seed \(seed)")
            #expect(r["ours"] as? Bool == true, "OpenSSL verifies our signature, case \(i), seed \(seed)")
            #expect(r["flipped"] as? Bool == false)
            let theirs = try #require((r["theirs"] as? String).flatMap { [UInt8](hexString: $0) })
            #expect(keys[i].publicKey.isValidSignature(theirs, digest: digests[i]), "we verify OpenSSL's, case \(i), seed \(seed)")
            var flipped = digests[i]
            flipped[0] ^= 1
            #expect(!keys[i].publicKey.isValidSignature(theirs, digest: flipped))
        }
    }
}
