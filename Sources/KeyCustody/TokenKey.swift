import Crypto
import _CryptoExtras
import ESPCore
import Foundation
import SecureBoot

/// Which PKCS#11 module to load for a `pkcs11:` key: the command line's `--pkcs11-module`,
/// else `$ESPFORGE_PKCS11_MODULE`, else the manifest's `pkcs11_module`, else the URI's
/// `module-path`.
public enum PKCS11ModuleChoice {
    public static let environmentVariable = "ESPFORGE_PKCS11_MODULE"

    public static func resolve(commandLine: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                               manifest: String?, uri: PKCS11URI) throws(KeyCustodyError) -> String {
        if let p = commandLine, !p.isEmpty { return p }
        if let p = environment[environmentVariable], !p.isEmpty { return p }
        if let p = manifest, !p.isEmpty { return p }
        if let p = uri.modulePath, !p.isEmpty { return p }
        throw .noModule
    }
}

/// A Secure Boot V2 key that lives on a PKCS#11 token: signatures are made by the token
/// (`C_Sign`: CKM_RSA_PKCS_PSS with SHA-256/MGF1-SHA-256/salt 32, or CKM_ECDSA over the digest);
/// the private key never leaves it.
public final class TokenSigningKey: ImageSigningKey, @unchecked Sendable {
    public let uri: PKCS11URI
    public let session: PKCS11Session
    let privateHandle: UInt
    public let publicKey: VerifyingKey

    init(uri: PKCS11URI, session: PKCS11Session, privateHandle: UInt, publicKey: VerifyingKey) {
        self.uri = uri; self.session = session; self.privateHandle = privateHandle; self.publicKey = publicKey
    }

    public func sign(contentDigest: ContentDigest) throws -> [UInt8] {
        switch (publicKey, contentDigest) {
        case (.rsa, .sha256):
            var params: [UInt8] = []
            for v in [CK.mSHA256, CK.mgf1SHA256, UInt(32)] { params += PKCS11Session.ulongBytes(v) }
            return try session.sign(key: privateHandle, mechanism: CK.mRSAPSS, parameter: params, data: contentDigest.bytes)
        case (.p256, .sha256), (.p384, .sha384):
            return try session.sign(key: privateHandle, mechanism: CK.mECDSA, parameter: nil, data: contentDigest.bytes)
        default:
            throw SecureBootError.signingFailed("digest type does not fit the token key")
        }
    }
}

/// Opening keys on tokens by URI.
public enum TokenKeys {
    /// Opens the private key `uri` names for signing: loads the module, finds the one matching
    /// token, logs in (PIN from `pin`), finds the one matching private key and its public half,
    /// and checks it is an RSA-3072 or P-256/P-384 key allowed to sign.
    public static func signingKey(uri: PKCS11URI, modulePath: String, pin: PINSource) throws -> TokenSigningKey {
        if let t = uri.type, t != .privateKey {
            throw KeyCustodyError.badURI(why: "signing needs type=private (or no type), not type=\(t.rawValue)")
        }
        let module = try PKCS11Module.load(path: modulePath)
        let token = try module.token(matching: uri)
        let session = try PKCS11Session(module: module, token: token)
        try session.login { () throws -> [UInt8]? in try pin.pin(for: token.label) }
        let handles = try session.find(objectClass: CK.classPrivateKey, label: uri.object, id: uri.id)
        guard !handles.isEmpty else {
            throw KeyCustodyError.objectNotFound(uri: uri.description, available: try session.objects().map(\.description))
        }
        guard handles.count == 1 else { throw KeyCustodyError.ambiguousObject(uri: uri.description, matches: handles.count) }
        let key = handles[0]
        if let canSign = try session.attribute(key, CK.aSign), canSign.first == 0 {
            throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "the key is not allowed to sign (CKA_SIGN = false)")
        }
        let publicKey = try publicKey(session: session, privateHandle: key, uri: uri)
        return TokenSigningKey(uri: uri, session: session, privateHandle: key, publicKey: publicKey)
    }

    /// The public key `uri` names (a public key object, or the public half of a private key
    /// object). Logs in only if the object is not visible without it and a PIN source has a PIN.
    public static func verifyingKey(uri: PKCS11URI, modulePath: String, pin: PINSource) throws -> VerifyingKey {
        let module = try PKCS11Module.load(path: modulePath)
        let token = try module.token(matching: uri)
        let session = try PKCS11Session(module: module, token: token)
        func lookup() throws -> VerifyingKey? {
            if uri.type != .privateKey {
                let pubs = try session.find(objectClass: CK.classPublicKey, label: uri.object, id: uri.id)
                if pubs.count > 1 { throw KeyCustodyError.ambiguousObject(uri: uri.description, matches: pubs.count) }
                if let h = pubs.first { return try publicKeyFromObject(session: session, handle: h, uri: uri) }
            }
            if uri.type != .publicKey {
                let privs = try session.find(objectClass: CK.classPrivateKey, label: uri.object, id: uri.id)
                if privs.count > 1 { throw KeyCustodyError.ambiguousObject(uri: uri.description, matches: privs.count) }
                if let h = privs.first { return try publicKey(session: session, privateHandle: h, uri: uri) }
            }
            return nil
        }
        if let k = try lookup() { return k }
        if session.needsLogin, !session.loggedIn {
            let source = pin
            try session.login { () throws -> [UInt8]? in try source.pin(for: token.label) }
            if let k = try lookup() { return k }
        }
        throw KeyCustodyError.objectNotFound(uri: uri.description, available: try session.objects().map(\.description))
    }

    /// The public key matching a private key object: the public key object with the same
    /// CKA_ID (or label), else (RSA) the modulus and exponent the private object reveals.
    static func publicKey(session: PKCS11Session, privateHandle: UInt, uri: PKCS11URI) throws -> VerifyingKey {
        let id = try session.attribute(privateHandle, CK.aID)
        let label = try session.attribute(privateHandle, CK.aLabel).map { String(decoding: $0, as: UTF8.self) }
        var candidates: [UInt] = []
        if let id, !id.isEmpty { candidates = try session.find(objectClass: CK.classPublicKey, label: nil, id: id) }
        if candidates.count != 1, let label { candidates = try session.find(objectClass: CK.classPublicKey, label: label, id: id) }
        if candidates.count == 1 { return try publicKeyFromObject(session: session, handle: candidates[0], uri: uri) }
        let type = try session.ulongAttribute(privateHandle, CK.aKeyType)
        if type == CK.keyRSA, let n = try session.attribute(privateHandle, CK.aModulus),
           let e = try session.attribute(privateHandle, CK.aPublicExponent) {
            return try rsaKey(n: n, e: e, uri: uri)
        }
        throw KeyCustodyError.objectNotFound(uri: uri.description + " (its public key object)",
                                             available: try session.objects().map(\.description))
    }

    static func publicKeyFromObject(session: PKCS11Session, handle: UInt, uri: PKCS11URI) throws -> VerifyingKey {
        switch try session.ulongAttribute(handle, CK.aKeyType) {
        case CK.keyRSA?:
            guard let n = try session.attribute(handle, CK.aModulus), let e = try session.attribute(handle, CK.aPublicExponent) else {
                throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "the RSA key does not reveal its modulus")
            }
            return try rsaKey(n: n, e: e, uri: uri)
        case CK.keyEC?:
            guard let params = try session.attribute(handle, CK.aECParams), let point = try session.attribute(handle, CK.aECPoint) else {
                throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "the EC key does not reveal its curve and point")
            }
            return try ecKey(params: params, point: point, uri: uri)
        case let other:
            throw KeyCustodyError.wrongKeyType(uri: uri.description, why: other.map { "key type \($0) (neither RSA nor EC)" } ?? "not a key")
        }
    }

    static func rsaKey(n: [UInt8], e: [UInt8], uri: PKCS11URI) throws -> VerifyingKey {
        let modulus = Array(n.drop { $0 == 0 })
        let bits = modulus.isEmpty ? 0 : (modulus.count - 1) * 8 + (8 - modulus[0].leadingZeroBitCount)
        guard bits == 3072 else {
            throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "RSA key of \(bits) bits; Secure Boot V2 needs RSA-3072")
        }
        do { return .rsa(try _RSA.Signing.PublicKey(n: modulus, e: Array(e.drop { $0 == 0 }))) } catch {
            throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "the RSA modulus/exponent do not form a key")
        }
    }

    static let p256OID: [UInt8] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
    static let p384OID: [UInt8] = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22]

    static func ecKey(params: [UInt8], point: [UInt8], uri: PKCS11URI) throws -> VerifyingKey {
        // CKA_EC_POINT is a DER OCTET STRING around the X9.63 point (some modules give it bare).
        var raw = point
        if raw.count >= 2, raw[0] == 0x04, raw.count != 65, raw.count != 97 {
            var i = 1
            var length = Int(raw[i]); i += 1
            if length & 0x80 != 0 {
                let n = length & 0x7F
                guard n <= 2, raw.count >= i + n else { throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "malformed EC point") }
                length = raw[i..<(i + n)].reduce(0) { $0 << 8 | Int($1) }; i += n
            }
            guard raw.count == i + length else { throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "malformed EC point") }
            raw = Array(raw[i...])
        }
        do {
            if params == p256OID { return .p256(try P256.Signing.PublicKey(x963Representation: raw)) }
            if params == p384OID { return .p384(try P384.Signing.PublicKey(x963Representation: raw)) }
        } catch {
            throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "the EC point is not on its curve")
        }
        throw KeyCustodyError.wrongKeyType(uri: uri.description, why: "EC key on a curve other than P-256 or P-384 (parameters \(params.hexString))")
    }

    /// Generates a key pair on the token under the URI's label and id (private key sensitive,
    /// never extractable, allowed to sign). Returns its public key.
    public static func generate(_ scheme: SignatureScheme, uri: PKCS11URI, modulePath: String, pin: PINSource) throws -> VerifyingKey {
        let pubHandle: UInt, session: PKCS11Session
        switch scheme {
        case .rsa3072: (session, pubHandle) = try generateOnToken(uri: uri, modulePath: modulePath, pin: pin, rsaBits: 3072, ecParams: nil)
        case .ecdsa256: (session, pubHandle) = try generateOnToken(uri: uri, modulePath: modulePath, pin: pin, rsaBits: nil, ecParams: p256OID)
        case .ecdsa384: (session, pubHandle) = try generateOnToken(uri: uri, modulePath: modulePath, pin: pin, rsaBits: nil, ecParams: p384OID)
        case .ecdsa192: throw SecureBootError.unsupportedKeyType("ECDSA P-192 keys on PKCS#11 tokens (generate the key with -o FILE.pem instead)")
        }
        return try publicKeyFromObject(session: session, handle: pubHandle, uri: uri)
    }

    /// Any RSA size or EC curve (the tests make keys of the wrong kind with it).
    static func generateOnToken(uri: PKCS11URI, modulePath: String, pin: PINSource, rsaBits: UInt?,
                                ecParams: [UInt8]?) throws -> (PKCS11Session, UInt) {
        guard let label = uri.object else { throw KeyCustodyError.badURI(why: "keygen needs object=LABEL") }
        let module = try PKCS11Module.load(path: modulePath)
        let token = try module.token(matching: uri)
        let session = try PKCS11Session(module: module, token: token, readWrite: true)
        try session.login { () throws -> [UInt8]? in try pin.pin(for: token.label) }
        if !(try session.find(objectClass: nil, label: label, id: uri.id)).isEmpty {
            throw KeyCustodyError.badURI(why: "the token already holds an object \(uri.description); refusing to add a second one")
        }
        let t = PKCS11Session.trueByte, f = PKCS11Session.falseByte
        var common: [(UInt, [UInt8])] = [(CK.aToken, t), (CK.aLabel, Array(label.utf8))]
        if let id = uri.id { common.append((CK.aID, id)) }
        let priv = common + [(CK.aPrivate, t), (CK.aSensitive, t), (CK.aExtractable, f), (CK.aSign, t)]
        var pub = common + [(CK.aVerify, t)]
        let mechanism: UInt
        if let rsaBits {
            mechanism = CK.mRSAKeyPairGen
            pub += [(CK.aModulusBits, PKCS11Session.ulongBytes(rsaBits)), (CK.aPublicExponent, [0x01, 0x00, 0x01])]
        } else {
            mechanism = CK.mECKeyPairGen
            pub.append((CK.aECParams, ecParams ?? p256OID))
        }
        let (pubHandle, _) = try session.generateKeyPair(mechanism: mechanism, publicTemplate: pub, privateTemplate: priv)
        return (session, pubHandle)
    }
}
