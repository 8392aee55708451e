import Crypto
import ESPCore
import Foundation
import NVS
import Registry

/// The one reader of identity pools: a per-device values CSV (header `id,KEY1,KEY2,…`, then one
/// row per device) becomes the pool's rows, keyed by the id in the first column. Used by
/// `espforge registry pool --load` and by `provision` alike, so both store the same thing.
///
/// Each row keeps where it came from (`FILE line N`) and a SHA-256 digest of its values (the
/// non-empty cells with their column names, in column-name order) — never the values: a reload
/// that brings an id back with other values is refused by the registry, naming both places.
public enum IdentityPoolFile {
    public static func rows(valuesCSV text: String, file: String) throws(IdentityPoolError) -> [IdentityRow] {
        let name = (file as NSString).lastPathComponent
        var records = CSVReader.records(text)
        guard !records.isEmpty else {
            throw IdentityPoolError(Diagnostic("the values CSV is empty", file: file, hint: "the first line is a header: id,KEY1,KEY2,…"))
        }
        let header = records.removeFirst().fields.map { trim($0.text) }
        var seen: [String: Int] = [:]
        var rows: [IdentityRow] = []
        for r in records {
            let id = trim(r.fields.first?.text ?? "")
            guard !id.isEmpty else {
                throw IdentityPoolError(Diagnostic("empty device id", line: r.line, column: 1, file: file,
                                                   hint: "the first column names the device (e.g. a serial number)"))
            }
            if let first = seen[id] {
                throw IdentityPoolError(Diagnostic("device id `\(id)` appears twice (first on line \(first))", line: r.line, column: 1, file: file))
            }
            seen[id] = r.line
            var cells: [(String, String)] = []
            for (i, f) in r.fields.enumerated().dropFirst() where !f.text.isEmpty {
                cells.append((i < header.count ? header[i] : "#\(i + 1)", f.text))
            }
            rows.append(IdentityRow(id: id, ordinal: r.line, digest: digest(id: id, cells: cells), source: "\(name) line \(r.line)"))
        }
        return rows
    }

    /// The same rows from devices already expanded by ``NVSPerDevice`` (their values that came
    /// from the values CSV), for jobs built without the file at hand.
    public static func rows(devices: [NVSDevice], source: String) -> [IdentityRow] {
        devices.map { d in
            var cells: [String: String] = [:]
            for (row, constant) in zip(d.rows, d.fromConfig) where !constant && row.type != "namespace" {
                cells[trim(row.key)] = row.value ?? ""
            }
            return IdentityRow(id: d.id, ordinal: d.line, digest: digest(id: d.id, cells: cells.map { ($0.key, $0.value) }),
                               source: "\(source) line \(d.line)")
        }
    }

    /// SHA-256 over the id and the (column, value) pairs sorted by column, each length-prefixed.
    static func digest(id: String, cells: [(String, String)]) -> String {
        var h = SHA256()
        func put(_ s: String) {
            let bytes = Array(s.utf8)
            h.update(data: withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { Array($0) })
            h.update(data: bytes)
        }
        put("espforge identity row v1")
        put(id)
        for (k, v) in cells.sorted(by: { $0.0 < $1.0 }) { put(k); put(v) }
        return h.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func trim(_ s: String) -> String { s.trimmingCharacters(in: CharacterSet(charactersIn: " \t\r")) }
}

public struct IdentityPoolError: Error, DiagnosticConvertible, Sendable {
    public var diagnostic: Diagnostic
    public init(_ diagnostic: Diagnostic) { self.diagnostic = diagnostic }
}
