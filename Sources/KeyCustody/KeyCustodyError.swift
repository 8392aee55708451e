import ESPCore

/// Everything that can go wrong with token keys (PKCS#11), PINs and escrow. Messages never
/// contain a PIN or key material.
public enum KeyCustodyError: Error, Equatable, Sendable {
    // Module and token
    case noModule
    case moduleNotLoadable(path: String, reason: String)
    case pkcs11(function: String, code: UInt)
    case tokenNotFound(uri: String, available: [String])
    case ambiguousToken(uri: String, matches: [String])
    case objectNotFound(uri: String, available: [String])
    case ambiguousObject(uri: String, matches: Int)
    case wrongKeyType(uri: String, why: String)
    case tokenRemoved(during: String)
    case badURI(why: String)
    case hsmConfig(file: String, why: String)
    // PIN
    case pinInURI
    case noPIN(token: String)
    case pinFile(path: String, why: String)
    case wrongPIN(token: String)
    case pinLocked(token: String)
    case pinFinalTry(token: String)
    // Escrow
    case escrowKey(why: String)
    case sealFailed(why: String)
    case unsealFailed(why: String)
    case wrongEscrowKey(recipient: String, mine: String)
}

extension KeyCustodyError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case .noModule:
            return Diagnostic("no PKCS#11 module given for a pkcs11: key",
                              hint: "pass --pkcs11-module /usr/lib/softhsm/libsofthsm2.so, set $ESPFORGE_PKCS11_MODULE, "
                                  + "or add pkcs11_module = \"…\" under [signing]")
        case let .moduleNotLoadable(path, reason):
            return Diagnostic("cannot load the PKCS#11 module: \(reason)", file: path,
                              hint: "check the path (Debian's SoftHSM2: /usr/lib/softhsm/libsofthsm2.so) and that it is a PKCS#11 library for this machine")
        case let .pkcs11(function, code):
            return Diagnostic("\(function) failed: \(PKCS11Codes.name(code)) (0x\(String(code, radix: 16)))",
                              hint: PKCS11Codes.hint(code))
        case let .tokenNotFound(uri, available):
            return Diagnostic("no token matches \(uri)",
                              hint: available.isEmpty ? "the module reports no token at all (is the token plugged in and initialised?)"
                                  : "tokens present: " + available.joined(separator: "; "))
        case let .ambiguousToken(uri, matches):
            return Diagnostic("\(matches.count) tokens match \(uri)",
                              hint: "add serial=… or slot-id=… to pick one: " + matches.joined(separator: "; "))
        case let .objectNotFound(uri, available):
            return Diagnostic("no key matches \(uri) on the token",
                              hint: available.isEmpty ? "the token holds no key objects visible to this session"
                                  : "objects on the token: " + available.joined(separator: "; "))
        case let .ambiguousObject(uri, matches):
            return Diagnostic("\(matches) keys match \(uri)", hint: "add id=… or a more precise object= label")
        case let .wrongKeyType(uri, why):
            return Diagnostic("\(uri) is not a Secure Boot V2 key: \(why)",
                              hint: "Secure Boot V2 signs with RSA-3072 (PSS) or ECDSA P-256/P-384 keys")
        case .tokenRemoved(let during):
            return Diagnostic("the token went away during \(during) (removed, or its session was closed)",
                              hint: "reconnect the token and run again; nothing was signed with a partial result")
        case .badURI(let why):
            return Diagnostic("bad PKCS#11 URI: \(why)",
                              hint: "write e.g. pkcs11:token=line;object=sbv2-2026;type=private (RFC 7512)")
        case let .hsmConfig(file, why):
            return Diagnostic("HSM config: \(why)", file: file,
                              hint: "espsecure's format: [hsm_config] with pkcs11_lib, slot, label (label_pubkey, credentials optional)")
        case .pinInURI:
            return Diagnostic("the PKCS#11 URI carries pin-value; espforge never takes a PIN from a URI or the command line",
                              hint: "set $ESPFORGE_PKCS11_PIN, use a PIN file (mode 0600, --pkcs11-pin-file), or type it at the prompt")
        case .noPIN(let token):
            return Diagnostic("token \(token) needs a PIN and none was given (no terminal to ask on)",
                              hint: "set $ESPFORGE_PKCS11_PIN or pass --pkcs11-pin-file FILE (mode 0600)")
        case let .pinFile(path, why):
            return Diagnostic("PIN file: \(why)", file: path, hint: "create it with `install -m 600 /dev/null FILE` and write the PIN into it")
        case .wrongPIN(let token):
            return Diagnostic("token \(token) rejected the PIN (CKR_PIN_INCORRECT)",
                              hint: "espforge tries a PIN once and stops: a token locks after a few wrong PINs. Check the PIN source and run again")
        case .pinLocked(let token):
            return Diagnostic("token \(token) has locked its user PIN", hint: "the security officer must unlock it (e.g. softhsm2-util / the HSM's admin tool)")
        case .pinFinalTry(let token):
            return Diagnostic("token \(token) allows one more PIN attempt; espforge will not spend it unattended",
                              hint: "check the PIN by hand with the token's own tool first")
        case .escrowKey(let why):
            return Diagnostic("escrow key: \(why)",
                              hint: "an escrow public key is an X25519 (`openssl genpkey -algorithm X25519`) or RSA (≥ 2048 bits) PUBLIC KEY PEM; "
                                  + "`espforge registry escrow-keygen` writes a pair")
        case .sealFailed(let why):
            return Diagnostic("cannot seal the per-device key to the escrow key: \(why)",
                              hint: "nothing was burned or written; fix the escrow key and resume")
        case .unsealFailed(let why):
            return Diagnostic("cannot unseal: \(why)")
        case let .wrongEscrowKey(recipient, mine):
            return Diagnostic("the blob was sealed to escrow key \(recipient.prefix(16))…, not to this private key (\(mine.prefix(16))…)",
                              hint: "use the escrow private key whose public half was configured when the device was provisioned")
        }
    }
}

/// Names and advice for the Cryptoki return values espforge meets.
public enum PKCS11Codes {
    static let names: [UInt: String] = [
        0x0: "CKR_OK", 0x1: "CKR_CANCEL", 0x2: "CKR_HOST_MEMORY", 0x3: "CKR_SLOT_ID_INVALID", 0x5: "CKR_GENERAL_ERROR",
        0x6: "CKR_FUNCTION_FAILED", 0x7: "CKR_ARGUMENTS_BAD", 0x12: "CKR_ATTRIBUTE_TYPE_INVALID",
        0x30: "CKR_DEVICE_ERROR", 0x31: "CKR_DEVICE_MEMORY", 0x32: "CKR_DEVICE_REMOVED",
        0x54: "CKR_FUNCTION_NOT_SUPPORTED", 0x60: "CKR_KEY_HANDLE_INVALID", 0x63: "CKR_KEY_TYPE_INCONSISTENT",
        0x68: "CKR_KEY_FUNCTION_NOT_PERMITTED", 0x70: "CKR_MECHANISM_INVALID", 0x71: "CKR_MECHANISM_PARAM_INVALID",
        0x82: "CKR_OBJECT_HANDLE_INVALID", 0xA0: "CKR_PIN_INCORRECT", 0xA1: "CKR_PIN_INVALID", 0xA2: "CKR_PIN_LEN_RANGE",
        0xA3: "CKR_PIN_EXPIRED", 0xA4: "CKR_PIN_LOCKED", 0xB0: "CKR_SESSION_CLOSED", 0xB3: "CKR_SESSION_HANDLE_INVALID",
        0xE0: "CKR_TOKEN_NOT_PRESENT", 0xE1: "CKR_TOKEN_NOT_RECOGNIZED", 0x100: "CKR_USER_ALREADY_LOGGED_IN",
        0x101: "CKR_USER_NOT_LOGGED_IN", 0x102: "CKR_USER_PIN_NOT_INITIALIZED", 0x150: "CKR_BUFFER_TOO_SMALL",
        0x190: "CKR_CRYPTOKI_NOT_INITIALIZED",
    ]

    public static func name(_ code: UInt) -> String { names[code] ?? "CKR_VENDOR_OR_UNKNOWN" }

    static func hint(_ code: UInt) -> String? {
        switch code {
        case 0x70, 0x71: return "the token does not offer this mechanism (RSA-PSS with SHA-256 / ECDSA); check the HSM's mechanism list"
        case 0x68: return "the key is not allowed to sign (CKA_SIGN is false)"
        case 0x102: return "initialise the token's user PIN first"
        default: return nil
        }
    }

    /// Codes that mean the token or its session is gone.
    static func meansRemoved(_ code: UInt) -> Bool {
        [0x30, 0x32, 0xB0, 0xB3, 0xE0, 0xE1, 0x3].contains(code)
    }
}
