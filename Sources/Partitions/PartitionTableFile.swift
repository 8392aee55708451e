import ESPCore

/// A partition table read from a file, as `espforge partitions show|check` and `otadata` read
/// it: binary when it starts with the entry magic `AA 50` or the MD5 magic `EB EB` (or is all
/// 0xFF), CSV otherwise.
public struct PartitionTableFile: Sendable, Equatable {
    public var table: PartitionTable
    public var isBinary: Bool
    /// The MD5 entry's status (binary tables).
    public var md5: PartitionTable.Parsed.MD5Status?
    /// What parsing noticed.
    public var warnings: [PartitionWarning]

    /// Reads the table at `path`. With `base`, the table is the one sector at that offset of a
    /// flash dump (only that sector is read) and error offsets are file offsets.
    public static func load(_ path: String, options: PartitionTableOptions, at base: Int? = nil) throws -> PartitionTableFile {
        if let base {
            guard base >= 0 else { throw UsageError(Diagnostic("--at must not be negative", file: path)) }
            let (sector, fileSize) = try BoundedFile.read(path, offset: base, count: PartitionTable.sectorSize, limit: .flashContents)
            guard base < fileSize else {
                throw UsageError(Diagnostic("--at \(NumberParsing.hex(base)) is past the end of the file (\(fileSize) bytes)", file: path))
            }
            do {
                let parsed = try PartitionTable.parse(binary: sector)
                return PartitionTableFile(table: parsed.table, isBinary: true, md5: parsed.md5, warnings: parsed.warnings)
            } catch {
                var d = error.diagnostic
                d.offset = (d.offset ?? 0) + base
                d.file = path
                throw UsageError(d)
            }
        }
        let bytes = try BoundedFile.read(path, limit: .partitionTable)
        do {
            if bytes.count >= 2, (bytes[0] == 0xAA && bytes[1] == 0x50) || (bytes[0] == 0xEB && bytes[1] == 0xEB)
                || bytes.allSatisfy({ $0 == 0xFF }) {
                let parsed = try PartitionTable.parse(binary: bytes)
                return PartitionTableFile(table: parsed.table, isBinary: true, md5: parsed.md5, warnings: parsed.warnings)
            }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw UsageError(Diagnostic("is neither a binary partition table (it does not start with AA 50) nor UTF-8 CSV text",
                                            file: path))
            }
            let parsed = try PartitionTable.parse(csv: text, options: options)
            return PartitionTableFile(table: parsed.table, isBinary: false, md5: nil, warnings: parsed.warnings)
        } catch let e as UsageError {
            throw e
        } catch {
            throw FileContextError(file: path, underlying: error)
        }
    }

    /// The layout checks of `partitions show`: never throws; the first layout error (if any)
    /// comes back as `problem`, with the parse warnings and the validation warnings.
    public func review(options: PartitionTableOptions) -> (problem: PartitionTableError?, warnings: [PartitionWarning]) {
        do throws(PartitionTableError) {
            return (nil, warnings + (try table.validate(options: options)))
        } catch {
            return (error, warnings)
        }
    }

    /// The JSON report of `partitions show --json`, with `warnings` (e.g. from ``review(options:)``).
    public func report(warnings: [PartitionWarning]) -> PartitionTableReport {
        PartitionTableReport(format: isBinary ? "binary" : "csv", md5: md5?.rawValue,
                             partitions: table.entries.map(PartitionTableReport.Partition.init), warnings: warnings.map(\.message))
    }

    /// The OTA slots a table offers, for `otadata build --boot ota_N --table`: throws unless the
    /// table has an `ota_slot` app and an otadata partition of 0x2000 bytes.
    public func checkBootable(slot: Int, name path: String) throws {
        let slots = table.otaApps.map { Int($0.subtype) - 0x10 }
        guard slots.contains(slot) else {
            throw UsageError(Diagnostic("the partition table has no ota_\(slot) partition", file: path,
                                        hint: "its OTA slots: " + (slots.isEmpty ? "none" : slots.sorted().map { "ota_\($0)" }.joined(separator: ", "))))
        }
        guard let otadata = table.otadata, otadata.size == UInt32(Otadata.size) else {
            throw UsageError(Diagnostic("the partition table has no otadata partition of 0x2000 bytes", file: path))
        }
    }

    /// Whether the table has a factory app.
    public var hasFactoryApp: Bool {
        table.entries.contains { $0.type == PartitionEntry.Kind.app && $0.subtype == PartitionEntry.AppSubtype.factory }
    }
}

/// `espforge partitions show --json`: every entry with its names decoded.
public struct PartitionTableReport: Codable, Sendable, Equatable {
    public struct Partition: Codable, Sendable, Equatable {
        public var name: String
        public var type: Int
        public var typeName: String?
        public var subtype: Int
        public var subtypeName: String?
        public var offset: Int
        public var offsetHex: String
        public var size: Int
        public var sizeHex: String
        public var encrypted: Bool
        public var readonly: Bool
        public var flags: Int

        public init(_ e: PartitionEntry) {
            name = e.name
            type = Int(e.type)
            typeName = PartitionKeywords.typeName(e.type)
            subtype = Int(e.subtype)
            subtypeName = PartitionKeywords.subtypeName(type: e.type, subtype: e.subtype)
            offset = Int(e.offset)
            offsetHex = NumberParsing.hex(e.offset)
            size = Int(e.size)
            sizeHex = NumberParsing.hex(e.size)
            encrypted = e.isEncrypted
            readonly = e.isReadOnly
            flags = Int(e.flags)
        }
    }
    /// "binary" or "csv".
    public var format: String
    public var md5: String?
    public var partitions: [Partition]
    public var warnings: [String]

    public func json() throws -> String { try JSONText.render(self) }
}

/// `espforge otadata show`: both copies of an otadata partition and the slot the bootloader picks.
public struct OtadataReport: Codable, Sendable, Equatable {
    public struct Copy: Codable, Sendable, Equatable {
        public var offset: Int
        public var erased: Bool
        public var sequence: UInt32
        /// The state's name, or its raw value in hex when it is not a known state.
        public var state: String
        /// The stored CRC in hex.
        public var crc: String
        public var crcValid: Bool
        public var valid: Bool
    }
    public var copies: [Copy]
    public var activeCopy: Int?
    public var otaApps: Int
    public var factory: Bool
    /// e.g. "ota_1", "factory", "factory (otadata invalid)".
    public var boots: String

    /// The report for `parsed` on a table with `otaApps` OTA app partitions (0…16) and maybe a factory app.
    public init(_ parsed: Otadata.Parsed, otaApps: Int, factory: Bool) {
        copies = parsed.copies.map {
            Copy(offset: $0.offset, erased: $0.isErased, sequence: $0.sequence,
                 state: $0.state?.name ?? NumberParsing.hex($0.stateValue),
                 crc: NumberParsing.hex($0.storedCRC), crcValid: $0.crcValid, valid: $0.isValid)
        }
        activeCopy = parsed.activeCopy
        self.otaApps = otaApps
        self.factory = factory
        switch parsed.boot(otaAppCount: otaApps, hasFactory: factory) {
        case let .ota(n): boots = "ota_\(n)"
        case .factory: boots = "factory"
        case .firstOTA: boots = "ota_0 (no valid otadata and no factory app)"
        case let .invalidFallback(f): boots = f ? "factory (otadata invalid)" : "first bootable app (otadata invalid)"
        }
    }

    public var text: String {
        var lines: [String] = []
        for (i, c) in copies.enumerated() {
            let at = "copy \(i) @\(NumberParsing.hex(c.offset, width: 4)): "
            if c.erased { lines.append(at + "erased"); continue }
            let crcText = c.crcValid ? "ok" : "BAD (stored \(c.crc), expected \(NumberParsing.hex(Otadata.crc(sequence: c.sequence))))"
            lines.append(at + "seq \(c.sequence), state \(c.state), crc \(crcText)\(c.valid ? "" : ", not valid")")
        }
        lines.append("active copy: \(activeCopy.map(String.init) ?? "none")")
        lines.append("boots: \(boots) (\(otaApps) OTA app partition(s)\(factory ? ", factory app" : ""))")
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() throws -> String { try JSONText.render(self) }
}

extension PartitionTableOptions {
    /// Options from their command-line spellings (`--chip`, `--offset`, `--flash-size`,
    /// `--bootloader`: the image whose size must end before the table). A value that does not
    /// parse is a usage error naming the option.
    public init(chipName chip: String, tableOffset offset: String, flashSize: String?, md5: Bool, secureBootV1: Bool,
                environment: [String: String], bootloaderPath: String?, recoveryBootloaderOffset: String? = nil) throws {
        guard let chipSpec = ChipSpec.named(chip) else {
            throw UsageError("unknown chip '\(chip)'", hint: "use one of: " + ChipSpec.all.map(\.name).joined(separator: ", "))
        }
        guard let tableOffset = NumberParsing.integer(offset), tableOffset >= 0, tableOffset <= Int(UInt32.max) else {
            throw UsageError("--offset '\(offset)' is not a valid offset", hint: "for example 0x8000")
        }
        var flash: Int?
        if let flashSize {
            guard let n = NumberParsing.size(flashSize), n > 0 else {
                throw UsageError("--flash-size '\(flashSize)' is not a size", hint: "for example 4MB")
            }
            flash = n
        }
        self.init(tableOffset: tableOffset, chip: chipSpec, flashSize: flash, md5: md5, secureBootV1: secureBootV1,
                  environment: environment)
        if let bootloaderPath { bootloaderSize = try BoundedFile.read(bootloaderPath, limit: .flashContents).count }
        if let text = recoveryBootloaderOffset {
            guard let n = NumberParsing.integer(text), n >= 0, n <= Int(UInt32.max) else {
                throw UsageError("--recovery-bootloader-offset '\(text)' is not a valid offset", hint: "for example 0x3F0000")
            }
            self.recoveryBootloaderOffset = n
        }
    }
}

extension Otadata {
    /// The otadata image `espforge otadata build` writes, with a one-line summary: an explicit
    /// `sequence`, else `boot` (`ota_0` … `ota_15`, or `none` for an erased partition), with the
    /// first copy in `state` (a ``State`` name). With `tablePath`, that partition table (binary or
    /// CSV) must have the slot and an otadata partition of 0x2000 bytes. Bad values are usage errors.
    public static func image(boot: String, sequence: UInt32?, state: String,
                             tablePath: String?) throws -> (bytes: [UInt8], summary: String) {
        guard let otaState = State(name: state) else {
            throw UsageError("unknown --state '\(state)'", hint: "use one of: " + State.allCases.map(\.name).joined(separator: ", "))
        }
        if let sequence {
            guard sequence != 0xFFFF_FFFF else { throw UsageError("--seq 0xFFFFFFFF means 'erased'; use --boot none") }
            return (build(sequence: sequence, state: otaState), "sequence \(sequence)")
        }
        let lower = boot.lowercased()
        if lower == "none" { return (blank(), "erased (boots factory, or ota_0 without one)") }
        guard lower.hasPrefix("ota_"), let n = Int(lower.dropFirst(4)), (0..<16).contains(n) else {
            throw UsageError("--boot '\(boot)' is not an OTA slot", hint: "use ota_0 … ota_15 or none")
        }
        if let tablePath {
            try PartitionTableFile.load(tablePath, options: PartitionTableOptions()).checkBootable(slot: n, name: tablePath)
        }
        return (build(bootSlot: n, state: otaState), "boots ota_\(n) (sequence \(n + 1))")
    }
}
