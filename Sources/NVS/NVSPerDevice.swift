/// Per-device NVS images (what ESP-IDF's mfg_gen does): a config CSV names the namespaces and
/// keys, a values CSV has one row per device, its first column an id such as a serial number.
///
/// Config CSV: `key,type,encoding[,value]` lines (an optional header line `key,type,encoding,…`
/// is skipped); namespace lines are `name,namespace,`. A value in the config is a constant for
/// every device unless the values CSV has a column of that key. The value `REPEAT` is mfg_gen's
/// tag: the key's value is read from the first device row and used for every device (later rows'
/// cells for it are ignored, as mfg_gen overwrites them; ESP-IDF tools/mass_mfg/mfg_gen.py).
/// Values CSV: a header line `id,key1,key2,…` (the first column's name is free), then one line
/// per device. A column fills every config entry with that key. An empty cell counts as missing.
public struct NVSDevice: Sendable, Equatable {
    public var id: String
    /// Line of the device in the values CSV.
    public var line: Int
    /// The device's rows in nvs_partition_gen form (value locations point into the values CSV,
    /// or into the config CSV for constants).
    public var rows: [NVSRow]
    /// For each row: true when its value came from the config CSV (a constant).
    public var fromConfig: [Bool]
}

public enum NVSPerDevice {
    /// Reads the config CSV and checks keys, types and encodings (values are checked per device).
    public static func config(_ text: String) throws(NVSError) -> [NVSRow] {
        var records = CSVReader.records(text)
        if let first = records.first, first.fields.count >= 3,
           first.fields[0].text.trimmedASCII() == "key", first.fields[1].text.trimmedASCII() == "type" {
            records.removeFirst()
        }
        var rows: [NVSRow] = []
        var sawNamespace = false
        for r in records {
            func at(_ i: Int) -> CSVLocation {
                i < r.fields.count ? CSVLocation(line: r.line, column: r.fields[i].column) : CSVLocation(line: r.line, column: r.endColumn)
            }
            func text(_ i: Int) -> String? { i < r.fields.count ? r.fields[i].text : nil }
            guard let key = text(0), let type = text(1)?.trimmedASCII() else {
                throw .csv("a config line needs at least key,type", line: r.line, column: r.endColumn,
                           hint: "write `name,namespace,` or `key,data,ENCODING`")
            }
            let encoding = (text(2) ?? "").trimmedASCII()
            var value = text(3).flatMap { $0.isEmpty ? nil : $0 }
            let repeats = type != "namespace" && value?.trimmedASCII() == "REPEAT"
            if repeats { value = nil }
            try NVSCSV.checkKey(key, at: at(0))
            switch type {
            case "namespace":
                sawNamespace = true
            case "data", "file":
                guard sawNamespace else {
                    throw .invalidField("entry `\(key)` comes before any namespace", at: at(0),
                                        hint: "add a namespace line (e.g. `storage,namespace,`) first")
                }
                let known = NVSCSV.encodings.contains(encoding) || encoding.hasPrefix("blob_fill") || encoding.hasPrefix("blob_sz_fill")
                guard known else {
                    throw .invalidField("unsupported encoding `\(encoding)`", at: at(2),
                                        hint: "use one of " + NVSCSV.encodings.joined(separator: ", "))
                }
            default:
                throw .invalidField("unknown type `\(type)`", at: at(1), hint: "use namespace, data or file")
            }
            var row = NVSRow(line: r.line, key: key, type: type, encoding: encoding, value: value,
                             keyAt: at(0), typeAt: at(1), encodingAt: at(2), valueAt: at(3))
            row.repeatsFirstDevice = repeats
            rows.append(row)
        }
        return rows
    }

    /// Expands the values CSV into one row list per device. Problems that concern the whole
    /// values file are thrown; problems of single devices are returned in `failures`.
    public static func devices(config: [NVSRow], values: String) throws(NVSError) -> (devices: [NVSDevice], failures: [NVSError]) {
        let records = CSVReader.records(values)
        guard let header = records.first else {
            throw .csv("the values CSV is empty", line: 1, column: nil, hint: "the first line must be `id,KEY1,KEY2,…`")
        }
        let configKeys = Set(config.filter { $0.type != "namespace" }.map(\.key))
        var columnOfKey: [String: Int] = [:]
        for (i, f) in header.fields.enumerated().dropFirst() {
            let name = f.text.trimmedASCII()
            guard configKeys.contains(name) else {
                throw .csv("column `\(name)` is not a key of the config CSV", line: header.line, column: f.column,
                           hint: "the values header lists the id column, then keys defined in the config CSV")
            }
            if columnOfKey[name] != nil {
                throw .csv("column `\(name)` appears twice", line: header.line, column: f.column, hint: nil)
            }
            columnOfKey[name] = i
        }
        // REPEAT keys: the first device row's value, for every device.
        var repeated: [String: (value: String, at: CSVLocation)] = [:]
        for c in config where c.repeatsFirstDevice && repeated[c.key] == nil {
            guard let col = columnOfKey[c.key] else {
                throw .csv("the values CSV has no column `\(c.key)`, which the config tags REPEAT (config line \(c.line))",
                           line: header.line, column: nil,
                           hint: "add the column; its value in the first device row is used for every device")
            }
            guard let first = records.dropFirst().first else { break }
            guard col < first.fields.count, !first.fields[col].text.isEmpty else {
                throw .csv("REPEAT key `\(c.key)` has no value in the first device row", line: first.line,
                           column: col < first.fields.count ? first.fields[col].column : first.endColumn,
                           hint: "a REPEAT key's value is given once, in the first device row; later rows leave it empty")
            }
            repeated[c.key] = (first.fields[col].text, CSVLocation(line: first.line, column: first.fields[col].column))
        }
        var devices: [NVSDevice] = []
        var failures: [NVSError] = []
        var seen: [String: Int] = [:]
        rowLoop: for r in records.dropFirst() {
            let id = r.fields.first?.text.trimmedASCII() ?? ""
            guard !id.isEmpty else {
                failures.append(.deviceRow(id: "", row: r.line, column: 1, message: "the id (first column) is empty"))
                continue
            }
            guard id != "." && id != ".." && !id.contains("/") && !id.contains("\0") && !id.hasPrefix(".") else {
                failures.append(.deviceRow(id: id, row: r.line, column: 1,
                                           message: "the id cannot be used as a file name (no '/', no leading '.')"))
                continue
            }
            if let first = seen[id] {
                failures.append(.deviceRow(id: id, row: r.line, column: 1, message: "duplicate id (first on line \(first))"))
                continue
            }
            seen[id] = r.line
            if r.fields.count > header.fields.count {
                failures.append(.deviceRow(id: id, row: r.line, column: r.fields[header.fields.count].column,
                                           message: "the row has \(r.fields.count) fields, the header \(header.fields.count)"))
                continue
            }
            var rows: [NVSRow] = []
            var fromConfig: [Bool] = []
            for c in config {
                var row = c
                if c.type == "namespace" { rows.append(row); fromConfig.append(true); continue }
                if let shared = repeated[c.key] {
                    row.value = shared.value
                    row.valueAt = shared.at
                    row.line = shared.at.line
                    rows.append(row)
                    fromConfig.append(false)
                    continue
                }
                if let col = columnOfKey[c.key] {
                    if col < r.fields.count, !r.fields[col].text.isEmpty {
                        row.value = r.fields[col].text
                        row.valueAt = CSVLocation(line: r.line, column: r.fields[col].column)
                        row.line = r.line
                        rows.append(row)
                        fromConfig.append(false)
                        continue
                    }
                    if c.value == nil {
                        let column = col < r.fields.count ? r.fields[col].column : r.endColumn
                        failures.append(.deviceRow(id: id, row: r.line, column: column,
                                                   message: "no value for `\(c.key)` (column \(col + 1))"))
                        continue rowLoop
                    }
                } else if c.value == nil {
                    failures.append(.deviceRow(id: id, row: r.line, column: nil,
                                               message: "no value for `\(c.key)`: neither the config (line \(c.line)) nor the values CSV has one"))
                    continue rowLoop
                }
                rows.append(row)
                fromConfig.append(true)
            }
            devices.append(NVSDevice(id: id, line: r.line, rows: rows, fromConfig: fromConfig))
        }
        return (devices, failures)
    }

    /// Wraps an error met while building one device's image as a row/column problem.
    public static func deviceError(_ error: NVSError, device: NVSDevice) -> NVSError {
        if case .deviceRow = error { return error }
        let d = error.diagnostic
        if d.line == device.line {
            return .deviceRow(id: device.id, row: device.line, column: d.column, message: d.message)
        }
        let fromRepeat = device.rows.contains { $0.repeatsFirstDevice && $0.line == d.line }
        let whereText = d.line.map { fromRepeat ? " (the REPEAT value on line \($0))" : " (config line \($0))" } ?? ""
        return .deviceRow(id: device.id, row: device.line, column: nil, message: d.message + whereText)
    }
}
