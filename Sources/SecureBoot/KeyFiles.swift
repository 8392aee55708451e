import ESPCore
import Foundation

extension SecureBootPolicy {
    /// The rules for `chip` (esp32, esp32s3, esp32c3, generic); a usage error listing them otherwise.
    public static func forChip(_ chip: String) throws -> SecureBootPolicy {
        guard let p = named(chip) else {
            throw UsageError("unknown chip \"\(chip)\" for --chip", hint: "use one of: " + all.map(\.chip).joined(separator: ", "))
        }
        return p
    }
}

extension KeyMaterial {
    /// The key in the PEM file at `path` (private or public); errors name the file and never
    /// show key material.
    public static func load(file path: String) throws -> KeyMaterial {
        let bytes = try BoundedFile.read(path, limit: .key)
        do { return try load(pem: String(decoding: bytes, as: UTF8.self)) } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }
}

/// Signing keys as files, as `espforge secure-boot keygen` writes them.
public enum SecureBootKeyFiles {
    /// A scheme a new signing key may have: rsa3072, ecdsa256 or ecdsa384.
    public static func scheme(named name: String) throws -> SignatureScheme {
        guard let scheme = SignatureScheme(rawValue: name.lowercased()) else {
            throw UsageError("unknown --scheme \"\(name)\"", hint: "use rsa3072, ecdsa192, ecdsa256 or ecdsa384")
        }
        return scheme
    }

    /// Generates a `scheme` key, writes its private PEM to `privateKeyPath` (mode 0600; an
    /// existing file only with `overwrite`) and its public PEM to `publicKeyPath`, and returns
    /// the public-key digest (what eFuse holds).
    public static func generate(_ scheme: SignatureScheme, privateKeyPath: String, publicKeyPath: String?,
                                overwrite: Bool) throws -> [UInt8] {
        if !overwrite, FileManager.default.fileExists(atPath: privateKeyPath) {
            throw UsageError(Diagnostic("key file already exists; not overwriting it", file: privateKeyPath,
                                        hint: "choose another name, or pass --force"))
        }
        let key = try SigningKey.generate(scheme)
        try AtomicFile.write(Array(key.pemRepresentation.utf8), to: privateKeyPath, mode: AtomicFile.secretMode)
        if let publicKeyPath { try AtomicFile.write(Array(key.publicKey.pemRepresentation.utf8), to: publicKeyPath) }
        return try key.publicKey.keyDigest()
    }
}

extension SecureBootSigner {
    /// External signing from files: each public-key PEM in `publicKeyFiles` pairs with the raw
    /// signature file at the same position of `signatureFiles`. Errors about a key name its file.
    public static func signExternal(image: [UInt8], publicKeyFiles: [String], signatureFiles: [String], append: Bool,
                                    policy: SecureBootPolicy) throws -> SigningResult {
        var pairs: [(key: VerifyingKey, signature: [UInt8])] = []
        for (p, s) in zip(publicKeyFiles, signatureFiles) {
            let k = try KeyMaterial.load(file: p).verifyingKey
            do { try policy.check(k.scheme) } catch { throw FileContextError(file: p, underlying: error) }
            pairs.append((k, try BoundedFile.read(s, limit: .key)))
        }
        return try signExternal(image: image, signatures: pairs, append: append, policy: policy)
    }
}

extension SecureBootKeyFiles {
    /// The public-key digest of the RSA-3072 key (private or public PEM) at `path`, for BLOCK2 of
    /// an ESP32, which verifies RSA-3072 signatures only; another scheme is a usage error.
    public static func esp32KeyDigest(file path: String) throws -> [UInt8] {
        let k = try KeyMaterial.load(file: path).verifyingKey
        guard k.scheme == .rsa3072 else {
            throw UsageError(Diagnostic("the ESP32 verifies RSA-3072 signatures only; this is a \(k.scheme.displayName) key", file: path,
                                        hint: "generate one with `espforge secure-boot keygen --scheme rsa3072`"))
        }
        do { return try k.keyDigest() } catch { throw FileContextError(file: path, underlying: error) }
    }
}
