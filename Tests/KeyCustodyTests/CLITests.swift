import Foundation
import SecureBoot
import Testing
import TestSupport
import VirtualDevice
@testable import KeyCustody

/// The CLI with keys on SoftHSM2: sign/verify/digest, espsecure's HSM config, and `provision`
/// with a token key and escrow, checked for plaintext key bytes everywhere it writes.
@Suite("Key custody through the CLI", .enabled(if: SoftHSM.availableOrCI, "SoftHSM2 not installed (apt-get install softhsm2)"))
struct KeyCustodyCLITests {
    static func environment(_ hsm: SoftHSM.Setup, pin: Bool = true) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["SOFTHSM2_CONF"] = hsm.conf
        env["ESPFORGE_PKCS11_MODULE"] = hsm.module
        if pin { env["ESPFORGE_PKCS11_PIN"] = SoftHSM.pin } else { env.removeValue(forKey: "ESPFORGE_PKCS11_PIN") }
        return env
    }

    static func run(_ args: [String], _ env: [String: String]) throws -> ProcessResult {
        try ProcessRunner.run(Espforge.path, args, environment: env)
    }

    @Test("secure-boot sign/verify/digest with pkcs11: URIs and with espsecure's --hsm-config; espsecure verifies",
          .enabled(if: Oracle.availableOrCI, "espsecure not installed"))
    func signVerifyDigest() throws {
        let hsm = try SoftHSM.setup()
        let env = Self.environment(hsm)
        let dir = try TestEnvironment.temporaryDirectory("espforge-p11-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        func p(_ n: String) -> String { dir.appendingPathComponent(n).path }
        var rng = SeededRandom(seed: 7)
        try Data(rng.bytes(50_000)).write(to: URL(fileURLWithPath: p("app.bin")))
        let label = SoftHSM.uniqueLabel("cli-rsa")
        let uri = "pkcs11:token=espforge-test;object=\(label)"

        let gen = try Self.run(["secure-boot", "keygen", "--scheme", "rsa3072", "-o", uri + ";type=private", "--pub-out", p("pub.pem")], env)
        #expect(gen.status == 0, "\(gen.err)")
        let sign = try Self.run(["secure-boot", "sign", "--key", uri + ";type=private", p("app.bin"), "-o", p("signed.bin")], env)
        #expect(sign.status == 0, "\(sign.err)")
        #expect(!sign.out.contains(SoftHSM.pin) && !sign.err.contains(SoftHSM.pin))
        let v = try Oracle.run("espsecure", ["verify-signature", p("signed.bin"), "--version", "2", "-k", p("pub.pem")])
        #expect(v.status == 0, "\(v.out) \(v.err)")
        // Verify and digest read the public key from the token, without a PIN.
        let verify = try Self.run(["secure-boot", "verify", "--key", uri + ";type=public", p("signed.bin")], Self.environment(hsm, pin: false))
        #expect(verify.status == 0, "\(verify.err)")
        let digest = try Self.run(["secure-boot", "digest", "--key", uri + ";type=public", "-o", p("d.bin")], Self.environment(hsm, pin: false))
        #expect(digest.status == 0, "\(digest.err)")
        _ = try Oracle.run("espsecure", ["digest-sbv2-public-key", "-k", p("pub.pem"), "-o", p("ref.bin")])
        #expect(try Data(contentsOf: URL(fileURLWithPath: p("d.bin"))) == Data(contentsOf: URL(fileURLWithPath: p("ref.bin"))))

        // espsecure's HSM config, PIN inside (file mode 0600).
        let slot = try #require(try PKCS11Module.load(path: hsm.module).tokens().first { $0.label == "espforge-test" }).slotID
        let ini = "[hsm_config]\npkcs11_lib = \(hsm.module)\ncredentials = \(SoftHSM.pin)\nslot = \(slot)\nlabel = \(label)\n"
        try ini.write(toFile: p("hsm.ini"), atomically: true, encoding: .utf8)
        chmod(p("hsm.ini"), 0o644)
        let refused = try Self.run(["secure-boot", "sign", "--hsm-config", p("hsm.ini"), p("app.bin"), "-o", p("signed2.bin")],
                                   Self.environment(hsm, pin: false))
        #expect(refused.status == 1 && refused.err.contains("0644") && !refused.err.contains(SoftHSM.pin), "\(refused.err)")
        chmod(p("hsm.ini"), 0o600)
        let viaINI = try Self.run(["secure-boot", "sign", "--hsm-config", p("hsm.ini"), p("app.bin"), "-o", p("signed2.bin")],
                                  Self.environment(hsm, pin: false))
        #expect(viaINI.status == 0, "\(viaINI.err)")
        let v2 = try Oracle.run("espsecure", ["verify-signature", p("signed2.bin"), "--version", "2", "-k", p("pub.pem")])
        #expect(v2.status == 0, "\(v2.out) \(v2.err)")

        // The usual faults, as one clear line each.
        let wrongToken = try Self.run(["secure-boot", "sign", "--key", "pkcs11:token=nope;object=x", p("app.bin"), "-o", p("x.bin")], env)
        #expect(wrongToken.status == 1 && wrongToken.err.contains("no token matches") && wrongToken.err.contains("token=espforge-test"))
        let noModule = try Self.run(["secure-boot", "sign", "--pkcs11-module", "/nonexistent.so", "--key", uri, p("app.bin"), "-o", p("x.bin")], env)
        #expect(noModule.status == 1 && noModule.err.contains("cannot load the PKCS#11 module"), "\(noModule.err)")
        let pinInURI = try Self.run(["secure-boot", "sign", "--key", uri + "?pin-value=1234", p("app.bin"), "-o", p("x.bin")], env)
        #expect(pinInURI.status == 1 && pinInURI.err.contains("pin-value"), "\(pinInURI.err)")
    }

    @Test("provision with a token key and escrow: signed once, URI and digest recorded, keys unseal to what the devices hold, no plaintext key byte anywhere",
          .enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures"))
    func provisionWithTokenAndEscrow() throws {
        let hsm = try SoftHSM.setup()
        let env = Self.environment(hsm)
        let dir = try TestEnvironment.temporaryDirectory("espforge-custody")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("line").path
        var setupEnv = env
        setupEnv["ESPFORGE_TEST_CRASH_AFTER"] = "identify"   // the line's files and blank devices only
        _ = try Self.run(["demo", "--devices", "2", "--dir", out], setupEnv)
        let label = SoftHSM.uniqueLabel("line-rsa")
        let uri = "pkcs11:token=espforge-test;object=\(label);type=private"
        let pub = try TokenKeys.generate(.rsa3072, uri: try PKCS11URI.parse(uri), modulePath: hsm.module,
                                         pin: PINSource(environment: ["ESPFORGE_PKCS11_PIN": SoftHSM.pin]))
        let keygen = try Self.run(["registry", "escrow-keygen", "-o", dir.appendingPathComponent("escrow_private.pem").path,
                                   "--pub-out", out + "/escrow_pub.pem"], env)
        #expect(keygen.status == 0, "\(keygen.err)")
        var manifest = try String(contentsOfFile: out + "/espforge.toml", encoding: .utf8)
        manifest = manifest.replacingOccurrences(of: "key = \"signing_key.pem\"",
                                                 with: "key = \"\(uri)\"\npkcs11_module = \"\(hsm.module)\"\n\n[escrow]\npublic_key = \"escrow_pub.pem\"")
        try manifest.write(toFile: out + "/espforge.toml", atomically: true, encoding: .utf8)
        var provisionEnv = env
        provisionEnv.removeValue(forKey: "ESPFORGE_PKCS11_MODULE")   // the manifest names it
        let registry = dir.appendingPathComponent("custody.sqlite").path
        let r = try Self.run(["provision", "--manifest", out + "/espforge.toml", "--registry", registry, "--json",
                              "--port", "virtual:\(out)/devices/dev1", "--port", "virtual:\(out)/devices/dev2"], provisionEnv)
        #expect(r.status == 0, "\(r.out)\n\(r.err)")

        let list = try Self.run(["registry", "export", "--json", "--registry", registry], env)
        #expect(list.status == 0, "\(list.err)")
        let devices = try #require(try JSONSerialization.jsonObject(with: Data(list.out.utf8)) as? [[String: Any]])
        #expect(devices.count == 2)
        var imageHashes: [[String: String]] = []
        var secrets: [[UInt8]] = []
        for d in devices {
            let mac = try #require(d["mac"] as? String)
            let ids = d["keyIDs"] as? [String: String], digests = d["keyDigests"] as? [String: String]
            #expect(ids?["secure_boot_v2"] == "pkcs11:token=espforge-test;object=\(label);type=private")
            #expect(digests?["secure_boot_v2"] == (try pub.keyDigest()).hexString)
            imageHashes.append(d["imageHashes"] as? [String: String] ?? [:])
            #expect((d["escrow"] as? [[String: Any]])?.count == 2, "both per-device secrets escrowed, sealed")

            let keysDir = dir.appendingPathComponent("recovered-\(mac.replacingOccurrences(of: ":", with: ""))").path
            let unseal = try Self.run(["registry", "unseal", mac, "--escrow-key", dir.appendingPathComponent("escrow_private.pem").path,
                                       "-o", keysDir, "--registry", registry], env)
            #expect(unseal.status == 0, "\(unseal.err)")
            let base = keysDir + "/" + mac.replacingOccurrences(of: ":", with: "")
            let fe = try [UInt8](Data(contentsOf: URL(fileURLWithPath: base + "-flash_encryption_key.bin")))
            let nvs = try [UInt8](Data(contentsOf: URL(fileURLWithPath: base + "-nvs_keys.bin")))
            for f in [base + "-flash_encryption_key.bin", base + "-nvs_keys.bin"] {
                let mode = (try FileManager.default.attributesOfItem(atPath: f)[.posixPermissions] as? Int) ?? 0
                #expect(mode == 0o600, "\(f) mode \(String(mode, radix: 8))")
            }
            #expect(nvs.count == 4096)
            // The unsealed flash key is the one in the device's BLOCK1.
            let dev = dir.appendingPathComponent("line/devices").path
            let match = try (1...2).map { try DeviceStore(directory: "\(dev)/dev\($0)").load() }.first { dev in
                var bytes: [UInt8] = []
                for w in dev.efuses.blocks[1] { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
                return Array(bytes.reversed()) == fe
            }
            #expect(match != nil, "a device holds the unsealed flash-encryption key")
            secrets += [fe, Array(nvs.prefix(64))]
        }
        // Signed once per run: RSA-PSS signatures are randomised, so equal image hashes mean one signature.
        #expect(imageHashes.count == 2 && imageHashes[0] == imageHashes[1] && imageHashes[0]["bootloader"] != nil)

        // No plaintext key byte in the registry file, the --json events, the logs or the exports.
        let show = try Self.run(["registry", "show", try #require(devices[0]["mac"] as? String), "--json", "--registry", registry], env)
        let csv = try Self.run(["registry", "export", "--csv", "--registry", registry], env)
        var haystacks: [(String, [UInt8])] = [("registry file", try [UInt8](Data(contentsOf: URL(fileURLWithPath: registry)))),
                                              ("provision stdout", r.stdout), ("provision stderr", r.stderr),
                                              ("export json", list.stdout), ("export csv", csv.stdout), ("show", show.stdout)]
        if let wal = try? [UInt8](Data(contentsOf: URL(fileURLWithPath: registry + "-wal"))) { haystacks.append(("registry wal", wal)) }
        for secret in secrets {
            let hex = secret.hexString
            let forms: [[UInt8]] = [secret, Array(hex.utf8), Array(hex.uppercased().utf8), Array(Data(secret).base64EncodedString().utf8),
                                    Array(hex.prefix(16).utf8)]
            for (name, bytes) in haystacks {
                for form in forms {
                    #expect(!bytes.containsSequence(form), "\(name) holds a plaintext key (form \(form.count) bytes)")
                }
            }
        }
        #expect(!r.out.contains(SoftHSM.pin) && !r.err.contains(SoftHSM.pin))
    }
}

extension Array where Element == UInt8 {
    func containsSequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        for i in 0...(count - needle.count) where self[i] == needle[0] && Array(self[i..<(i + needle.count)]) == needle { return true }
        return false
    }
}
