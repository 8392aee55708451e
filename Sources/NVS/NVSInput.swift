import Crypto

/// One row of an nvs_partition_gen CSV (`key,type,encoding,value`), with the place of each field.
public struct NVSRow: Sendable, Equatable {
    public var line: Int
    public var key: String
    public var keyAt: CSVLocation
    public var type: String
    public var typeAt: CSVLocation
    public var encoding: String
    public var encodingAt: CSVLocation
    /// nil when the row has no value column at all.
    public var value: String?
    public var valueAt: CSVLocation
    /// Per-device config only: the `REPEAT` tag of ESP-IDF's mfg_gen — every device takes the value
    /// the first device row gives this key.
    public var repeatsFirstDevice = false

    public init(line: Int, key: String, type: String, encoding: String, value: String?,
                keyAt: CSVLocation? = nil, typeAt: CSVLocation? = nil, encodingAt: CSVLocation? = nil,
                valueAt: CSVLocation? = nil) {
        self.line = line
        self.key = key
        self.type = type
        self.encoding = encoding
        self.value = value
        self.keyAt = keyAt ?? CSVLocation(line: line, column: 1)
        self.typeAt = typeAt ?? CSVLocation(line: line, column: 1)
        self.encodingAt = encodingAt ?? CSVLocation(line: line, column: 1)
        self.valueAt = valueAt ?? CSVLocation(line: line, column: 1)
    }

    /// For `file` rows: the path as written in the CSV (the caller resolves and reads it).
    public var filePath: String? { type.trimmedASCII() == "file" ? value : nil }
}

/// A typed NVS value, ready to be laid out.
public enum NVSValue: Sendable, Equatable {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), u64(UInt64), i64(Int64)
    /// UTF-8 bytes of a string, without the terminating NUL the layout adds.
    case string([UInt8])
    case blob([UInt8])
}

/// What the generator writes, in CSV order.
public enum NVSItem: Sendable, Equatable {
    case namespace(String, at: CSVLocation?)
    case entry(key: String, value: NVSValue, at: CSVLocation?)
}

/// Reading nvs_partition_gen CSV files.
public enum NVSCSV {
    /// Parses the CSV text into rows. Requires the header `key,type,encoding,value`.
    public static func rows(_ text: String) throws(NVSError) -> [NVSRow] {
        let records = CSVReader.records(text)
        guard let header = records.first else {
            throw .csv("the CSV is empty", line: 1, column: nil, hint: "the first line must be the header `key,type,encoding,value`")
        }
        let names = header.fields.map { $0.text.trimmedASCII() }
        func index(_ name: String) -> Int? { names.firstIndex(of: name) }
        guard let ki = index("key"), let ti = index("type"), let ei = index("encoding") else {
            throw .csv("the header must name the columns key,type,encoding,value", line: header.line, column: 1,
                       hint: "add the line `key,type,encoding,value` at the top of the file")
        }
        let vi = index("value")
        var rows: [NVSRow] = []
        rows.reserveCapacity(records.count)
        for r in records.dropFirst() {
            func field(_ i: Int?) -> (String?, CSVLocation) {
                guard let i, i < r.fields.count else { return (nil, CSVLocation(line: r.line, column: r.endColumn)) }
                let f = r.fields[i]
                return (f.text, CSVLocation(line: r.line, column: f.column))
            }
            let (k, kAt) = field(ki), (t, tAt) = field(ti), (e, eAt) = field(ei), (v, vAt) = field(vi)
            rows.append(NVSRow(line: r.line, key: k ?? "", type: t ?? "", encoding: e ?? "", value: v,
                               keyAt: kAt, typeAt: tAt, encodingAt: eAt, valueAt: vAt))
        }
        return rows
    }

    /// Turns rows into items. `files` maps each `file` row's path (as written) to its contents.
    /// Reproduces nvs_partition_gen's handling, including its Wi-Fi key extras (`sta.ssid`,
    /// `sta.pswd` add `sta.apinfo`, `sta.pmk`, `sta.apsw`; `ap.ssid`+`ap.passwd`+`ap.authmode`
    /// add `ap.pmk_info`).
    public static func items(_ rows: [NVSRow], files: [String: [UInt8]] = [:]) throws(NVSError) -> [NVSItem] {
        var items: [NVSItem] = []
        items.reserveCapacity(rows.count)
        var sawNamespace = false
        var staExtrasWritten = false
        var apSSID: String?, apPass: String?, apAuth: String?
        for row in rows {
            try checkKey(row.key, at: row.keyAt)
            let type = row.type.trimmedASCII()
            guard type == "namespace" || type == "data" || type == "file" else {
                throw .invalidField("unknown type `\(row.type)`", at: row.typeAt,
                                    hint: "the type column must be namespace, data or file")
            }
            if type == "namespace" {
                items.append(.namespace(row.key, at: row.keyAt))
                sawNamespace = true
                continue
            }
            guard sawNamespace else {
                throw .invalidField("entry `\(row.key)` comes before any namespace", at: row.keyAt,
                                    hint: "add a namespace row (e.g. `storage,namespace,,`) before the first entry")
            }
            let encoding = row.encoding.trimmedASCII()
            guard let value = row.value else {
                throw .invalidField("entry `\(row.key)` has no value column", at: row.valueAt,
                                    hint: "rows of type data and file need key,type,encoding,value")
            }
            // Wi-Fi AP: once SSID, password and a non-zero auth mode are known, the PMK is added.
            if ["ap.ssid", "ap.passwd", "ap.authmode"].contains(row.key) {
                if row.key == "ap.ssid" { apSSID = value }
                if row.key == "ap.passwd" { apPass = value }
                if row.key == "ap.authmode" && value != "0" { apAuth = value }
                if let s = apSSID, !s.isEmpty, let p = apPass, !p.isEmpty, let a = apAuth, !a.isEmpty {
                    let pmk = pbkdf2SHA1(password: Array(p.utf8), salt: Array(s.utf8), iterations: 4096, length: 32)
                    items.append(.entry(key: "ap.pmk_info", value: .blob([UInt8](repeating: 0, count: 100) + pmk),
                                        at: row.keyAt))
                }
            }
            // Wi-Fi station: the value is taken as written (data semantics), extras added once.
            if row.key == "sta.ssid" || row.key == "sta.pswd" {
                let v = try convert(encoding: encoding, text: value, bytes: nil, row: row)
                items.append(.entry(key: row.key, value: v, at: row.valueAt))
                if !staExtrasWritten {
                    items.append(.entry(key: "sta.apinfo", value: .blob([UInt8](repeating: 0xFF, count: 140)), at: row.keyAt))
                    items.append(.entry(key: "sta.pmk", value: .blob([UInt8](repeating: 0, count: 32)), at: row.keyAt))
                    items.append(.entry(key: "sta.apsw", value: .blob([0, 0]), at: row.keyAt))
                    staExtrasWritten = true
                }
                continue
            }
            let v: NVSValue
            if type == "file" {
                guard let contents = files[value] else {
                    throw .invalidField("file `\(value)` was not provided", at: row.valueAt, hint: "check the path")
                }
                v = try convert(encoding: encoding, text: nil, bytes: contents, row: row)
            } else {
                v = try convert(encoding: encoding, text: value, bytes: nil, row: row)
            }
            items.append(.entry(key: row.key, value: v, at: row.valueAt))
        }
        return items
    }

    static func checkKey(_ key: String, at: CSVLocation) throws(NVSError) {
        if key.utf8.count > 15 { throw .keyTooLong(key, at: at) }
        if key.utf8.contains(where: { $0 >= 0x80 || $0 == 0 }) {
            throw .invalidField("key `\(key)` contains non-ASCII characters", at: at,
                                hint: "NVS keys are stored as at most 15 ASCII characters")
        }
    }

    /// The encodings a value column may use.
    public static let encodings = ["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "string", "hex2bin",
                                   "base64", "binary"]

    /// Converts one value. Exactly one of `text` (data rows) and `bytes` (file contents) is set.
    static func convert(encoding: String, text: String?, bytes: [UInt8]?, row: NVSRow) throws(NVSError) -> NVSValue {
        let at = row.valueAt
        func asText() throws(NVSError) -> String {
            if let text { return text }
            guard let bytes, let s = String(validating: bytes, as: UTF8.self) else {
                throw .invalidField("file `\(row.value ?? "")` is not UTF-8 text", at: at, hint: nil)
            }
            return s
        }
        switch encoding {
        case "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64":
            let t = try asText()
            guard let (negative, magnitude) = parsePythonInt(t) else {
                throw .invalidField("`\(t)` is not a decimal integer", at: at,
                                    hint: "write \(encoding) values in decimal, e.g. 42 or -7")
            }
            let bits: Int
            switch encoding {
            case "u8", "i8": bits = 8
            case "u16", "i16": bits = 16
            case "u32", "i32": bits = 32
            default: bits = 64
            }
            let signed = encoding.hasPrefix("i")
            // Largest magnitude allowed for this sign.
            let limit: UInt64
            if signed { limit = negative ? (UInt64(1) << (bits - 1)) : (UInt64(1) << (bits - 1)) - 1 }
            else { limit = negative ? 0 : (bits == 64 ? UInt64.max : (UInt64(1) << bits) - 1) }
            guard let m = magnitude, m <= limit else {
                let lo = signed ? "-" + String(UInt64(1) << (bits - 1)) : "0"
                let hi = signed ? String((UInt64(1) << (bits - 1)) - 1) : (bits == 64 ? String(UInt64.max) : String((UInt64(1) << bits) - 1))
                throw .invalidField("\(t.trimmedPython()) is out of range for \(encoding) (\(lo)...\(hi))", at: at, hint: nil)
            }
            // Two's complement bit pattern of the value.
            let pattern: UInt64 = negative ? (0 &- m) : m
            switch encoding {
            case "u8": return .u8(UInt8(truncatingIfNeeded: pattern))
            case "i8": return .i8(Int8(truncatingIfNeeded: pattern))
            case "u16": return .u16(UInt16(truncatingIfNeeded: pattern))
            case "i16": return .i16(Int16(truncatingIfNeeded: pattern))
            case "u32": return .u32(UInt32(truncatingIfNeeded: pattern))
            case "i32": return .i32(Int32(truncatingIfNeeded: pattern))
            case "u64": return .u64(pattern)
            default: return .i64(Int64(bitPattern: pattern))
            }
        case "string":
            return .string(Array(try asText().utf8))
        case "binary":
            if let bytes { return .blob(bytes) }
            return .blob(Array((text ?? "").utf8))
        case "hex2bin":
            let t: String
            if let text { t = text } else { t = String(decoding: bytes ?? [], as: UTF8.self) }
            let stripped = t.trimmedPython()
            if stripped.utf8.count % 2 != 0 {
                throw .invalidField("hex value has an odd number of digits (\(stripped.utf8.count))", at: at,
                                    hint: "hex2bin values need two hex digits per byte")
            }
            guard let data = strictHex(stripped) else {
                throw .invalidField("hex value contains a character that is not a hex digit", at: at,
                                    hint: "hex2bin values may only contain 0-9, a-f and A-F")
            }
            return .blob(data)
        case "base64":
            let raw: [UInt8] = bytes ?? Array((text ?? "").utf8)
            switch base64DecodeLenient(raw) {
            case .success(let data): return .blob(data)
            case .failure(let message): throw .invalidField("invalid base64: \(message)", at: at, hint: nil)
            }
        default:
            if encoding.hasPrefix("blob_fill") || encoding.hasPrefix("blob_sz_fill") {
                return try blobFill(encoding: encoding, text: try asText(), row: row)
            }
            throw .invalidField("unsupported encoding `\(row.encoding)`", at: row.encodingAt,
                                hint: "use one of " + encodings.joined(separator: ", ") + ", blob_fill(N;0xNN) or blob_sz_fill(N;0xNN)")
        }
    }

    /// `blob_fill(LEN;0xNN)` pads the value to LEN bytes with NN; `blob_sz_fill` also prefixes the
    /// u32 LE length of the value.
    static func blobFill(encoding: String, text: String, row: NVSRow) throws(NVSError) -> NVSValue {
        let sz = encoding.hasPrefix("blob_sz_fill")
        let prefix = sz ? "blob_sz_fill(" : "blob_fill("
        let bad = NVSError.invalidField("\(encoding): invalid encoding format", at: row.encodingAt,
                                        hint: "write \(prefix)LENGTH;0xNN), e.g. \(prefix)32;0xff)")
        guard encoding.hasPrefix(prefix) else { throw bad }
        let rest = encoding.utf8.dropFirst(prefix.utf8.count)
        guard let semi = rest.firstIndex(of: UInt8(ascii: ";")) else { throw bad }
        let digits = rest[rest.startIndex..<semi]
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw bad }
        let tail = Array(rest[rest.index(after: semi)...])
        // re.match: the pattern must match at the start; anything after `)` is ignored.
        guard tail.count >= 5, tail[0] == UInt8(ascii: "0"), tail[1] == UInt8(ascii: "x"),
              let pad = strictHex(String(decoding: tail[2..<4], as: UTF8.self)), tail[4] == UInt8(ascii: ")") else { throw bad }
        guard digits.count <= 8, let length = Int(String(decoding: digits, as: UTF8.self)), length <= 1 << 24 else {
            throw .invalidField("\(encoding): length is too large", at: row.encodingAt, hint: nil)
        }
        let value = Array(text.utf8)
        if value.count > length {
            throw .invalidField("\(row.key): value length exceeds specified length (\(value.count) > \(length))",
                                at: row.valueAt, hint: nil)
        }
        var data: [UInt8] = []
        if sz { data.appendLE(UInt32(value.count)) }
        data += value
        data += [UInt8](repeating: pad[0], count: length - value.count)
        return .blob(data)
    }

    /// Python `int(text)` for base 10: surrounding whitespace, optional sign, digits with single
    /// underscores between them.
    /// Returns the sign and magnitude (nil magnitude: does not fit in 64 bits); nil if not a number.
    static func parsePythonInt(_ text: String) -> (Bool, UInt64?)? {
        let t = Array(text.trimmedPython().utf8)
        guard !t.isEmpty else { return nil }
        var i = 0
        var negative = false
        if t[0] == UInt8(ascii: "+") || t[0] == UInt8(ascii: "-") { negative = t[0] == UInt8(ascii: "-"); i = 1 }
        guard i < t.count else { return nil }
        var value: UInt64? = 0
        var lastWasDigit = false
        while i < t.count {
            let c = t[i]
            if c == UInt8(ascii: "_") {
                guard lastWasDigit, i + 1 < t.count else { return nil }
                lastWasDigit = false
            } else if c >= 0x30 && c <= 0x39 {
                if let v = value {
                    let (m, o1) = v.multipliedReportingOverflow(by: 10)
                    let (a, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
                    value = (o1 || o2) ? nil : a
                }
                lastWasDigit = true
            } else {
                return nil
            }
            i += 1
        }
        guard lastWasDigit else { return nil }
        return (negative, value)
    }

    static func strictHex(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        func nib(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var i = 0
        while i < u.count {
            guard let h = nib(u[i]), let l = nib(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    enum Base64Result { case success([UInt8]), failure(String) }

    /// Python's non-strict `binascii.a2b_base64`: characters outside the alphabet are skipped and
    /// decoding stops at a complete padding sequence.
    static func base64DecodeLenient(_ input: [UInt8]) -> Base64Result {
        var out: [UInt8] = []
        var quadPos = 0
        var left: UInt32 = 0
        var pads = 0
        var dataChars = 0
        loop: for c in input {
            if c == UInt8(ascii: "=") {
                if quadPos >= 2 {
                    pads += 1
                    if quadPos + pads >= 4 { quadPos = 0; break loop }
                }
                continue
            }
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            default: continue loop
            }
            pads = 0
            dataChars += 1
            switch quadPos {
            case 0: quadPos = 1; left = v
            case 1: quadPos = 2; out.append(UInt8(truncatingIfNeeded: (left << 2) | (v >> 4))); left = v & 0x0F
            case 2: quadPos = 3; out.append(UInt8(truncatingIfNeeded: (left << 4) | (v >> 2))); left = v & 0x03
            default: quadPos = 0; out.append(UInt8(truncatingIfNeeded: (left << 6) | v)); left = 0
            }
        }
        if quadPos == 1 {
            return .failure("number of data characters (\(dataChars)) cannot be 1 more than a multiple of 4")
        }
        if quadPos != 0 { return .failure("incorrect padding") }
        return .success(out)
    }

    /// PBKDF2-HMAC-SHA1 (the Wi-Fi PMK derivation).
    static func pbkdf2SHA1(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8] {
        let key = SymmetricKey(data: password)
        var out: [UInt8] = []
        var block: UInt32 = 1
        while out.count < length {
            var u = Array(HMAC<Insecure.SHA1>.authenticationCode(for: salt + [UInt8(block >> 24), UInt8((block >> 16) & 0xFF),
                                                                             UInt8((block >> 8) & 0xFF), UInt8(block & 0xFF)],
                                                                  using: key))
            var t = u
            if iterations > 1 {
                for _ in 1..<iterations {
                    u = Array(HMAC<Insecure.SHA1>.authenticationCode(for: u, using: key))
                    for j in 0..<t.count { t[j] ^= u[j] }
                }
            }
            out += t
            block += 1
        }
        return Array(out.prefix(length))
    }
}

extension String {
    /// Strips ASCII spaces/tabs/CR/LF at both ends.
    func trimmedASCII() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s = s.dropLast() }
        return String(s)
    }

    /// Python `str.strip()`: removes Unicode whitespace (and the separators 0x1C-0x1F) at both ends.
    func trimmedPython() -> String {
        let u = self.utf8
        guard let f = u.first, let l = u.last else { return self }
        func plain(_ c: UInt8) -> Bool { c > 0x20 && c < 0x7F }
        if plain(f) && plain(l) { return self }
        func ws(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace || (c.value >= 0x1C && c.value <= 0x1F) }
        let scalars = Array(self.unicodeScalars)
        var a = 0, b = scalars.count
        while a < b && ws(scalars[a]) { a += 1 }
        while b > a && ws(scalars[b - 1]) { b -= 1 }
        var v = String.UnicodeScalarView()
        v.append(contentsOf: scalars[a..<b])
        return String(v)
    }
}
