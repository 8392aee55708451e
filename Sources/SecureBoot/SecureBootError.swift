import ESPCore

/// Everything that can go wrong while reading keys, parsing signature sectors, signing and verifying.
public enum SecureBootError: Error, Equatable, Sendable {
    // Keys
    case notPEM
    case unsupportedPEMLabel(String)
    case encryptedKey
    case malformedKey(String)
    case unsupportedKeyType(String)
    case rsaKeySize(bits: Int)
    case needPrivateKey
    case schemeNotAllowed(scheme: SignatureScheme, chip: String, allowed: [SignatureScheme])
    // Images and sectors
    case imageTooSmall(length: Int)
    case imageNotAligned(length: Int)
    case blockMagic(found: UInt8, offset: Int)
    case blockVersion(found: UInt8, offset: Int)
    case blockCurve(found: UInt8, offset: Int)
    case blockHashVersion(found: UInt8, curve: String, offset: Int)
    case noSignatureSector(offset: Int)
    case alreadySigned(blocks: Int, offset: Int)
    case appendWithoutSignature(offset: Int)
    case staleBlock(index: Int, offset: Int)
    case tooManyBlocks(existing: Int, adding: Int)
    case mixedSchemes([SignatureScheme])
    // Signing
    case noKeys
    case keySignatureCountMismatch(keys: Int, signatures: Int)
    case signatureFormat(index: Int, String)
    case externalSignatureInvalid(index: Int, digestHex: String)
    case signingFailed(String)
    case selfVerificationFailed(index: Int, reason: String)
    // Verification
    case verificationFailed(reasons: [String])
}

extension SecureBootError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case .notPEM:
            return Diagnostic("is not a PEM key file (no \"-----BEGIN ...-----\" line)",
                              hint: "pass a PEM key as written by `espforge secure-boot keygen`, espsecure or openssl")
        case .unsupportedPEMLabel(let label):
            return Diagnostic("PEM block \"\(label)\" is not a key espforge can use",
                              hint: "expected RSA PRIVATE KEY, EC PRIVATE KEY, PRIVATE KEY or PUBLIC KEY")
        case .encryptedKey:
            return Diagnostic("the private key is encrypted with a passphrase",
                              hint: "espsecure does not read encrypted keys either; decrypt it with `openssl pkey` first")
        case .malformedKey(let what):
            return Diagnostic("malformed key: \(what)", hint: "check the file is a complete, unmodified PEM key")
        case .unsupportedKeyType(let what):
            return Diagnostic("unsupported key: \(what)",
                              hint: "Secure Boot V2 keys are RSA-3072 or ECDSA P-192/P-256/P-384 (use `espforge secure-boot keygen`)")
        case .rsaKeySize(let bits):
            return Diagnostic("RSA key has \(bits) bits; Secure Boot V2 accepts only RSA-3072",
                              hint: "generate one with `espforge secure-boot keygen --scheme rsa3072 -o KEY.pem`")
        case .needPrivateKey:
            return Diagnostic("this is a public key; signing needs the private key",
                              hint: "for signing elsewhere (HSM) use --pub-key PUB.pem --signature SIG.bin")
        case let .schemeNotAllowed(scheme, chip, allowed):
            return Diagnostic("\(scheme.displayName) signatures are not valid for \(chip)",
                              hint: "\(chip) verifies only \(allowed.map(\.displayName).joined(separator: ", ")); "
                                  + "pass --chip for another chip if you really target one")
        case .imageTooSmall(let length):
            return Diagnostic("image is \(length) bytes; a signed image is at least one 4096-byte signature sector",
                              hint: "is this the signed image?")
        case .imageNotAligned(let length):
            return Diagnostic("image length \(length) is not a multiple of 4096, so it cannot end in a signature sector",
                              hint: "signed images are padded to 4 KiB before the 4096-byte signature sector")
        case let .blockMagic(found, offset):
            return Diagnostic("signature block magic is 0x\(String(found, radix: 16)), expected 0xe7", offset: offset)
        case let .blockVersion(found, offset):
            return Diagnostic("signature block version \(found) is not 2 (RSA-PSS) or 3 (ECDSA)", offset: offset)
        case let .blockCurve(found, offset):
            return Diagnostic("ECDSA signature block names unknown curve id \(found) (1=P-192, 2=P-256, 3=P-384)", offset: offset)
        case let .blockHashVersion(found, curve, offset):
            return Diagnostic("ECDSA signature block hash id \(found) does not fit curve \(curve)", offset: offset)
        case .noSignatureSector(let offset):
            return Diagnostic("no valid Secure Boot V2 signature block in the last 4096-byte sector", offset: offset,
                              hint: "the image is unsigned, or its signature sector is damaged")
        case let .alreadySigned(blocks, offset):
            return Diagnostic("input is already signed (\(blocks) valid signature block(s) in the sector at the end)",
                              offset: offset,
                              hint: "use --append to add a signature block, or sign the unsigned image")
        case .appendWithoutSignature(let offset):
            return Diagnostic("--append: the last 4096-byte sector holds no valid signature block", offset: offset,
                              hint: "drop --append to sign an unsigned image")
        case let .staleBlock(index, offset):
            return Diagnostic("existing signature block \(index) does not match the image content (modified after signing?)",
                              offset: offset, hint: "re-sign the unsigned image instead of appending")
        case let .tooManyBlocks(existing, adding):
            return Diagnostic("a signature sector holds at most 3 blocks; it has \(existing) and \(adding) more were requested")
        case .mixedSchemes(let schemes):
            return Diagnostic("one signature sector cannot mix schemes (\(schemes.map(\.displayName).joined(separator: ", ")))",
                              hint: "a bootloader verifies blocks with the one scheme it was built for; sign with keys of one type")
        case .noKeys:
            return Diagnostic("no signing key given", hint: "pass --key KEY.pem, or --pub-key PUB.pem with --signature SIG.bin")
        case let .keySignatureCountMismatch(keys, signatures):
            return Diagnostic("\(keys) --pub-key but \(signatures) --signature given; they pair up in order",
                              hint: "give one --signature per --pub-key")
        case let .signatureFormat(index, what):
            return Diagnostic("signature \(index + 1): \(what)")
        case let .externalSignatureInvalid(index, digestHex):
            return Diagnostic("signature \(index + 1) does not verify with its public key over this image (digest \(digestHex))",
                              hint: "sign exactly the digest printed by `espforge secure-boot digest-to-sign` with the matching private key")
        case .signingFailed(let what):
            return Diagnostic("signing failed: \(what)")
        case let .selfVerificationFailed(index, reason):
            return Diagnostic("internal check failed: signature block \(index) of the output does not verify (\(reason)); nothing written")
        case .verificationFailed(let reasons):
            return Diagnostic("signature not verified: " + reasons.joined(separator: "; "))
        }
    }
}
