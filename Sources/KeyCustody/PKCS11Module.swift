import CPKCS11
import ESPCore
import Foundation

/// Cryptoki constants espforge uses (values from the PKCS#11 v2.40 specification).
enum CK {
    static let ok: UInt = 0
    static let bufferTooSmall: UInt = 0x150
    static let pinIncorrect: UInt = 0xA0
    static let pinLocked: UInt = 0xA4
    static let userAlreadyLoggedIn: UInt = 0x100
    static let unavailable: UInt = UInt.max

    // Flags
    static let serialSession: UInt = 0x4
    static let rwSession: UInt = 0x2
    static let loginRequired: UInt = 0x4
    static let protectedAuthenticationPath: UInt = 0x100
    static let userPinFinalTry: UInt = 0x20000
    static let userPinLocked: UInt = 0x40000

    // Object classes, key types, attributes
    static let classPublicKey: UInt = 2
    static let classPrivateKey: UInt = 3
    static let keyRSA: UInt = 0
    static let keyEC: UInt = 3
    static let aClass: UInt = 0x0
    static let aToken: UInt = 0x1
    static let aPrivate: UInt = 0x2
    static let aLabel: UInt = 0x3
    static let aKeyType: UInt = 0x100
    static let aID: UInt = 0x102
    static let aSensitive: UInt = 0x103
    static let aSign: UInt = 0x108
    static let aVerify: UInt = 0x10A
    static let aModulus: UInt = 0x120
    static let aModulusBits: UInt = 0x121
    static let aPublicExponent: UInt = 0x122
    static let aExtractable: UInt = 0x162
    static let aECParams: UInt = 0x180
    static let aECPoint: UInt = 0x181

    // Mechanisms
    static let mRSAKeyPairGen: UInt = 0x0
    static let mRSAPSS: UInt = 0xD
    static let mECKeyPairGen: UInt = 0x1040
    static let mECDSA: UInt = 0x1041
    static let mSHA256: UInt = 0x250
    static let mgf1SHA256: UInt = 0x2
}

/// A token as the module describes it (for matching and for "what is there" messages).
public struct TokenInfo: Sendable, Equatable, CustomStringConvertible {
    public var slotID: UInt
    public var label: String
    public var manufacturer: String
    public var model: String
    public var serial: String
    public var slotDescription: String
    public var slotManufacturer: String
    public var flags: UInt

    public var description: String { "token=\(label) (serial \(serial), slot-id=\(slotID), \(manufacturer) \(model))" }

    func matches(_ uri: PKCS11URI) -> Bool {
        if let v = uri.token, v != label { return false }
        if let v = uri.serial, v != serial { return false }
        if let v = uri.manufacturer, v != manufacturer { return false }
        if let v = uri.model, v != model { return false }
        if let v = uri.slotID, v != slotID { return false }
        if let v = uri.slotDescription, v != slotDescription { return false }
        if let v = uri.slotManufacturer, v != slotManufacturer { return false }
        return true
    }
}

/// A loaded PKCS#11 module (dlopen + C_GetFunctionList + C_Initialize).
///
/// A module is a process-wide resource (dlopen hands out one copy; C_Finalize would end it for
/// every user), so each path is loaded once and kept for the life of the process: use
/// ``load(path:)``.
public final class PKCS11Module: @unchecked Sendable {
    let handle: OpaquePointer
    public let path: String

    nonisolated(unsafe) private static var loaded: [String: PKCS11Module] = [:]
    private static let cacheLock = NSLock()

    /// The module at `path`, loaded and initialised on first use.
    public static func load(path: String) throws(KeyCustodyError) -> PKCS11Module {
        cacheLock.lock(); defer { cacheLock.unlock() }
        if let m = loaded[path] { return m }
        let m = try PKCS11Module(path: path)
        loaded[path] = m
        return m
    }

    private init(path: String) throws(KeyCustodyError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let h = ef_p11_load(path, &error, error.count) else {
            let reason = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw .moduleNotLoadable(path: path, reason: reason.isEmpty ? "unknown error" : reason)
        }
        handle = h
        self.path = path
        let rv = UInt(ef_p11_initialize(h))
        guard rv == CK.ok else {
            ef_p11_unload(h)
            throw .moduleNotLoadable(path: path, reason: "C_Initialize failed: \(PKCS11Codes.name(rv))")
        }
    }

    func check(_ rv: ef_ck_ulong, _ function: String) throws(KeyCustodyError) {
        let code = UInt(rv)
        guard code == CK.ok else {
            if PKCS11Codes.meansRemoved(code) { throw .tokenRemoved(during: function) }
            throw .pkcs11(function: function, code: code)
        }
    }

    /// Every token present, with its slot.
    public func tokens() throws(KeyCustodyError) -> [TokenInfo] {
        var count: ef_ck_ulong = 0
        try check(ef_p11_get_slot_list(handle, 1, nil, &count), "C_GetSlotList")
        var slots = [ef_ck_ulong](repeating: 0, count: Int(count))
        if count > 0 { try check(ef_p11_get_slot_list(handle, 1, &slots, &count), "C_GetSlotList") }
        var out: [TokenInfo] = []
        for slot in slots.prefix(Int(count)) {
            var ti = ef_ck_token_info()
            var si = ef_ck_slot_info()
            guard ef_p11_get_token_info(handle, slot, &ti) == CK.ok else { continue }
            _ = ef_p11_get_slot_info(handle, slot, &si)
            out.append(TokenInfo(slotID: UInt(slot), label: Self.text(&ti.label), manufacturer: Self.text(&ti.manufacturer_id),
                                 model: Self.text(&ti.model), serial: Self.text(&ti.serial_number),
                                 slotDescription: Self.text(&si.slot_description), slotManufacturer: Self.text(&si.manufacturer_id),
                                 flags: UInt(ti.flags)))
        }
        return out
    }

    /// The one token `uri` selects.
    public func token(matching uri: PKCS11URI) throws(KeyCustodyError) -> TokenInfo {
        let all = try tokens()
        let matching = all.filter { $0.matches(uri) }
        guard !matching.isEmpty else { throw .tokenNotFound(uri: uri.description, available: all.map(\.description)) }
        guard matching.count == 1 else { throw .ambiguousToken(uri: uri.description, matches: matching.map(\.description)) }
        return matching[0]
    }

    /// Current flags of a token (PIN counters change after failed logins).
    func tokenFlags(_ slot: UInt) throws(KeyCustodyError) -> UInt {
        var ti = ef_ck_token_info()
        try check(ef_p11_get_token_info(handle, ef_ck_ulong(slot), &ti), "C_GetTokenInfo")
        return UInt(ti.flags)
    }

    /// Blank-padded fixed-width UTF-8 field → trimmed string.
    static func text<T>(_ field: inout T) -> String {
        withUnsafeBytes(of: &field) { raw in
            var s = String(decoding: raw, as: UTF8.self)
            while let last = s.last, last == " " || last == "\0" { s.removeLast() }
            return s
        }
    }
}

/// An object on a token (for messages).
public struct TokenObject: Sendable, Equatable, CustomStringConvertible {
    public var handle: UInt
    public var objectClass: UInt
    public var label: String
    public var id: [UInt8]
    public var keyType: UInt?

    public var description: String {
        let cls: String
        switch objectClass { case 0: cls = "data"; case 1: cls = "cert"; case 2: cls = "public"; case 3: cls = "private"; case 4: cls = "secret-key"; default: cls = "class \(objectClass)" }
        let kt = keyType.map { $0 == CK.keyRSA ? " RSA" : $0 == CK.keyEC ? " EC" : " key type \($0)" } ?? ""
        let idText = id.isEmpty ? "" : ";id=" + id.map { "%" + ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        return "object=\(label)\(idText);type=\(cls)\(kt)"
    }
}

/// One session on one token. Calls are serialised; a session is logged in at most once.
public final class PKCS11Session: @unchecked Sendable {
    public let module: PKCS11Module
    public let token: TokenInfo
    let session: ef_ck_ulong
    let lock = NSLock()
    public private(set) var loggedIn = false

    public init(module: PKCS11Module, token: TokenInfo, readWrite: Bool = false) throws(KeyCustodyError) {
        self.module = module
        self.token = token
        var s: ef_ck_ulong = 0
        try module.check(ef_p11_open_session(module.handle, ef_ck_ulong(token.slotID),
                                             ef_ck_ulong(CK.serialSession | (readWrite ? CK.rwSession : 0)), &s), "C_OpenSession")
        session = s
    }

    deinit { _ = ef_p11_close_session(module.handle, session) }

    var needsLogin: Bool { token.flags & CK.loginRequired != 0 }

    /// Logs in once with the PIN `pin()` supplies (asked only when needed). A wrong PIN is
    /// reported, never retried; a token on its last attempt is not tried at all.
    public func login(pin: () throws -> [UInt8]?) throws {
        lock.lock(); defer { lock.unlock() }
        guard !loggedIn, needsLogin else { return }
        let flags = try module.tokenFlags(token.slotID)
        if flags & CK.userPinLocked != 0 { throw KeyCustodyError.pinLocked(token: token.label) }
        if flags & CK.userPinFinalTry != 0 { throw KeyCustodyError.pinFinalTry(token: token.label) }
        var rv: ef_ck_ulong
        if flags & CK.protectedAuthenticationPath != 0 {
            rv = ef_p11_login(module.handle, session, nil, 0)
        } else {
            guard var secret = try pin() else { throw KeyCustodyError.noPIN(token: token.label) }
            defer { for i in secret.indices { secret[i] = 0 } }
            rv = secret.withUnsafeBufferPointer { ef_p11_login(module.handle, session, $0.baseAddress, ef_ck_ulong($0.count)) }
        }
        switch UInt(rv) {
        case CK.ok, CK.userAlreadyLoggedIn: loggedIn = true
        case CK.pinIncorrect: throw KeyCustodyError.wrongPIN(token: token.label)
        case CK.pinLocked: throw KeyCustodyError.pinLocked(token: token.label)
        default: try module.check(rv, "C_Login")
        }
    }

    /// Handles of the objects matching a template built from class, label and id.
    func find(objectClass: UInt?, label: String?, id: [UInt8]?) throws(KeyCustodyError) -> [UInt] {
        var attrs: [(UInt, [UInt8])] = []
        if let objectClass { attrs.append((CK.aClass, Self.ulongBytes(objectClass))) }
        if let label { attrs.append((CK.aLabel, Array(label.utf8))) }
        if let id { attrs.append((CK.aID, id)) }
        lock.lock(); defer { lock.unlock() }
        let rv: ef_ck_ulong = Self.withTemplate(attrs) { t, n in ef_p11_find_objects_init(module.handle, session, t, n) }
        try module.check(rv, "C_FindObjectsInit")
        var out: [UInt] = []
        var buffer = [ef_ck_ulong](repeating: 0, count: 64)
        while true {
            var found: ef_ck_ulong = 0
            let r = ef_p11_find_objects(module.handle, session, &buffer, ef_ck_ulong(buffer.count), &found)
            if r != CK.ok { _ = ef_p11_find_objects_final(module.handle, session); try module.check(r, "C_FindObjects") }
            if found == 0 { break }
            out += buffer.prefix(Int(found)).map { UInt($0) }
            if out.count > 10_000 { break }
        }
        try module.check(ef_p11_find_objects_final(module.handle, session), "C_FindObjectsFinal")
        return out
    }

    /// One attribute's value (nil when the object does not have it or will not reveal it).
    func attribute(_ object: UInt, _ type: UInt) throws(KeyCustodyError) -> [UInt8]? {
        lock.lock(); defer { lock.unlock() }
        var a = ef_ck_attribute(type: ef_ck_ulong(type), value: nil, value_len: 0)
        var rv = ef_p11_get_attribute_value(module.handle, session, ef_ck_ulong(object), &a, 1)
        if PKCS11Codes.meansRemoved(UInt(rv)) { try module.check(rv, "C_GetAttributeValue") }
        guard rv == CK.ok, a.value_len != ef_ck_ulong(CK.unavailable) else { return nil }
        var value = [UInt8](repeating: 0, count: Int(a.value_len))
        rv = value.withUnsafeMutableBytes { raw in
            a.value = raw.baseAddress
            return ef_p11_get_attribute_value(module.handle, session, ef_ck_ulong(object), &a, 1)
        }
        if PKCS11Codes.meansRemoved(UInt(rv)) { try module.check(rv, "C_GetAttributeValue") }
        guard rv == CK.ok, a.value_len != ef_ck_ulong(CK.unavailable) else { return nil }
        return Array(value.prefix(Int(a.value_len)))
    }

    func ulongAttribute(_ object: UInt, _ type: UInt) throws(KeyCustodyError) -> UInt? {
        guard let b = try attribute(object, type), b.count == MemoryLayout<UInt>.size else { return nil }
        return b.withUnsafeBytes { $0.loadUnaligned(as: UInt.self) }
    }

    /// Every object this session can see, described.
    public func objects() throws(KeyCustodyError) -> [TokenObject] {
        try find(objectClass: nil, label: nil, id: nil).map { h throws(KeyCustodyError) in
            TokenObject(handle: h, objectClass: try ulongAttribute(h, CK.aClass) ?? UInt.max,
                        label: try attribute(h, CK.aLabel).map { String(decoding: $0, as: UTF8.self) } ?? "",
                        id: try attribute(h, CK.aID) ?? [], keyType: try ulongAttribute(h, CK.aKeyType))
        }
    }

    /// C_SignInit + C_Sign in one call.
    func sign(key: UInt, mechanism: UInt, parameter: [UInt8]?, data: [UInt8]) throws(KeyCustodyError) -> [UInt8] {
        lock.lock(); defer { lock.unlock() }
        var param = parameter ?? []
        let rvInit: ef_ck_ulong = param.withUnsafeMutableBytes { raw in
            var m = ef_ck_mechanism(mechanism: ef_ck_ulong(mechanism), parameter: parameter == nil ? nil : raw.baseAddress,
                                    parameter_len: ef_ck_ulong(parameter?.count ?? 0))
            return ef_p11_sign_init(module.handle, session, &m, ef_ck_ulong(key))
        }
        try module.check(rvInit, "C_SignInit")
        var out = [UInt8](repeating: 0, count: 1024)
        var length = ef_ck_ulong(out.count)
        let rv = data.withUnsafeBufferPointer { d in
            ef_p11_sign(module.handle, session, d.baseAddress, ef_ck_ulong(d.count), &out, &length)
        }
        try module.check(rv, "C_Sign")
        return Array(out.prefix(Int(length)))
    }

    /// C_GenerateKeyPair on the token (persistent objects; the private key sensitive and not
    /// extractable). Used by `keygen --token` and the tests.
    func generateKeyPair(mechanism: UInt, publicTemplate: [(UInt, [UInt8])], privateTemplate: [(UInt, [UInt8])]) throws(KeyCustodyError) -> (UInt, UInt) {
        lock.lock(); defer { lock.unlock() }
        var pub: ef_ck_ulong = 0, priv: ef_ck_ulong = 0
        let rv: ef_ck_ulong = Self.withTemplate(publicTemplate) { pt, pn in
            Self.withTemplate(privateTemplate) { st, sn in
                var m = ef_ck_mechanism(mechanism: ef_ck_ulong(mechanism), parameter: nil, parameter_len: 0)
                return ef_p11_generate_key_pair(module.handle, session, &m, pt, pn, st, sn, &pub, &priv)
            }
        }
        try module.check(rv, "C_GenerateKeyPair")
        return (UInt(pub), UInt(priv))
    }

    /// Test hook: closes every session of the token, as pulling it out would.
    public func simulateRemoval() {
        _ = ef_p11_close_all_sessions(module.handle, ef_ck_ulong(token.slotID))
    }

    static func ulongBytes(_ v: UInt) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    static let trueByte: [UInt8] = [1]
    static let falseByte: [UInt8] = [0]

    /// Runs `body` with a C attribute array over `attrs` (the value buffers live for the call).
    static func withTemplate<R>(_ attrs: [(UInt, [UInt8])], _ body: (UnsafeMutablePointer<ef_ck_attribute>?, ef_ck_ulong) -> R) -> R {
        var buffers: [UnsafeMutableRawPointer] = []
        defer { for b in buffers { b.deallocate() } }
        var template: [ef_ck_attribute] = []
        for (type, value) in attrs {
            let b = UnsafeMutableRawPointer.allocate(byteCount: max(1, value.count), alignment: 16)
            buffers.append(b)
            value.withUnsafeBytes { if let base = $0.baseAddress { b.copyMemory(from: base, byteCount: $0.count) } }
            template.append(ef_ck_attribute(type: ef_ck_ulong(type), value: b, value_len: ef_ck_ulong(value.count)))
        }
        return template.withUnsafeMutableBufferPointer { body($0.baseAddress, ef_ck_ulong($0.count)) }
    }
}
