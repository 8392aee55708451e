import Foundation
@testable import NVS
import TestSupport

/// A random nvs_partition_gen CSV and what it should contain.
struct RandomCSV {
    var text: String
    /// (namespace, key, expected rendering in `nvs show`) for plain data entries.
    var expected: [(ns: String, key: String, type: String, value: String)]
    var version: Int
}

enum CSVGen {
    static func quote(_ s: String) -> String {
        if s.contains(",") || s.contains("\"") || s.hasPrefix(" ") {
            return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return s
    }

    static func key(_ rng: inout SeededRandom, used: inout Set<String>) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789_")
        while true {
            let n = Int.random(in: 1...15, using: &rng)
            var k = String(alphabet[Int.random(in: 0..<26, using: &rng)])
            for _ in 1..<n { k.append(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]) }
            if used.insert(k).inserted { return k }
        }
    }

    static func text(_ rng: inout SeededRandom, length: Int) -> String {
        let pool = Array("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.;:\"'!?-_=+/()[]{}<>äöü€")
        var s = ""
        var bytes = 0
        while bytes < length {
            let c = pool[Int.random(in: 0..<pool.count, using: &rng)]
            let n = String(c).utf8.count
            if bytes + n > length { s.append("x"); bytes += 1; continue }
            s.append(c)
            bytes += n
        }
        return s
    }

    /// A random CSV. `fileDir`: folder for `file` rows (absolute paths are written).
    static func make(_ rng: inout SeededRandom, version: Int, entries: Int, fileDir: URL?, big: Bool) throws -> RandomCSV {
        var lines = ["key,type,encoding,value"]
        var expected: [(String, String, String, String)] = []
        var used = Set<String>()
        var namespaces: [String] = []
        var currentNS = ""
        var nsCount = 0
        func newNamespace(_ rng: inout SeededRandom) {
            let n = key(&rng, used: &used)
            namespaces.append(n)
            lines.append("\(n),namespace,,")
            currentNS = n
            nsCount += 1
        }
        newNamespace(&rng)
        if Int.random(in: 0..<4, using: &rng) == 0 { lines.append("# a comment line") }
        for i in 0..<entries {
            if i > 0 && Int.random(in: 0..<12, using: &rng) == 0 { newNamespace(&rng) }
            let k = key(&rng, used: &used)
            let kind = Int.random(in: 0..<16, using: &rng)
            switch kind {
            case 0...7:
                let types = ["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"]
                let t = types[kind]
                let bits = [8, 8, 16, 16, 32, 32, 64, 64][kind]
                let signed = t.hasPrefix("i")
                let raw = rng.next() >> UInt64(64 - bits)
                let value: String
                if signed {
                    let shifted = Int64(bitPattern: raw << UInt64(64 - bits)) >> Int64(64 - bits)
                    value = String(shifted)
                } else {
                    value = String(raw)
                }
                lines.append("\(k),data,\(t),\(value)")
                expected.append((currentNS, k, t, value))
            case 8, 9:
                let maxLen = version == 1 ? 1983 : 3967
                let len = big && Int.random(in: 0..<4, using: &rng) == 0 ? Int.random(in: 1000...maxLen, using: &rng)
                    : Int.random(in: 0...120, using: &rng)
                let s = text(&rng, length: len)
                lines.append("\(k),data,string,\(quote(s))")
                expected.append((currentNS, k, "string", s))
            case 10, 11:
                let maxLen = version == 1 ? 1984 : (big ? 9000 : 600)
                let len = Int.random(in: 0...(Int.random(in: 0..<3, using: &rng) == 0 ? maxLen : 80), using: &rng)
                let b = rng.bytes(len)
                lines.append("\(k),data,hex2bin,\(b.hexString)")
                expected.append((currentNS, k, "blob", b.hexString))
            case 12:
                let b = rng.bytes(Int.random(in: 0...(version == 1 ? 300 : 2000), using: &rng))
                lines.append("\(k),data,base64,\(Data(b).base64EncodedString())")
                expected.append((currentNS, k, "blob", b.hexString))
            case 13:
                let s = text(&rng, length: Int.random(in: 0...60, using: &rng)).filter { $0.isASCII }
                lines.append("\(k),data,binary,\(quote(s))")
                expected.append((currentNS, k, "blob", Array(s.utf8).hexString))
            case 14:
                let n = Int.random(in: 4...64, using: &rng)
                let s = text(&rng, length: Int.random(in: 0...n, using: &rng)).filter { $0.isASCII && $0 != "," && $0 != "\"" }
                let sz = Bool.random(using: &rng)
                let pad = Int.random(in: 0...255, using: &rng)
                let enc = (sz ? "blob_sz_fill(" : "blob_fill(") + "\(n);0x" + String(format: "%02x", pad) + ")"
                var data: [UInt8] = []
                if sz { data.appendLE(UInt32(s.utf8.count)) }
                data += Array(s.utf8) + [UInt8](repeating: UInt8(pad), count: n - s.utf8.count)
                lines.append("\(k),data,\(enc),\(s)")
                expected.append((currentNS, k, "blob", data.hexString))
            default:
                guard let fileDir else {
                    lines.append("\(k),data,u8,7")
                    expected.append((currentNS, k, "u8", "7"))
                    continue
                }
                let url = fileDir.appendingPathComponent("f\(i)-\(k).dat")
                let which = Int.random(in: 0..<4, using: &rng)
                let b = rng.bytes(Int.random(in: 0...(version == 1 ? 1500 : 5000), using: &rng))
                switch which {
                case 0:
                    try Data(b).write(to: url)
                    lines.append("\(k),file,binary,\(url.path)")
                    expected.append((currentNS, k, "blob", b.hexString))
                case 1:
                    try Data(b.hexString.utf8).write(to: url)
                    lines.append("\(k),file,hex2bin,\(url.path)")
                    expected.append((currentNS, k, "blob", b.hexString))
                case 2:
                    try Data(Data(b).base64EncodedString().utf8).write(to: url)
                    lines.append("\(k),file,base64,\(url.path)")
                    expected.append((currentNS, k, "blob", b.hexString))
                default:
                    let s = text(&rng, length: Int.random(in: 0...(version == 1 ? 1000 : 3000), using: &rng))
                    try Data(s.utf8).write(to: url)
                    lines.append("\(k),file,string,\(url.path)")
                    expected.append((currentNS, k, "string", s))
                }
            }
        }
        return RandomCSV(text: lines.joined(separator: "\n") + "\n", expected: expected, version: version)
    }
}

enum NVSOracle {
    /// Runs `python -m esp_idf_nvs_partition_gen` with arguments; returns the output bytes or nil
    /// when the generator failed.
    static func generate(csv: String, size: Int, version: Int, key: [UInt8]? = nil, in dir: URL) throws -> [UInt8]? {
        let csvURL = dir.appendingPathComponent("in-\(UUID().uuidString.prefix(6)).csv")
        try Data(csv.utf8).write(to: csvURL)
        let out = dir.appendingPathComponent("oracle-\(UUID().uuidString.prefix(6)).bin")
        var args = ["-m", "esp_idf_nvs_partition_gen"]
        if let key {
            let keyURL = dir.appendingPathComponent("key-\(UUID().uuidString.prefix(6)).bin")
            try Data((try NVSKeys(raw: key)).image).write(to: keyURL)
            args += ["encrypt", csvURL.path, out.path, "0x" + String(size, radix: 16), "--version", String(version),
                     "--inputkey", keyURL.path]
        } else {
            args += ["generate", csvURL.path, out.path, "0x" + String(size, radix: 16), "--version", String(version)]
        }
        let r = try Oracle.run("python", args)
        guard r.status == 0, let d = FileManager.default.contents(atPath: out.path), !d.isEmpty else { return nil }
        return [UInt8](d)
    }
}

func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String {
    if a.count != b.count { return "sizes differ: \(a.count) vs \(b.count)" }
    for i in 0..<a.count where a[i] != b[i] {
        return "first difference at 0x\(String(i, radix: 16)) (page \(i / 4096), entry \((i % 4096 - 64) / 32)): \(a[i]) vs \(b[i])"
    }
    return "identical"
}
