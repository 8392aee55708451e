// The `nvs` command group: generate (single or per-device), keygen, show. The NVS core is pure
// (Sources/NVS); this file parses arguments, reads and writes files, and prints.
import ArgumentParser
import ESPCore
import Foundation
import NVS

struct NVSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nvs", abstract: "Generate, encrypt and inspect NVS partitions.",
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
        commandName: "generate", abstract: "Build an NVS partition image from a CSV (or one image per device).",
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

    @Argument(help: "The NVS CSV (or, with --values, the config CSV).") var csv: String
    @Option(help: "Partition size: a multiple of 4096, e.g. 0x6000 or 24K (below 0x3000: read-only NVS).") var size: String
    @Option(name: [.customShort("o"), .customLong("output")], help: "The image to write.") var output: String?
    @Option(help: "1: single-page blobs; 2: multi-page blobs (default).") var version: Int = 2
    @Flag(help: "Encrypt the image (NVS encryption, XTS-AES-256).") var encrypt = false
    @Option(help: "Key file for --encrypt (an nvs_keys image; its first 64 bytes are used).") var keys: String?
    @Option(help: "Create fresh keys for --encrypt and write them to this file (mode 0600).") var keygen: String?
    @Option(help: "Per-device mode: CSV with one row of values per device (first column: id).") var values: String?
    @Option(help: "Per-device mode: folder for the images (and keys).") var outdir: String?
    @Flag(help: "Overwrite an existing key file given to --keygen.") var force = false

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
        let partitionSize = try NVSGenerator.partitionSize(size)
        if partitionSize < 0x3000 {
            ErrorRenderer.warn("a partition smaller than 0x3000 is a read-only NVS; flag it `readonly` in the partition table")
        }
        if let values, let outdir {
            let r = try NVSFiles.generatePerDevice(configPath: csv, valuesPath: values, outdir: outdir, size: partitionSize,
                                                   version: version, encrypt: encrypt)
            for w in r.warnings { ErrorRenderer.warn(w) }
            for f in r.failures { ErrorRenderer.report(FileContextError(file: values, underlying: f)) }
            print("wrote \(r.written) of \(r.total) device image(s) to \(outdir)" + (encrypt ? " (each with its own key, mode 0600)" : ""))
            if !r.failures.isEmpty {
                ErrorRenderer.writeStderr("\(r.failures.count) device row(s) failed; no files were written for them\n")
                throw ExitCode(1)
            }
        } else if let output {
            let text = try FileIO.readText(csv, limit: .nvsCSV)
            if let keygen, FileManager.default.fileExists(atPath: keygen) && !force {
                throw UsageError(Diagnostic("refusing to overwrite an existing key file", file: keygen,
                                            hint: "use --keys to reuse it, or --force to replace it"))
            }
            let keySource: NVSFiles.KeySource? = !encrypt ? nil : keys.map { .file($0) } ?? .fresh
            let (image, fresh) = try NVSFiles.generate(csvText: text, csvPath: csv, size: partitionSize,
                                                       version: version, keys: keySource)
            for w in image.warnings { ErrorRenderer.warn(withFile(w, csv)) }
            if let fresh, let keygen { try FileIO.write(fresh.image, to: keygen, secret: true) }
            try FileIO.write(image.bytes, to: output)
            var line = "wrote \(output): \(image.bytes.count) bytes, \(image.entryCount) entries in \(image.usedPages) page(s)"
            if image.readOnly && image.bytes.count < partitionSize {
                line += " (read-only NVS: like nvs_partition_gen, only the used pages are written)"
            }
            if encrypt { line += ", encrypted" + (keygen.map { " (new keys in \($0), mode 0600)" } ?? "") }
            print(line)
        }
    }
}

struct NVSKeygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Create NVS encryption keys (a 4096-byte nvs_keys partition image).",
        discussion: """
            Draws 64 bytes (XTS data key + tweak key) from the system's cryptographically secure \
            random generator and writes the nvs_keys partition image: keys, CRC32, 0xFF padding. The \
            file is created with mode 0600; the keys are never printed. Flash it to the nvs_keys \
            partition (which must be flagged `encrypted`).

            Example:
              espforge nvs keygen -o nvs_keys.bin
            """
    )

    @Option(name: [.customShort("o"), .customLong("output")], help: "The key image to write (mode 0600).") var output: String
    @Flag(help: "Overwrite an existing file.") var force = false

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
        commandName: "show", abstract: "List the namespaces, keys, types and values of an NVS image.",
        discussion: """
            Reads any NVS image (generated or dumped from a device), decrypting it when --keys is \
            given. Corruption (bad page state, header or item CRC mismatch, broken blobs) is reported \
            per page and entry instead of stopping.

            Example:
              espforge nvs show nvs.bin
              espforge nvs show nvs.bin --keys nvs_keys.bin --json
            """
    )

    @Argument(help: "The NVS image.") var image: String
    @Option(help: "Key file (nvs_keys image) to decrypt an encrypted image.") var keys: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let bytes = try FileIO.read(image, limit: .nvsPartition)
        let report = NVSReader.read(bytes, keys: try keys.map(NVSKeys.load))
        if json { print(try report.json()) } else { print(report.text(name: image, keysGiven: keys != nil), terminator: "") }
    }
}
