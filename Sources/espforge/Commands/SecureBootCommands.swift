import ArgumentParser
import ESPCore
import KeyCustody
import SecureBoot

struct SecureBootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secure-boot", abstract: "Secure Boot V2: keys, signing, verification, eFuse digests.",
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

enum SecureBootCLI {
    static func policy(_ chip: String) throws -> SecureBootPolicy { try SecureBootPolicy.forChip(chip) }

    /// Reads a PEM key file; errors name the file. Never prints key material.
    static func loadKey(_ path: String) throws -> KeyMaterial { try KeyMaterial.load(file: path) }

    static func inFile<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as FileContextError { throw e } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }
}

struct SecureBootKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Generate a Secure Boot V2 signing key (PEM, file mode 0600).",
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

    @Option(name: .long, help: "rsa3072 (ESP32, S3, C3), ecdsa192, ecdsa256 or ecdsa384 (not for ESP32).") var scheme: String = "rsa3072"
    @Option(name: [.short, .customLong("output")], help: "Private key file to write, or a pkcs11: URI to generate the key on a token.") var output: String
    @Option(name: .customLong("pub-out"), help: "Also write the public key PEM here.") var pubOut: String?
    @Flag(help: "Overwrite an existing key file.") var force = false
    @OptionGroup var pkcs11: PKCS11Options

    func run() throws {
        let scheme = try SecureBootKeyFiles.scheme(named: scheme)
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
        let digest = try SecureBootKeyFiles.generate(scheme, privateKeyPath: output, publicKeyPath: pubOut, overwrite: force)
        print("wrote \(scheme.displayName) private key to \(output) (mode 0600)")
        if let pubOut { print("wrote public key to \(pubOut)") }
        print("public key digest (eFuse): \(digest.hexString)")
    }
}

struct SecureBootSign: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign", abstract: "Sign an image: pad to 4 KiB and append the signature sector.",
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

    @Option(name: .long, help: "Private key PEM or PKCS#11 URI pkcs11:token=…;object=… (repeat for several blocks).") var key: [String] = []
    @OptionGroup var pkcs11: PKCS11Options
    @Option(name: .customLong("pub-key"), help: "Public key PEM of an external signature (repeat; pairs with --signature).") var pubKey: [String] = []
    @Option(name: .long, help: "Pre-computed signature file (repeat; pairs with --pub-key).") var signature: [String] = []
    @Flag(help: "Add blocks to an already signed image instead of signing afresh.") var append = false
    @Option(name: .long, help: "Chip rules: esp32 (default), esp32s3, esp32c3, generic.") var chip: String = "esp32"
    @Argument(help: "Image to sign.") var input: String
    @Option(name: [.short, .customLong("output")], help: "Signed image to write.") var output: String

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
            result = try SecureBootCLI.inFile(input) {
                try SecureBootSigner.signExternal(image: image, publicKeyFiles: pubKey, signatureFiles: signature, append: append, policy: policy)
            }
        }
        for w in result.warnings { ErrorRenderer.warn(w) }
        try FileIO.write(result.image, to: output)
        for line in result.summary(output: output) { print(line) }
    }
}
