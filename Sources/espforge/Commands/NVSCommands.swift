// The `nvs` command group: generate (single or per-device), keygen, show. The NVS core is pure
// (Sources/NVS); this file parses arguments, reads and writes files, and prints.
import ArgumentParser
import ESPCore
import Foundation
import NVS

struct NVSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nvs",
        abstract: "Generate, encrypt and inspect NVS partitions.",
        discussion: """
            NVS images are byte-identical to esp-idf-nvs-partition-gen 0.3.0 (`generate` and \
            `encrypt --inputkey`) for the same CSV, size and key.

            Example:
              espforge nvs keygen -o nvs_keys.bin
              espforge nvs generate nvs.csv --size 0x6000 -o nvs.bin --encrypt --keys nvs_keys.bin
              espforge nvs show nvs.bin --keys nvs_keys.bin
            """,
        subcommands: [NVSGenerate.self, NVSKeygen.self, NVSShow.self]
    )
}

struct NVSGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Build an NVS partition image from a CSV (or one image per device).",
        discussion: """
            The CSV has the format of ESP-IDF's nvs_partition_gen: a header `key,type,encoding,value`, \
            namespace rows (`storage,namespace,,`), data rows with encodings u8 i8 u16 i16 u32 i32 u64 \
            i64 string hex2bin base64 binary (and blob_fill(N;0xNN) / blob_sz_fill(N;0xNN)), and file \
            rows whose value is a path, relative to the CSV's folder. Lines starting with # are comments.

            --encrypt encrypts every entry with XTS-AES-256 (NVS encryption), with the keys of \
            --keys FILE (an nvs_keys image or at least 64 bytes) or fresh keys written to --keygen FILE \
            (mode 0600).

            Per-device mode (--values VALUES.csv --outdir DIR): the CSV argument is a config CSV with \
            lines `key,type,encoding[,constant]` (namespace lines `name,namespace,`); VALUES.csv has a \
            header `id,KEY,KEY,…` and one line per device. Writes DIR/ID.bin per device and, with \
            --encrypt, a fresh key image DIR/ID-keys.bin (mode 0600) per device. Rows with missing or \
            ill-typed values are reported with line and column; no file is written for them and the \
            exit status is 1.

            Example:
              espforge nvs generate nvs.csv --size 0x6000 -o nvs.bin
              espforge nvs generate nvs.csv --size 24K -o nvs.bin --encrypt --keygen nvs_keys.bin
              espforge nvs generate config.csv --values devices.csv --size 0x6000 --outdir out --encrypt
            """
    )

    @Argument(help: "The NVS CSV (or, with --values, the config CSV).")
    var csv: String

    @Option(help: "Partition size: a multiple of 4096, e.g. 0x6000 or 24K (below 0x3000: read-only NVS).")
    var size: String

    @Option(name: [.customShort("o"), .customLong("output")], help: "The image to write.")
    var output: String?

    @Option(help: "1: single-page blobs; 2: multi-page blobs (default).")
    var version: Int = 2

    @Flag(help: "Encrypt the image (NVS encryption, XTS-AES-256).")
    var encrypt = false

    @Option(help: "Key file for --encrypt (an nvs_keys image; its first 64 bytes are used).")
    var keys: String?

    @Option(help: "Create fresh keys for --encrypt and write them to this file (mode 0600).")
    var keygen: String?

    @Option(help: "Per-device mode: CSV with one row of values per device (first column: id).")
    var values: String?

    @Option(help: "Per-device mode: folder for the images (and keys).")
    var outdir: String?

    @Flag(help: "Overwrite an existing key file given to --keygen.")
    var force = false

    func validate() throws {
        guard version == 1 || version == 2 else { throw ValidationError("--version must be 1 or 2") }
        if values != nil {
            guard outdir != nil else { throw ValidationError("--values needs --outdir DIR") }
            guard output == nil else { throw ValidationError("-o is for one image; per-device mode writes to --outdir") }
            guard keys == nil, keygen == nil else {
                throw ValidationError("per-device mode makes one fresh key per device; use --encrypt without --keys/--keygen")
            }
        } else {
            guard output != nil else { throw ValidationError("missing -o OUTPUT.bin") }
            guard outdir == nil else { throw ValidationError("--outdir is for per-device mode (--values)") }
            if encrypt && (keys == nil) == (keygen == nil) {
                throw ValidationError("--encrypt needs exactly one of --keys FILE or --keygen FILE")
            }
            if !encrypt && (keys != nil || keygen != nil) {
                throw ValidationError("--keys/--keygen only make sense with --encrypt")
            }
        }
    }

    func run() throws {
        guard let partitionSize = NumberParsing.size(size) else {
            throw UsageError("invalid --size `\(size)`", hint: "e.g. 0x6000, 24576 or 24K")
        }
        do { _ = try NVSGenerator.checkSize(partitionSize) } catch { throw UsageError(error.diagnostic) }
        if partitionSize < 0x3000 {
            ErrorRenderer.warn("a partition smaller than 0x3000 is a read-only NVS; flag it `readonly` in the partition table")
        }
        if let values, let outdir {
            try runPerDevice(values: values, outdir: outdir, size: partitionSize)
        } else if let output {
            try runSingle(output: output, size: partitionSize)
        }
    }

    private func runSingle(output: String, size: Int) throws {
        let text = try FileIO.readText(csv, limit: .nvsCSV)
        let image: NVSImage
        var keyImage: [UInt8]?
        var key: [UInt8]?
        if encrypt {
            if let keys {
                let keyFile = try FileIO.read(keys, limit: .key)
                key = try wrap(keys) { try NVSKeys(file: keyFile).bytes }
            } else if let keygen {
                if FileManager.default.fileExists(atPath: keygen) && !force {
                    throw UsageError(Diagnostic("refusing to overwrite an existing key file", file: keygen,
                                                hint: "use --keys to reuse it, or --force to replace it"))
                }
                let fresh = NVSKeys.generate()
                key = fresh.bytes
                keyImage = fresh.image
            }
        }
        do {
            let rows = try NVSCSV.rows(text)
            let files = try Self.readFiles(rows: rows, base: csv)
            image = try NVSGenerator.generate(items: try NVSCSV.items(rows, files: files),
                                              options: NVSImageOptions(size: size, version: version, key: key))
        } catch let error as NVSError {
            throw FileContextError(file: csv, underlying: error)
        }
        for w in image.warnings { ErrorRenderer.warn(withFile(w, csv)) }
        if let keyImage, let keygen { try FileIO.write(keyImage, to: keygen, secret: true) }
        try FileIO.write(image.bytes, to: output)
        var line = "wrote \(output): \(image.bytes.count) bytes, \(image.entryCount) entries in \(image.usedPages) page(s)"
        if image.readOnly && image.bytes.count < size {
            line += " (read-only NVS: like nvs_partition_gen, only the used pages are written)"
        }
        if encrypt { line += ", encrypted" + (keygen.map { " (new keys in \($0), mode 0600)" } ?? "") }
        print(line)
    }

    private func runPerDevice(values: String, outdir: String, size: Int) throws {
        let configText = try FileIO.readText(csv, limit: .nvsCSV)
        let valuesText = try FileIO.readText(values, limit: .nvsCSV)
        let config: [NVSRow]
        do { config = try NVSPerDevice.config(configText) } catch { throw FileContextError(file: csv, underlying: error) }
        let expanded: (devices: [NVSDevice], failures: [NVSError])
        do { expanded = try NVSPerDevice.devices(config: config, values: valuesText) } catch {
            throw FileContextError(file: values, underlying: error)
        }
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: outdir, isDirectory: &isDir) {
            do { try FileManager.default.createDirectory(atPath: outdir, withIntermediateDirectories: true) } catch {
                throw UsageError(Diagnostic("cannot create the output folder", file: outdir))
            }
        } else if !isDir.boolValue {
            throw UsageError(Diagnostic("exists and is not a folder", file: outdir))
        }
        var failures = expanded.failures
        var written = 0
        var fileCache: [String: [UInt8]] = [:]
        for device in expanded.devices {
            do {
                var files: [String: [UInt8]] = [:]
                for (row, constant) in zip(device.rows, device.fromConfig) {
                    guard let path = row.filePath else { continue }
                    if constant, let cached = fileCache[path] { files[path] = cached; continue }
                    let full = Self.resolve(path, relativeTo: constant ? csv : values)
                    let data = try Self.readValueFile(full, at: row.valueAt, hint: nil)
                    files[path] = data
                    if constant { fileCache[path] = data }
                }
                let key = encrypt ? NVSKeys.generate() : nil
                let image = try NVSGenerator.generate(items: try NVSCSV.items(device.rows, files: files),
                                                      options: NVSImageOptions(size: size, version: version, key: key?.bytes))
                if written == 0 {
                    // Warnings about the config are the same for every device: print them once.
                    for w in image.warnings { ErrorRenderer.warn(withFile(w, csv)) }
                }
                let binPath = outdir + "/" + device.id + ".bin"
                if let key {
                    let keyPath = outdir + "/" + device.id + "-keys.bin"
                    try FileIO.write(key.image, to: keyPath, secret: true)
                    do { try Self.writeImage(image.bytes, to: binPath) } catch {
                        unlink(keyPath)
                        throw error
                    }
                } else {
                    try Self.writeImage(image.bytes, to: binPath)
                }
                written += 1
            } catch let error as NVSError {
                failures.append(NVSPerDevice.deviceError(error, device: device))
            }
        }
        failures.sort { ($0.diagnostic.line ?? 0) < ($1.diagnostic.line ?? 0) }
        for f in failures { ErrorRenderer.report(FileContextError(file: values, underlying: f)) }
        let total = expanded.devices.count + expanded.failures.count
        print("wrote \(written) of \(total) device image(s) to \(outdir)" + (encrypt ? " (each with its own key, mode 0600)" : ""))
        if !failures.isEmpty {
            ErrorRenderer.writeStderr("\(failures.count) device row(s) failed; no files were written for them\n")
            throw ExitCode(1)
        }
    }

    /// Writes one per-device image through ``AtomicFile`` without the per-file fsyncs (they
    /// dominate a 1000-device run; the images are regenerated by running again).
    static func writeImage(_ bytes: [UInt8], to path: String) throws {
        try AtomicFile.write(bytes, to: path, durable: false)
    }

    /// One file named by a `file` row (bounded: one NVS value).
    static func readValueFile(_ full: String, at position: CSVLocation, hint: String?) throws -> [UInt8] {
        do { return try BoundedFile.read(full, limit: .nvsValueFile) } catch {
            let why = error.reason == .missing ? "" : ": " + error.diagnostic.message
            throw NVSError.invalidField("cannot read file `\(full)`\(why)", at: position, hint: hint)
        }
    }

    /// Reads the files named by `file` rows, relative to the CSV's folder.
    static func readFiles(rows: [NVSRow], base: String) throws -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        for row in rows {
            guard let path = row.filePath, files[path] == nil else { continue }
            let full = resolve(path, relativeTo: base)
            files[path] = try readValueFile(full, at: row.valueAt, hint: "file paths are relative to the CSV's folder")
        }
        return files
    }

    static func resolve(_ path: String, relativeTo csvPath: String) -> String {
        if path.hasPrefix("/") { return path }
        let dir = URL(fileURLWithPath: csvPath).deletingLastPathComponent().path
        return dir + "/" + path
    }

    private func wrap<T>(_ file: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as NVSError { throw FileContextError(file: file, underlying: e) }
    }

    private func withFile(_ d: Diagnostic, _ file: String) -> Diagnostic {
        var d = d
        d.file = file
        return d
    }
}

struct NVSKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create NVS encryption keys (a 4096-byte nvs_keys partition image).",
        discussion: """
            Draws 64 bytes (XTS data key + tweak key) from the system's cryptographically secure \
            random generator and writes the nvs_keys partition image: keys, CRC32, 0xFF padding. The \
            file is created with mode 0600; the keys are never printed. Flash it to the nvs_keys \
            partition (which must be flagged `encrypted`).

            Example:
              espforge nvs keygen -o nvs_keys.bin
            """
    )

    @Option(name: [.customShort("o"), .customLong("output")], help: "The key image to write (mode 0600).")
    var output: String

    @Flag(help: "Overwrite an existing file.")
    var force = false

    func run() throws {
        if FileManager.default.fileExists(atPath: output) && !force {
            throw UsageError(Diagnostic("refusing to overwrite an existing key file", file: output,
                                        hint: "choose another name, or pass --force to replace it"))
        }
        try FileIO.write(NVSKeys.generate().image, to: output, secret: true)
        print("wrote \(output): 4096-byte nvs_keys image (mode 0600)")
    }
}

struct NVSShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "List the namespaces, keys, types and values of an NVS image.",
        discussion: """
            Reads any NVS image (generated or dumped from a device), decrypting it when --keys is \
            given. Corruption (bad page state, header or item CRC mismatch, broken blobs) is reported \
            per page and entry instead of stopping.

            Example:
              espforge nvs show nvs.bin
              espforge nvs show nvs.bin --keys nvs_keys.bin --json
            """
    )

    @Argument(help: "The NVS image.")
    var image: String

    @Option(help: "Key file (nvs_keys image) to decrypt an encrypted image.")
    var keys: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let bytes = try FileIO.read(image, limit: .nvsPartition)
        var nvsKeys: NVSKeys?
        if let keys {
            do { nvsKeys = try NVSKeys(file: try FileIO.read(keys, limit: .key)) } catch let e as NVSError {
                throw FileContextError(file: keys, underlying: e)
            }
        }
        let report = NVSReader.read(bytes, keys: nvsKeys)
        if json {
            try Output.printJSON(report)
            return
        }
        let used = report.pages.filter { $0.state != "empty" }
        print("\(image): \(report.size) bytes, \(report.pages.count) page(s), \(used.count) in use" +
              (report.encrypted ? ", decrypted" : ""))
        for p in used {
            let seq = p.sequence.map { " seq \($0)" } ?? ""
            let ver = p.version.map { " v\($0)" } ?? ""
            print("  page \(p.index) @\(NumberParsing.hex(p.offset, width: 6)): \(p.state)\(seq)\(ver), \(p.usedEntries) entries" +
                  (p.headerCRCValid == false ? ", BAD HEADER CRC" : ""))
        }
        if !report.namespaces.isEmpty {
            let list = report.namespaces.sorted { $0.value < $1.value }.map { "\($0.key)=\($0.value)" }
            print("namespaces: " + list.joined(separator: ", "))
        }
        let visible = report.entries.filter { $0.type != "blob_data" || $0.problems != nil }
        let nsWidth = max(9, visible.map(\.namespace.count).max() ?? 0)
        let keyWidth = max(3, visible.map(\.key.count).max() ?? 0)
        print(pad("NAMESPACE", nsWidth) + "  " + pad("KEY", keyWidth) + "  " + pad("TYPE", 10) + "  VALUE")
        for e in visible {
            var value = e.value
            if e.type == "blob" || e.type == "blob_index" || e.type == "blob_data" {
                if value.count > 64 { value = String(value.prefix(64)) + "…" }
                value += " (\(e.size ?? 0) bytes)"
            } else if e.type == "string" {
                value = "\"" + (value.count > 80 ? String(value.prefix(80)) + "…" : value) + "\""
            }
            let type = e.type == "blob_index" ? "blob" : e.type
            print(pad(e.namespace, nsWidth) + "  " + pad(e.key, keyWidth) + "  " + pad(type, 10) + "  " + value +
                  (e.problems == nil ? "" : "  [!]"))
        }
        if !report.problems.isEmpty {
            print("problems (\(report.problems.count)):")
            for p in report.problems {
                print("  page \(p.page)" + (p.entry.map { " entry \($0)" } ?? "") + ": " + p.message)
            }
            if nvsKeys == nil && report.problems.contains(where: { $0.message.contains("CRC mismatch") }) {
                print("hint: if the image is encrypted, pass --keys KEYS.bin")
            }
        }
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
}
