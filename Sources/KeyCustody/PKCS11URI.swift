import ESPCore

/// A PKCS#11 URI (RFC 7512) naming a token and a key on it, e.g.
/// `pkcs11:token=line;object=sbv2-2026;type=private`.
///
/// Path attributes select the token (`token`, `serial`, `manufacturer`, `model`, `slot-id`,
/// `slot-description`, `slot-manufacturer`) and the object (`object` = CKA_LABEL, `id` =
/// CKA_ID as percent-encoded bytes, `type`). Query attributes: `module-path` (the module to load,
/// used when no module is named otherwise) and `pin-source` (a PIN file). `pin-value` is refused:
/// a PIN never travels in a URI, which ends up in shell history, logs and the registry.
public struct PKCS11URI: Sendable, Equatable, CustomStringConvertible {
    public enum ObjectType: String, Sendable, Equatable {
        case privateKey = "private", publicKey = "public", certificate = "cert", secretKey = "secret-key", data
    }

    public var token: String?
    public var serial: String?
    public var manufacturer: String?
    public var model: String?
    public var slotID: UInt?
    public var slotDescription: String?
    public var slotManufacturer: String?
    public var object: String?
    public var id: [UInt8]?
    public var type: ObjectType?
    public var modulePath: String?
    public var pinSource: String?

    public init(token: String? = nil, object: String? = nil, id: [UInt8]? = nil, type: ObjectType? = nil) {
        self.token = token; self.object = object; self.id = id; self.type = type
    }

    /// True for text that should be read as a PKCS#11 URI rather than a file name.
    public static func isURI(_ text: String) -> Bool { text.lowercased().hasPrefix("pkcs11:") }

    public static func parse(_ text: String) throws(KeyCustodyError) -> PKCS11URI {
        guard isURI(text) else { throw .badURI(why: "it does not start with `pkcs11:`") }
        let body = String(text.dropFirst("pkcs11:".count))
        let parts = body.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var uri = PKCS11URI()
        var seen = Set<String>()
        func attributes(_ s: Substring, separator: Character) throws(KeyCustodyError) -> [(String, String)] {
            var out: [(String, String)] = []
            for item in s.split(separator: separator) where !item.isEmpty {
                guard let eq = item.firstIndex(of: "=") else { throw .badURI(why: "`\(item)` is not name=value") }
                let name = String(item[..<eq]).lowercased()
                let value = try percentDecode(item[item.index(after: eq)...])
                out.append((name, String(decoding: value, as: UTF8.self)))
                if name == "id" { uri.id = value }
            }
            return out
        }
        for (name, value) in try attributes(parts[0], separator: ";") {
            guard seen.insert(name).inserted else { throw .badURI(why: "attribute `\(name)` appears twice") }
            switch name {
            case "token": uri.token = value
            case "serial": uri.serial = value
            case "manufacturer": uri.manufacturer = value
            case "model": uri.model = value
            case "slot-id":
                guard let v = UInt(value) else { throw .badURI(why: "slot-id `\(value)` is not a number") }
                uri.slotID = v
            case "slot-description": uri.slotDescription = value
            case "slot-manufacturer": uri.slotManufacturer = value
            case "object": uri.object = value
            case "id": break
            case "type":
                guard let t = ObjectType(rawValue: value) else {
                    throw .badURI(why: "type `\(value)` is not one of private, public, cert, secret-key, data")
                }
                uri.type = t
            case "library-manufacturer", "library-description", "library-version":
                break // describe the module; the module is chosen by path
            default:
                throw .badURI(why: "unknown path attribute `\(name)`")
            }
        }
        if parts.count == 2 {
            for (name, value) in try attributes(parts[1], separator: "&") {
                switch name {
                case "pin-value":
                    throw .pinInURI
                case "pin-source":
                    uri.pinSource = value.hasPrefix("file:") ? String(value.dropFirst(5)) : value
                case "module-path": uri.modulePath = value
                case "module-name": break
                default: throw .badURI(why: "unknown query attribute `\(name)`")
                }
            }
        }
        guard uri.object != nil || uri.id != nil else {
            throw .badURI(why: "it names no key: add `object=LABEL` (or `id=%01`)")
        }
        return uri
    }

    /// The URI as recorded and printed: token and object attributes only (never a PIN source or
    /// module path), in a fixed order.
    public var description: String {
        var items: [String] = []
        func add(_ name: String, _ value: String?) { if let value { items.append(name + "=" + Self.percentEncode(Array(value.utf8))) } }
        add("token", token); add("manufacturer", manufacturer); add("model", model); add("serial", serial)
        if let slotID { items.append("slot-id=\(slotID)") }
        add("object", object)
        if let id { items.append("id=" + id.map { "%" + (($0 < 16) ? "0" : "") + String($0, radix: 16) }.joined()) }
        if let type { items.append("type=" + type.rawValue) }
        return "pkcs11:" + items.joined(separator: ";")
    }

    static func percentDecode(_ s: Substring) throws(KeyCustodyError) -> [UInt8] {
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%") {
                guard i + 2 < bytes.count,
                      let v = UInt8(String(decoding: bytes[(i + 1)..<(i + 3)], as: UTF8.self), radix: 16) else {
                    throw .badURI(why: "bad percent-escape in `\(s)`")
                }
                out.append(v)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    static func percentEncode(_ bytes: [UInt8]) -> String {
        let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:[]@!$'()*+,=&".utf8)
        var out = ""
        for b in bytes {
            if plain.contains(b) { out.unicodeScalars.append(Unicode.Scalar(b)) }
            else { out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16) }
        }
        return out
    }
}
