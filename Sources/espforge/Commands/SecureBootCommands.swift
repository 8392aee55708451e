import ArgumentParser
import ESPCore
import Foundation
import KeyCustody
import SecureBoot

struct SecureBootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secure-boot",
        abstract: "Secure Boot V2: keys, signing, verification, eFuse digests.",
        discussion: """
            Secure Boot V2 appends a 4096-byte signature sector to an image padded to 4 KiB. The \
            sector holds up to three 1216-byte signature blocks (RSA-3072 PSS or ECDSA); the device \
            trusts a block whose public-key digest is burned into eFuse. ESP32 (rev >= 3.0) honours \
            only block 0 and only RSA-3072; --chip selects these rules (default esp32; esp32s3, \
            esp32c3: RSA-3072, three blocks; generic: RSA-3072, ECDSA P-256/P-384, three blocks). \
            Output is interchangeable with espsecure (esptool 5.6.0).

            Example:
              espforge secure-boot keygen --scheme rsa3072 -o signing_key.pem
              espforge secure-boot sign --key signing_key.pem bootloader.bin -o signed.bin
              espforge secure-boot verify --key signing_key.pem signed.bin
              espforge secure-boot digest --key signing_key.pem -o key_digest.bin

            Keys on a PKCS#11 token (HSM) are named by RFC 7512 URIs; the PIN comes from \
            $ESPFORGE_PKCS11_PIN, --pkcs11-pin-file (mode 0600) or a prompt, never the command line:
              espforge secure-boot sign --pkcs11-module /usr/lib/softhsm/libsofthsm2.so \\
                --key 'pkcs11:token=line;object=sbv2-2026;type=private' bootloader.bin -o signed.bin
              espforge secure-boot sign --hsm-config hsm.ini bootloader.bin -o signed.bin
            """,
        subcommands: [
            SecureBootKeygen.self, SecureBootSign.self, SecureBootDigestToSign.self, SecureBootVerify.self,
            SecureBootInfo.self, SecureBootDigest.self,
        ]
    )
}

// MARK: - Shared helpers

enum SecureBootCLI {
    static func policy(_ chip: String) throws -> SecureBootPolicy {
        guard let p = SecureBootPolicy.named(chip) else {
            throw UsageError("unknown chip \"\(chip)\" for --chip",
                             hint: "use one of: " + SecureBootPolicy.all.map(\.chip).joined(separator: ", "))
        }
        return p
    }

    /// Reads a PEM key file; errors name the file. Never prints key material.
    static func loadKey(_ path: String) throws -> KeyMaterial {
        let bytes = try FileIO.read(path, limit: .key)
        do {
            return try KeyMaterial.load(pem: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }

    static func inFile<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as FileContextError { throw e } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }
}

// MARK: - keygen

struct SecureBootKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Generate a Secure Boot V2 signing key (PEM, file mode 0600).",
        discussion: """
            Writes a new private key in the PEM form espsecure writes and reads: "RSA PRIVATE KEY" \
            (RSA-3072, e = 65537) or "EC PRIVATE KEY" (P-256, P-384). The file is created with mode \
            0600. An existing file is never overwritten unless --force is given. --pub-out also \
            writes the public key ("PUBLIC KEY" PEM), e.g. for verification or external signing.
            Keep the private key offline; only its public-key digest goes into eFuse.

            Example:
              espforge secure-boot keygen --scheme rsa3072 -o key.pem --pub-out pub.pem
            """
    )

    @Option(name: .long, help: "rsa3072 (ESP32, S3, C3), ecdsa192, ecdsa256 or ecdsa384 (not for ESP32).")
    var scheme: String = "rsa3072"

    @Option(name: [.short, .customLong("output")], help: "Private key file to write, or a pkcs11: URI to generate the key on a token.")
    var output: String

    @Option(name: .customLong("pub-out"), help: "Also write the public key PEM here.")
    var pubOut: String?

    @Flag(help: "Overwrite an existing key file.")
    var force = false

    @OptionGroup var pkcs11: PKCS11Options

    func run() throws {
        guard let scheme = SignatureScheme(rawValue: scheme.lowercased()) else {
            throw UsageError("unknown --scheme \"\(scheme)\"", hint: "use rsa3072, ecdsa192, ecdsa256 or ecdsa384")
        }
        if pkcs11.hsmConfig != nil {
            throw UsageError("--hsm-config is not used by keygen", hint: "name the new key with -o 'pkcs11:slot-id=SLOT;object=LABEL'")
        }
        if TokenCLI.isToken(output) {
            // On the token: the private key is generated there and never leaves it.
            let uri = try PKCS11URI.parse(output)
            let module = try PKCS11ModuleChoice.resolve(commandLine: pkcs11.module, manifest: nil, uri: uri)
            let pub = try TokenKeys.generate(scheme, uri: uri, modulePath: module,
                                             pin: TokenCLI.pinSource(file: pkcs11.pinFile, uriPinSource: uri.pinSource))
            if let pubOut { try FileIO.write(pub.pemRepresentation, to: pubOut) }
            print("generated \(scheme.displayName) key \(uri) on the token (not extractable)")
            if let pubOut { print("wrote public key to \(pubOut)") }
            print("public key digest (eFuse): \(try pub.keyDigest().hexString)")
            return
        }
        if !force, FileManager.default.fileExists(atPath: output) {
            throw UsageError(Diagnostic("key file already exists; not overwriting it", file: output,
                                        hint: "choose another name, or pass --force"))
        }
        let key = try SigningKey.generate(scheme)
        try FileIO.write(Array(key.pemRepresentation.utf8), to: output, secret: true)
        if let pubOut {
            try FileIO.write(key.publicKey.pemRepresentation, to: pubOut)
        }
        let digest = try key.publicKey.keyDigest()
        print("wrote \(scheme.displayName) private key to \(output) (mode 0600)")
        if let pubOut { print("wrote public key to \(pubOut)") }
        print("public key digest (eFuse): \(digest.hexString)")
    }
}

// MARK: - sign

struct SecureBootSign: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign an image: pad to 4 KiB and append the signature sector.",
        discussion: """
            Pads the input with 0xFF to a multiple of 4096 bytes and appends a 4096-byte signature \
            sector with one block per key (at most three). With --append, the input must already be \
            signed: its valid blocks are kept and new ones added after them. An input that is \
            already signed is refused without --append.

            External signing (HSM, openssl): instead of --key, give --pub-key PUB.pem and \
            --signature SIG.bin pairs. SIG.bin is the raw 384-byte RSA-PSS signature (SHA-256, \
            MGF1-SHA-256, salt 32) as `openssl pkeyutl` writes it, or a DER ECDSA signature, over \
            the digest printed by `espforge secure-boot digest-to-sign`.

            The output is parsed and verified again before it is written. ESP32 rules apply by \
            default (--chip esp32): RSA-3072 only, and only block 0 is honoured (a warning is \
            printed when the sector gets more than one block).

            Example:
              espforge secure-boot sign --key key.pem bootloader.bin -o signed.bin
              espforge secure-boot sign --pub-key pub.pem --signature sig.bin app.bin -o out.bin
            """
    )

    @Option(name: .long, help: "Private key PEM or PKCS#11 URI pkcs11:token=…;object=… (repeat for several blocks).")
    var key: [String] = []

    @OptionGroup var pkcs11: PKCS11Options

    @Option(name: .customLong("pub-key"), help: "Public key PEM of an external signature (repeat; pairs with --signature).")
    var pubKey: [String] = []

    @Option(name: .long, help: "Pre-computed signature file (repeat; pairs with --pub-key).")
    var signature: [String] = []

    @Flag(help: "Add blocks to an already signed image instead of signing afresh.")
    var append = false

    @Option(name: .long, help: "Chip rules: esp32 (default), esp32s3, esp32c3, generic.")
    var chip: String = "esp32"

    @Argument(help: "Image to sign.")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "Signed image to write.")
    var output: String

    func validate() throws {
        if key.isEmpty && pubKey.isEmpty && pkcs11.hsmConfig == nil {
            throw ValidationError("give --key KEY.pem (or pkcs11:…), --hsm-config FILE, or --pub-key PUB.pem with --signature SIG.bin")
        }
        if pkcs11.hsmConfig != nil && (!key.isEmpty || !pubKey.isEmpty) {
            throw ValidationError("--hsm-config names the key itself; do not combine it with --key or --pub-key")
        }
        if !key.isEmpty && (!pubKey.isEmpty || !signature.isEmpty) {
            throw ValidationError("--key cannot be combined with --pub-key/--signature")
        }
        if pubKey.count != signature.count {
            throw ValidationError("\(pubKey.count) --pub-key but \(signature.count) --signature: give one signature per public key")
        }
    }

    func run() throws {
        let policy = try SecureBootCLI.policy(chip)
        let image = try FileIO.read(input, limit: .flashContents)
        let result: SigningResult
        if !key.isEmpty || pkcs11.hsmConfig != nil {
            var keys: [any ImageSigningKey] = []
            if let config = pkcs11.hsmConfig { keys.append(try TokenCLI.signer(hsmConfig: config, pkcs11)) }
            for path in key {
                let k = try TokenCLI.signer(path, pkcs11)
                do { try policy.check(k.publicKey.scheme) } catch { throw FileContextError(file: path, underlying: error) }
                keys.append(k)
            }
            result = try SecureBootCLI.inFile(input) {
                try SecureBootSigner.sign(image: image, signers: keys, append: append, policy: policy)
            }
        } else {
            var pairs: [(key: VerifyingKey, signature: [UInt8])] = []
            for (p, s) in zip(pubKey, signature) {
                let k = try SecureBootCLI.loadKey(p).verifyingKey
                do { try policy.check(k.scheme) } catch { throw FileContextError(file: p, underlying: error) }
                pairs.append((k, try FileIO.read(s, limit: .key)))
            }
            result = try SecureBootCLI.inFile(input) {
                try SecureBootSigner.signExternal(image: image, signatures: pairs, append: append, policy: policy)
            }
        }
        for w in result.warnings { ErrorRenderer.warn(w) }
        try FileIO.write(result.image, to: output)
        let contentLength = result.image.count - SignatureSector.size
        var line = "signed \(contentLength) bytes"
        if result.padding > 0 { line += " (padded with \(result.padding) bytes of 0xFF)" }
        print(line + "; signature sector at 0x\(String(contentLength, radix: 16)) now has \(result.totalBlocks) block(s)")
        for (i, b) in result.newBlocks.enumerated() {
            print("  block \(result.existingBlocks + i): \(b.scheme.displayName), key digest \(b.keyDigest.hexString)")
        }
        print("verified and wrote \(output)")
    }
}

// MARK: - digest-to-sign

struct SecureBootDigestToSign: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "digest-to-sign",
        abstract: "Print (or write) the digest an external signer must sign.",
        discussion: """
            The signed content is the image padded with 0xFF to a multiple of 4096 bytes, exactly \
            as `sign` pads it; for an already signed image (to add a block with `sign --append`) it \
            is everything before the signature sector. Prints the digest in hex; -o writes the raw \
            bytes, ready for `openssl pkeyutl -sign -pkeyopt digest:sha256 -pkeyopt \
            rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:32` (RSA) or plain `openssl pkeyutl \
            -sign` (ECDSA, DER output). Use --hash sha384 for ECDSA P-384 keys.

            Example:
              espforge secure-boot digest-to-sign bootloader.bin -o digest.bin
              openssl pkeyutl -sign -inkey key.pem -in digest.bin -out sig.bin \\
                -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss \\
                -pkeyopt rsa_pss_saltlen:32
              espforge secure-boot sign --pub-key pub.pem --signature sig.bin \\
                bootloader.bin -o signed.bin
            """
    )

    @Option(name: .long, help: "sha256 (RSA-3072, ECDSA P-256; default) or sha384 (ECDSA P-384).")
    var hash: String = "sha256"

    @Argument(help: "Image to be signed.")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "Write the raw digest bytes here.")
    var output: String?

    func run() throws {
        guard let h = ContentHash(rawValue: hash.lowercased()) else {
            throw UsageError("unknown --hash \"\(hash)\"", hint: "use sha256 or sha384")
        }
        let image = try FileIO.read(input, limit: .flashContents)
        let r = SecureBootSigner.digestToSign(image: image, hash: h)
        if r.signed {
            ErrorRenderer.warn("\(input) is already signed: this is the digest of the content before its signature sector (for sign --append)")
        } else if r.padding > 0 {
            ErrorRenderer.warn("\(input) is padded with \(r.padding) bytes of 0xFF to a 4 KiB boundary before hashing, as sign does")
        }
        if let output { try FileIO.write(r.digest.bytes, to: output) }
        print(r.digest.bytes.hexString)
    }
}

// MARK: - verify

struct SecureBootVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that a signed image carries a valid signature block for a key.",
        discussion: """
            Exit status 0 if a signature block that the chip honours is valid (magic, CRC, image \
            digest, signature) and was made with the given key (private or public PEM); otherwise \
            exit status 1 with the reason for each block. Blocks are scanned like the bootloader \
            does: in order, stopping at the first damaged one. With --chip esp32 (default) only \
            block 0 counts.

            Example:
              espforge secure-boot verify --key signing_pub.pem bootloader-signed.bin
            """
    )

    @Option(name: .long, help: "Private or public key PEM, or a PKCS#11 URI (the public key on the token).")
    var key: String?

    @OptionGroup var pkcs11: PKCS11Options

    @Option(name: .long, help: "Chip rules: esp32 (default), esp32s3, esp32c3, generic.")
    var chip: String = "esp32"

    @Argument(help: "Signed image.")
    var image: String

    func run() throws {
        let policy = try SecureBootCLI.policy(chip)
        let k = try TokenCLI.verifyingKey(key, pkcs11)
        let bytes = try FileIO.read(image, limit: .flashContents)
        let index = try SecureBootCLI.inFile(image) {
            try SecureBootVerifier.verify(image: bytes, key: k, policy: policy)
        }
        print("OK: signature block \(index) of \(image) is valid for \(k.scheme.displayName) key digest \(try k.keyDigest().hexString)")
    }
}

// MARK: - info

struct SecureBootInfoOutput: Codable {
    var file: String
    var length: Int
    var signatureSector: SignatureSectorReport?
    var problems: [String]
}

struct SecureBootInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the signature blocks of a signed image.",
        discussion: """
            Reads the last 4096-byte sector of the image and lists each signature block: scheme, \
            public-key digest (what eFuse must hold), CRC, whether the stored image digest matches \
            the content, and whether the signature verifies with the block's own key. Scanning \
            stops at the first invalid block. Exit status 0 even for bad blocks (use `verify` to \
            decide); 1 if the file cannot be read or has no 4 KiB-aligned sector.

            Example:
              espforge secure-boot info bootloader-signed.bin --json
            """
    )

    @Argument(help: "Signed image.")
    var image: String

    @Flag(help: "Machine-readable output.")
    var json = false

    func run() throws {
        let bytes = try FileIO.read(image, limit: .flashContents)
        let offset = try SecureBootCLI.inFile(image) { try SignedImage.sectorOffset(of: bytes) }
        let report = secureBootReport(file: bytes, sectorOffset: offset)
        var problems: [String] = []
        if report == nil { problems.append("no signature block at offset 0x\(String(offset, radix: 16)) (unsigned image?)") }
        if json {
            try Output.printJSON(SecureBootInfoOutput(file: image, length: bytes.count, signatureSector: report, problems: problems))
            return
        }
        print("\(image): \(bytes.count) bytes, signature sector at 0x\(String(offset, radix: 16))")
        guard let report else {
            print("  no signature block (unsigned image?)")
            return
        }
        for b in report.blocks {
            let sig = b.signatureValid.map { $0 ? "valid" : "INVALID" } ?? "not checked"
            print("  block \(b.index): \(b.scheme)")
            print("    key digest:   \(b.keyDigest)")
            print("    CRC32:        \(b.crcValid ? "valid" : "INVALID")")
            print("    image digest: \(b.imageDigestMatches ? "matches content" : "DOES NOT MATCH content")")
            print("    signature:    \(sig)")
        }
        for p in report.problems { print("  note: \(p)") }
    }
}

// MARK: - digest

struct SecureBootDigest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "digest",
        abstract: "Write the 32-byte public-key digest to burn into eFuse.",
        discussion: """
            SHA-256 of the public-key fields as a signature block stores them (RSA: modulus, \
            exponent and Montgomery constants; ECDSA: curve id and point). Byte-identical to \
            `espsecure digest-sbv2-public-key`; burn it with `espefuse burn-key-digest` (ESP32: \
            BLOCK2). Accepts a private or public PEM key; prints the digest in hex.

            Example:
              espforge secure-boot digest --key signing_pub.pem -o key_digest.bin
            """
    )

    @Option(name: .long, help: "Private or public key PEM, or a PKCS#11 URI (the public key on the token).")
    var key: String?

    @OptionGroup var pkcs11: PKCS11Options

    @Option(name: [.short, .customLong("output")], help: "Digest file to write (32 bytes).")
    var output: String

    func run() throws {
        let k = try TokenCLI.verifyingKey(key, pkcs11)
        let digest = try SecureBootCLI.inFile(key ?? pkcs11.hsmConfig ?? "key") { try k.keyDigest() }
        try FileIO.write(digest, to: output)
        print(digest.hexString)
    }
}
