import Foundation
import SecureBoot
import Testing
import TestSupport
@testable import KeyCustody

@Suite("PKCS#11 URIs and PIN sources")
struct PKCS11URITests {
    @Test("RFC 7512 path and query attributes")
    func parse() throws {
        let u = try PKCS11URI.parse("pkcs11:token=line%201;object=sbv2-2026;id=%01%a0;type=private?module-path=/usr/lib/x.so&pin-source=file:/run/pin")
        #expect(u.token == "line 1")
        #expect(u.object == "sbv2-2026")
        #expect(u.id == [0x01, 0xA0])
        #expect(u.type == .privateKey)
        #expect(u.modulePath == "/usr/lib/x.so")
        #expect(u.pinSource == "/run/pin")
        // The recorded form never carries the module or PIN source.
        #expect(u.description == "pkcs11:token=line%201;object=sbv2-2026;id=%01%a0;type=private")
        #expect(try PKCS11URI.parse(u.description) == PKCS11URI(token: "line 1", object: "sbv2-2026", id: [1, 0xA0], type: .privateKey))
    }

    @Test("A PIN in the URI, unknown attributes and keyless URIs are refused")
    func refused() {
        #expect(throws: KeyCustodyError.pinInURI) { try PKCS11URI.parse("pkcs11:token=a;object=b?pin-value=1234") }
        #expect(throws: KeyCustodyError.self) { try PKCS11URI.parse("pkcs11:token=a;colour=red;object=b") }
        #expect(throws: KeyCustodyError.self) { try PKCS11URI.parse("pkcs11:token=a") }
        #expect(throws: KeyCustodyError.self) { try PKCS11URI.parse("pkcs11:object=%zz") }
        #expect(throws: KeyCustodyError.self) { try PKCS11URI.parse("key.pem") }
    }

    @Test("Module choice: --pkcs11-module, then $ESPFORGE_PKCS11_MODULE, then the manifest, then the URI")
    func moduleChoice() throws {
        var uri = try PKCS11URI.parse("pkcs11:object=k?module-path=/uri.so")
        let env = ["ESPFORGE_PKCS11_MODULE": "/env.so"]
        #expect(try PKCS11ModuleChoice.resolve(commandLine: "/cli.so", environment: env, manifest: "/m.so", uri: uri) == "/cli.so")
        #expect(try PKCS11ModuleChoice.resolve(commandLine: nil, environment: env, manifest: "/m.so", uri: uri) == "/env.so")
        #expect(try PKCS11ModuleChoice.resolve(commandLine: nil, environment: [:], manifest: "/m.so", uri: uri) == "/m.so")
        #expect(try PKCS11ModuleChoice.resolve(commandLine: nil, environment: [:], manifest: nil, uri: uri) == "/uri.so")
        uri.modulePath = nil
        #expect(throws: KeyCustodyError.noModule) { try PKCS11ModuleChoice.resolve(commandLine: nil, environment: [:], manifest: nil, uri: uri) }
    }

    @Test("PIN files must be 0600; the file wins over the environment")
    func pinFile() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-pin")
        let path = dir.appendingPathComponent("pin").path
        try "2468\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        #expect {
            _ = try PINSource.readPINFile(path)
        } throws: { e in
            let d = (e as? KeyCustodyError)?.diagnostic
            return d?.message.contains("0644") == true && d?.description.contains("2468") == false
        }
        chmod(path, 0o600)
        #expect(try PINSource.readPINFile(path) == Array("2468".utf8))
        let source = PINSource(file: path, environment: ["ESPFORGE_PKCS11_PIN": "1111"])
        #expect(try source.pin(for: "t") == Array("2468".utf8))
        #expect(try PINSource(environment: ["ESPFORGE_PKCS11_PIN": "1111"]).pin(for: "t") == Array("1111".utf8))
        #expect(try PINSource(environment: [:]).pin(for: "t") == nil)
    }

    @Test("espsecure's --hsm-config INI: read as it is; credentials only in a 0600 file")
    func hsmConfig() throws {
        let text = """
            # espsecure HSM config
            [hsm_config]
            pkcs11_lib = /usr/lib/softhsm/libsofthsm2.so
            credentials = 1234
            slot = 1940389591
            label = sbv2-rsa
            label_pubkey = sbv2-rsa-pub
            """
        let c = try HSMConfig.parse(text, file: "hsm.ini", mode: 0o600)
        #expect(c.modulePath == "/usr/lib/softhsm/libsofthsm2.so")
        #expect(c.privateKeyURI.description == "pkcs11:slot-id=1940389591;object=sbv2-rsa;type=private")
        #expect(c.publicKeyURI.object == "sbv2-rsa-pub")
        #expect(try c.pinSource(.none).pin(for: "x") == Array("1234".utf8))
        #expect(throws: KeyCustodyError.self) { try HSMConfig.parse(text, file: "hsm.ini", mode: 0o644) }
        #expect(throws: KeyCustodyError.self) { try HSMConfig.parse("[hsm_config]\npkcs11_lib = /x.so\nlabel = a\n", file: "h", mode: 0o600) }
        let noPIN = try HSMConfig.parse(text.replacingOccurrences(of: "credentials = 1234\n", with: ""), file: "h", mode: 0o644)
        #expect(try noPIN.pinSource(PINSource(environment: [:])).pin(for: "x") == nil)
    }
}

@Suite("PKCS#11 signing through SoftHSM2", .enabled(if: SoftHSM.availableOrCI, "SoftHSM2 not installed (apt-get install softhsm2)"))
struct SoftHSMSigningTests {
    static let pins = PINSource(environment: ["ESPFORGE_PKCS11_PIN": SoftHSM.pin])

    func makeKey(_ scheme: SignatureScheme, token: String = "espforge-test") throws -> (PKCS11URI, VerifyingKey, String) {
        let hsm = try SoftHSM.setup()
        let uri = PKCS11URI(token: token, object: SoftHSM.uniqueLabel("sbv2-\(scheme.rawValue)"), id: nil, type: nil)
        let pub = try TokenKeys.generate(scheme, uri: uri, modulePath: hsm.module, pin: Self.pins)
        return (uri, pub, hsm.module)
    }

    static let image: [UInt8] = {
        var rng = SeededRandom(seed: 18)
        return rng.bytes(0x9000 + 123)
    }()

    @Test("Token keys sign images; espsecure verifies them and agrees on the key digest",
          .enabled(if: Oracle.availableOrCI, "espsecure not installed"),
          arguments: [SignatureScheme.rsa3072, .ecdsa256, .ecdsa384])
    func signVerify(_ scheme: SignatureScheme) throws {
        let (uri, pub, module) = try makeKey(scheme)
        var signingURI = uri
        signingURI.type = .privateKey
        let key = try TokenKeys.signingKey(uri: signingURI, modulePath: module, pin: Self.pins)
        #expect(try key.publicKey.keyDigest() == pub.keyDigest())
        let policy = scheme == .rsa3072 ? SecureBootPolicy.esp32 : SecureBootPolicy.named("generic")!
        let result = try SecureBootSigner.sign(image: Self.image, signers: [key], append: false, policy: policy)
        #expect(try SecureBootVerifier.verify(image: result.image, key: pub, policy: policy) == 0)

        let dir = try TestEnvironment.temporaryDirectory("espforge-p11")
        let signed = dir.appendingPathComponent("signed.bin").path, pubPath = dir.appendingPathComponent("pub.pem").path
        try Data(result.image).write(to: URL(fileURLWithPath: signed))
        try pub.pemRepresentation.write(toFile: pubPath, atomically: true, encoding: .utf8)
        let v = try Oracle.run("espsecure", ["verify-signature", signed, "--version", "2", "-k", pubPath])
        #expect(v.status == 0, "espsecure verify-signature: \(v.out) \(v.err)")
        let d = try Oracle.run("espsecure", ["digest-sbv2-public-key", "-k", pubPath, "-o", dir.appendingPathComponent("d.bin").path])
        #expect(d.status == 0)
        let digest = try [UInt8](Data(contentsOf: dir.appendingPathComponent("d.bin")))
        #expect(digest == (try pub.keyDigest()))

        // The block layout is espsecure's: the same image signed with a PEM key differs only in
        // the key fields and signature (RSA-PSS and ECDSA are randomised).
        let block = result.newBlocks[0]
        #expect(block.bytes.count == SignatureBlock.size && block.crcValid && block.paddingIsZero)
        #expect(try SignatureBlock.parse(block.bytes) == block)
    }

    @Test("The public key is found from a public-only URI without a PIN, and from the private object")
    func publicKeyLookup() throws {
        let (uri, pub, module) = try makeKey(.ecdsa256)
        var pubURI = uri
        pubURI.type = .publicKey
        #expect(try TokenKeys.verifyingKey(uri: pubURI, modulePath: module, pin: .none).keyDigest() == pub.keyDigest())
        var privURI = uri
        privURI.type = .privateKey
        #expect(try TokenKeys.verifyingKey(uri: privURI, modulePath: module, pin: Self.pins).keyDigest() == pub.keyDigest())
    }

    @Test("Module not loadable: a missing file and a library that is not a PKCS#11 module")
    func moduleErrors() throws {
        #expect {
            _ = try PKCS11Module.load(path: "/nonexistent/libnothing.so")
        } throws: { e in
            guard case KeyCustodyError.moduleNotLoadable(let path, _) = e else { return false }
            return path == "/nonexistent/libnothing.so"
        }
        let libz = ["/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/aarch64-linux-gnu/libz.so.1"]
            .first { FileManager.default.fileExists(atPath: $0) }
        if let libz {
            #expect {
                _ = try PKCS11Module.load(path: libz)
            } throws: { e in
                guard case KeyCustodyError.moduleNotLoadable(_, let reason) = e else { return false }
                return reason.contains("C_GetFunctionList")
            }
        }
    }

    @Test("Token and object not found: the error lists what is there")
    func notFound() throws {
        let (uri, _, module) = try makeKey(.ecdsa256)
        #expect {
            _ = try TokenKeys.signingKey(uri: PKCS11URI(token: "no-such-token", object: "x"), modulePath: module, pin: Self.pins)
        } throws: { e in
            guard case KeyCustodyError.tokenNotFound(_, let available) = e else { return false }
            return available.contains { $0.contains("token=espforge-test") }
        }
        #expect {
            _ = try TokenKeys.signingKey(uri: PKCS11URI(token: "espforge-test", object: "no-such-key"), modulePath: module, pin: Self.pins)
        } throws: { e in
            guard case KeyCustodyError.objectNotFound(_, let available) = e else { return false }
            return available.contains { $0.contains("object=\(uri.object!)") && $0.contains("type=private") }
        }
    }

    @Test("A wrong PIN is reported once and never retried; no PIN and no terminal is an error")
    func wrongPIN() throws {
        let hsm = try SoftHSM.setup()
        let asked = Counter()
        let wrong = PINSource(file: nil, environment: [:], prompt: { _ in asked.increment(); return Array("0000".utf8) })
        #expect(throws: KeyCustodyError.wrongPIN(token: "espforge-pin")) {
            _ = try TokenKeys.signingKey(uri: PKCS11URI(token: "espforge-pin", object: "any"), modulePath: hsm.module, pin: wrong)
        }
        #expect(asked.value == 1, "the PIN is asked for once and tried once")
        #expect(throws: KeyCustodyError.noPIN(token: "espforge-pin")) {
            _ = try TokenKeys.signingKey(uri: PKCS11URI(token: "espforge-pin", object: "any"), modulePath: hsm.module, pin: .none)
        }
    }

    @Test("Keys of the wrong size or curve are refused")
    func wrongKeyType() throws {
        let hsm = try SoftHSM.setup()
        let rsa2048 = PKCS11URI(token: "espforge-test", object: SoftHSM.uniqueLabel("rsa2048"))
        _ = try TokenKeys.generateOnToken(uri: rsa2048, modulePath: hsm.module, pin: Self.pins, rsaBits: 2048, ecParams: nil)
        #expect {
            _ = try TokenKeys.signingKey(uri: rsa2048, modulePath: hsm.module, pin: Self.pins)
        } throws: { e in
            guard case KeyCustodyError.wrongKeyType(_, let why) = e else { return false }
            return why.contains("2048 bits")
        }
        let k1 = PKCS11URI(token: "espforge-test", object: SoftHSM.uniqueLabel("secp256k1"))
        _ = try TokenKeys.generateOnToken(uri: k1, modulePath: hsm.module, pin: Self.pins, rsaBits: nil,
                                          ecParams: [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x0A])
        #expect {
            _ = try TokenKeys.signingKey(uri: k1, modulePath: hsm.module, pin: Self.pins)
        } throws: { e in
            guard case KeyCustodyError.wrongKeyType(_, let why) = e else { return false }
            return why.contains("P-256 or P-384")
        }
    }

    @Test("A token that goes away mid-run fails the signature with a clear error")
    func removedMidRun() throws {
        let (uri, _, module) = try makeKey(.ecdsa256, token: "espforge-removal")
        let key = try TokenKeys.signingKey(uri: uri, modulePath: module, pin: Self.pins)
        _ = try SecureBootSigner.sign(image: Self.image, signers: [key], append: false, policy: SecureBootPolicy.named("generic")!)
        key.session.simulateRemoval()
        #expect {
            _ = try SecureBootSigner.sign(image: Self.image, signers: [key], append: false, policy: SecureBootPolicy.named("generic")!)
        } throws: { e in
            guard case KeyCustodyError.tokenRemoved = e else { return false }
            return true
        }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
