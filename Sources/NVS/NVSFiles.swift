import ESPCore
import Foundation

/// NVS images from files, as `espforge nvs generate` makes them: the CSV's `file` rows are read
/// relative to the CSV's folder, and per-device mode writes one image (and key image) per device.
/// Errors are ``NVSError``s, or ``FileContextError``s naming the CSV they are about.
public enum NVSFiles {
    /// Where the keys of an encrypted image come from.
    public enum KeySource: Sendable {
        /// A key file (an nvs_keys image, or at least 64 bytes).
        case file(String)
        /// Fresh keys from the system's secure random generator (returned, for the caller to store).
        case fresh
    }

    /// The image for the NVS CSV at `csvPath` (its `file` rows read relative to its folder),
    /// encrypted when `keys` is given; `freshKeys` are the keys made for ``KeySource/fresh``.
    public static func generate(csvPath: String, size: Int, version: Int = 2,
                                keys: KeySource? = nil) throws -> (image: NVSImage, freshKeys: NVSKeys?) {
        try generate(csvText: try BoundedFile.readText(csvPath, limit: .nvsCSV), csvPath: csvPath, size: size, version: version, keys: keys)
    }

    /// As ``generate(csvPath:size:version:keys:)`` for CSV text already read from `csvPath`.
    public static func generate(csvText text: String, csvPath: String, size: Int, version: Int = 2,
                                keys: KeySource? = nil) throws -> (image: NVSImage, freshKeys: NVSKeys?) {
        var key: NVSKeys?
        var fresh: NVSKeys?
        switch keys {
        case nil: break
        case let .file(path): key = try NVSKeys.load(path)
        case .fresh: fresh = NVSKeys.generate(); key = fresh
        }
        do {
            let rows = try NVSCSV.rows(text)
            var files: [String: [UInt8]] = [:]
            for row in rows {
                guard let path = row.filePath, files[path] == nil else { continue }
                files[path] = try readValueFile(resolve(path, relativeTo: csvPath), at: row.valueAt,
                                                hint: "file paths are relative to the CSV's folder")
            }
            let image = try NVSGenerator.generate(items: try NVSCSV.items(rows, files: files),
                                                  options: NVSImageOptions(size: size, version: version, key: key?.bytes))
            return (image, fresh)
        } catch {
            throw FileContextError(file: csvPath, underlying: error)
        }
    }

    /// What a per-device run did.
    public struct BatchResult: Sendable {
        /// Images written (each with its key image when encrypting).
        public var written: Int
        /// Device rows in the values CSV (written or failed).
        public var total: Int
        /// Warnings about the config (the same for every device: reported once), file set.
        public var warnings: [Diagnostic]
        /// One error per device row that failed (no file written for it), by line.
        public var failures: [NVSError]
    }

    /// Per-device mode: the config CSV at `configPath` (`key,type,encoding[,constant]`) and the
    /// values CSV at `valuesPath` (`id,KEY,…`, one row per device) give `outdir`/ID.bin per device
    /// and, with `encrypt`, a fresh key image `outdir`/ID-keys.bin (mode 0600). A bad device row
    /// is a failure in the result, not an error; a bad config or values header throws.
    public static func generatePerDevice(configPath: String, valuesPath: String, outdir: String, size: Int,
                                         version: Int = 2, encrypt: Bool) throws -> BatchResult {
        let configText = try BoundedFile.readText(configPath, limit: .nvsCSV)
        let valuesText = try BoundedFile.readText(valuesPath, limit: .nvsCSV)
        let config: [NVSRow]
        do { config = try NVSPerDevice.config(configText) } catch { throw FileContextError(file: configPath, underlying: error) }
        let expanded: (devices: [NVSDevice], failures: [NVSError])
        do { expanded = try NVSPerDevice.devices(config: config, values: valuesText) } catch {
            throw FileContextError(file: valuesPath, underlying: error)
        }
        try makeFolder(outdir)
        var result = BatchResult(written: 0, total: expanded.devices.count + expanded.failures.count, warnings: [],
                                 failures: expanded.failures)
        var fileCache: [String: [UInt8]] = [:]
        for device in expanded.devices {
            do {
                var files: [String: [UInt8]] = [:]
                for (row, constant) in zip(device.rows, device.fromConfig) {
                    guard let path = row.filePath else { continue }
                    if constant, let cached = fileCache[path] { files[path] = cached; continue }
                    let data = try readValueFile(resolve(path, relativeTo: constant ? configPath : valuesPath),
                                                 at: row.valueAt, hint: nil)
                    files[path] = data
                    if constant { fileCache[path] = data }
                }
                let key = encrypt ? NVSKeys.generate() : nil
                let image = try NVSGenerator.generate(items: try NVSCSV.items(device.rows, files: files),
                                                      options: NVSImageOptions(size: size, version: version, key: key?.bytes))
                if result.written == 0 {
                    result.warnings = image.warnings.map { var d = $0; d.file = configPath; return d }
                }
                // No per-file fsyncs: they dominate a 1000-device run, and running again regenerates.
                let binPath = outdir + "/" + device.id + ".bin"
                if let key {
                    let keyPath = outdir + "/" + device.id + "-keys.bin"
                    try AtomicFile.write(key.image, to: keyPath, mode: AtomicFile.secretMode)
                    do { try AtomicFile.write(image.bytes, to: binPath, durable: false) } catch {
                        unlink(keyPath)
                        throw error
                    }
                } else {
                    try AtomicFile.write(image.bytes, to: binPath, durable: false)
                }
                result.written += 1
            } catch let error as NVSError {
                result.failures.append(NVSPerDevice.deviceError(error, device: device))
            }
        }
        result.failures.sort { ($0.diagnostic.line ?? 0) < ($1.diagnostic.line ?? 0) }
        return result
    }

    /// Creates `path` (and its parents) unless it is a folder already.
    static func makeFolder(_ path: String) throws {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
                throw UsageError(Diagnostic("cannot create the output folder", file: path))
            }
        } else if !isDir.boolValue {
            throw UsageError(Diagnostic("exists and is not a folder", file: path))
        }
    }

    /// One file named by a `file` row (bounded: one NVS value).
    static func readValueFile(_ full: String, at position: CSVLocation, hint: String?) throws(NVSError) -> [UInt8] {
        do { return try BoundedFile.read(full, limit: .nvsValueFile) } catch {
            let why = error.reason == .missing ? "" : ": " + error.diagnostic.message
            throw NVSError.invalidField("cannot read file `\(full)`\(why)", at: position, hint: hint)
        }
    }

    /// A `file` row's path: absolute as given, else relative to the folder of `csvPath`.
    public static func resolve(_ path: String, relativeTo csvPath: String) -> String {
        if path.hasPrefix("/") { return path }
        return URL(fileURLWithPath: csvPath).deletingLastPathComponent().path + "/" + path
    }
}

extension NVSKeys {
    /// The keys in the key file at `path` (an nvs_keys image, or at least 64 bytes); errors name the file.
    public static func load(_ path: String) throws -> NVSKeys {
        let file = try BoundedFile.read(path, limit: .key)
        do { return try NVSKeys(file: file) } catch { throw FileContextError(file: path, underlying: error) }
    }
}

extension NVSReport {
    /// The listing `espforge nvs show` prints for the image named `name` (ends with a newline).
    /// `keysGiven`: whether keys were passed (else a CRC mismatch hints at encryption).
    public func text(name: String, keysGiven: Bool) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        let used = pages.filter { $0.state != "empty" }
        var lines = ["\(name): \(size) bytes, \(pages.count) page(s), \(used.count) in use" + (encrypted ? ", decrypted" : "")]
        for p in used {
            let seq = p.sequence.map { " seq \($0)" } ?? ""
            let ver = p.version.map { " v\($0)" } ?? ""
            lines.append("  page \(p.index) @\(NumberParsing.hex(p.offset, width: 6)): \(p.state)\(seq)\(ver), \(p.usedEntries) entries"
                         + (p.headerCRCValid == false ? ", BAD HEADER CRC" : ""))
        }
        if !namespaces.isEmpty {
            lines.append("namespaces: " + namespaces.sorted { $0.value < $1.value }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
        }
        let visible = entries.filter { $0.type != "blob_data" || $0.problems != nil }
        let nsWidth = max(9, visible.map(\.namespace.count).max() ?? 0)
        let keyWidth = max(3, visible.map(\.key.count).max() ?? 0)
        lines.append(pad("NAMESPACE", nsWidth) + "  " + pad("KEY", keyWidth) + "  " + pad("TYPE", 10) + "  VALUE")
        for e in visible {
            var value = e.value
            if e.type == "blob" || e.type == "blob_index" || e.type == "blob_data" {
                if value.count > 64 { value = String(value.prefix(64)) + "…" }
                value += " (\(e.size ?? 0) bytes)"
            } else if e.type == "string" {
                value = "\"" + (value.count > 80 ? String(value.prefix(80)) + "…" : value) + "\""
            }
            let type = e.type == "blob_index" ? "blob" : e.type
            lines.append(pad(e.namespace, nsWidth) + "  " + pad(e.key, keyWidth) + "  " + pad(type, 10) + "  " + value
                         + (e.problems == nil ? "" : "  [!]"))
        }
        if !problems.isEmpty {
            lines.append("problems (\(problems.count)):")
            for p in problems { lines.append("  page \(p.page)" + (p.entry.map { " entry \($0)" } ?? "") + ": " + p.message) }
            if !keysGiven && problems.contains(where: { $0.message.contains("CRC mismatch") }) {
                lines.append("hint: if the image is encrypted, pass --keys KEYS.bin")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() throws -> String { try JSONText.render(self) }
}

extension NVSGenerator {
    /// The partition size written as `text` (0x6000, 24576, 24K): a usage error unless it is a
    /// size NVS allows (a multiple of 4096, at least one page; below 0x3000 it is read-only NVS).
    public static func partitionSize(_ text: String) throws -> Int {
        guard let size = NumberParsing.size(text) else { throw UsageError("invalid --size `\(text)`", hint: "e.g. 0x6000, 24576 or 24K") }
        do { _ = try checkSize(size) } catch { throw UsageError(error.diagnostic) }
        return size
    }
}
