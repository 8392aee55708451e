// `secure-boot digest-to-sign | verify | info | digest`: reading signed images and keys (the
// group and the signing commands are in SecureBootCommands.swift).
import ArgumentParser
import Diagnostics
import EFuse
import ESPCore
import SecureBoot

struct SecureBootDigestToSign: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "digest-to-sign", abstract: "Print (or write) the digest an external signer must sign.",
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

    @Option(name: .long, help: "sha256 (RSA-3072, ECDSA P-256; default) or sha384 (ECDSA P-384).") var hash: String = "sha256"
    @Argument(help: "Image to be signed.") var input: String
    @Option(name: [.short, .customLong("output")], help: "Write the raw digest bytes here.") var output: String?

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

struct SecureBootVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Check which signature blocks of a signed image verify (and, with eFuses, whether the chip accepts it).",
        discussion: """
            Lists each signature block (up to three): scheme, key digest, CRC, image digest, \
            signature, and which --key verifies it. Blocks are scanned like the bootloader does: in \
            order, stopping at the first damaged one; with --chip esp32 (default) only block 0 counts, \
            esp32s3/esp32c3 check blocks 0-2. --key may be given several times; exit status 0 when \
            every key verifies a block the chip checks (a block whose key, digest and signature all \
            check out, as `espsecure verify-signature` decides).

            With --efuse-file FILE (an `espefuse --virt --path-efuse-file` file of an ESP32-S3 or \
            ESP32-C3, with --chip) each block is matched against the key blocks with purpose \
            SECURE_BOOT_DIGEST0-2: which digest slot holds its key, whether SECURE_BOOT_KEY_REVOKEn \
            is burned for it, and whether the chip would accept the image (a checked block that \
            verifies with a key in a slot that is not revoked); --key is then optional. Exit status \
            1 when the chip would not accept it.

            Example:
              espforge secure-boot verify --key signing_pub.pem bootloader-signed.bin
              espforge secure-boot verify --chip esp32s3 --key k0.pem --key k1.pem bootloader-signed.bin
              espforge secure-boot verify --chip esp32c3 --efuse-file efuses.bin bootloader-signed.bin --json
            """
    )

    @Option(name: .long, help: "Private or public key PEM, or a PKCS#11 URI (the public key on the token); repeatable.") var key: [String] = []
    @OptionGroup var pkcs11: PKCS11Options
    @Option(name: .long, help: "Chip rules: esp32 (default), esp32s3, esp32c3, generic.") var chip: String = "esp32"
    @Option(name: .customLong("efuse-file"), help: "ESP32-S3/C3 eFuses (`espefuse --virt --path-efuse-file` file): match blocks to digest slots.") var efuseFile: String?
    @Flag(help: "Print JSON.") var json = false
    @Argument(help: "Signed image.") var image: String

    func run() throws {
        let policy = try SecureBootCLI.policy(chip)
        var keys: [(name: String, key: VerifyingKey)] = []
        if key.isEmpty {
            if efuseFile == nil || pkcs11.hsmConfig != nil { keys.append(("key", try TokenCLI.verifyingKey(nil, pkcs11))) }
        } else {
            for k in key { keys.append((k, try TokenCLI.verifyingKey(k, pkcs11))) }
        }
        let bytes = try FileIO.read(image, limit: .flashContents)
        if keys.count == 1, efuseFile == nil, !json {
            // One key: the verdict and reasons as before, then the blocks.
            let k = keys[0].key
            let index = try SecureBootCLI.inFile(image) { try SecureBootVerifier.verify(image: bytes, key: k, policy: policy) }
            print("OK: signature block \(index) of \(image) is valid for \(k.scheme.displayName) key digest \(try k.keyDigest().hexString)")
            let report = try SecureBootCLI.inFile(image) {
                try SecureBootVerifyReport.run(image: bytes, name: image, policy: policy, keys: keys, efuses: nil)
            }
            return print(report.text, terminator: "")
        }
        var efuses: KeyBlockFuseFacts?
        if let efuseFile {
            guard EFuseFieldMap.named(policy.chip) != nil else {
                throw UsageError("--efuse-file needs --chip esp32s3 or --chip esp32c3", hint: "the file is read with that chip's eFuse field map")
            }
            efuses = try SecurityFuseFacts.read(efuseFile: efuseFile, chip: policy.chip).facts.keyBlocks
        }
        let report = try SecureBootCLI.inFile(image) {
            try SecureBootVerifyReport.run(image: bytes, name: image, policy: policy, keys: keys, efuses: efuses)
        }
        if json { print(try report.json()) } else { print(report.text, terminator: "") }
        if !report.ok { throw ExitCode(1) }
    }
}

struct SecureBootInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show the signature blocks of a signed image.",
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

    @Argument(help: "Signed image.") var image: String
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let bytes = try FileIO.read(image, limit: .flashContents)
        let report = try SecureBootCLI.inFile(image) { try SecureBootInfoReport.inspect(image: bytes, name: image) }
        if json { print(try report.json()) } else { print(report.text, terminator: "") }
    }
}

struct SecureBootDigest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "digest", abstract: "Write the 32-byte public-key digest to burn into eFuse.",
        discussion: """
            SHA-256 of the public-key fields as a signature block stores them (RSA: modulus, \
            exponent and Montgomery constants; ECDSA: curve id and point). Byte-identical to \
            `espsecure digest-sbv2-public-key`; burn it with `espefuse burn-key-digest` (ESP32: \
            BLOCK2). Accepts a private or public PEM key; prints the digest in hex.

            Example:
              espforge secure-boot digest --key signing_pub.pem -o key_digest.bin
            """
    )

    @Option(name: .long, help: "Private or public key PEM, or a PKCS#11 URI (the public key on the token).") var key: String?
    @OptionGroup var pkcs11: PKCS11Options
    @Option(name: [.short, .customLong("output")], help: "Digest file to write (32 bytes).") var output: String

    func run() throws {
        let k = try TokenCLI.verifyingKey(key, pkcs11)
        let digest = try SecureBootCLI.inFile(key ?? pkcs11.hsmConfig ?? "key") { try k.keyDigest() }
        try FileIO.write(digest, to: output)
        print(digest.hexString)
    }
}
