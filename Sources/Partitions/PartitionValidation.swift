import ESPCore

extension PartitionTable {
    /// Checks the table the way ESP-IDF's gen_esp32part and bootloader need it, plus espforge's
    /// security checks. Throws the first error; returns warnings for things that work but are
    /// probably mistakes.
    public func validate(options: PartitionTableOptions = .init()) throws(PartitionTableError) -> [PartitionWarning] {
        var warnings: [PartitionWarning] = []
        let tableOffset = options.tableOffset
        let bootloaderOffset = options.chip.bootloaderOffset
        guard tableOffset % Self.sectorSize == 0 else { throw .tableOffsetMisaligned(tableOffset: tableOffset) }
        guard tableOffset >= bootloaderOffset + Self.sectorSize else {
            throw .tableOverlapsBootloader(tableOffset: tableOffset, bootloaderOffset: bootloaderOffset,
                                           chip: options.chip.displayName)
        }
        if let size = options.bootloaderSize, bootloaderOffset + size > tableOffset {
            throw .bootloaderTooLarge(bootloaderOffset: bootloaderOffset, bootloaderSize: size, tableOffset: tableOffset)
        }

        // Each entry on its own.
        for (i, e) in entries.enumerated() {
            let src = source(i)
            let align = e.requiredOffsetAlignment
            if Int(e.offset) % align != 0 {
                throw .misalignedOffset(name: e.name, offset: Int(e.offset), alignment: align, source: src)
            }
            if e.type == PartitionEntry.Kind.app {
                let sizeAlign = options.secureBootV1 ? 0x10000 : 0x1000
                if Int(e.size) % sizeAlign != 0 {
                    throw .misalignedSize(name: e.name, size: Int(e.size), alignment: sizeAlign, source: src)
                }
            }
            if e.size == 0 { throw .emptyPartition(name: e.name, source: src) }
            try checkDataSubtype(e, source: src, warnings: &warnings)
            nameWarnings(e, source: src, warnings: &warnings)
        }

        // Unique names.
        var seen: [String: [Int]] = [:]
        for (i, e) in entries.enumerated() { seen[e.name, default: []].append(i) }
        if let dup = entries.indices.first(where: { (seen[entries[$0].name]?.count ?? 0) > 1 }) {
            let name = entries[dup].name
            throw .duplicateName(name, sources: (seen[name] ?? []).map(source))
        }

        // Nothing below the table's end, no overlaps.
        let order = entries.indices.sorted { (entries[$0].offset, $0) < (entries[$1].offset, $1) }
        var previous: Int?
        for i in order {
            let e = entries[i]
            if Int(e.offset) < options.firstFreeOffset, !e.isPrimaryBootloaderOrTable {
                throw .belowTable(name: e.name, offset: Int(e.offset), firstFree: options.firstFreeOffset, source: source(i))
            }
            if let p = previous, Int(e.offset) < entries[p].end {
                throw .overlap(name: e.name, offset: Int(e.offset), other: entries[p].name,
                               otherStart: Int(entries[p].offset), otherEnd: entries[p].end, source: source(i))
            }
            previous = i
        }

        // One otadata of 0x2000 bytes (the same for the TEE's).
        for (subtype, name) in [(PartitionEntry.DataSubtype.ota, "ota"), (PartitionEntry.DataSubtype.teeOta, "tee_ota")] {
            let found = entries.indices.filter { entries[$0].type == PartitionEntry.Kind.data && entries[$0].subtype == subtype }
            if found.count > 1 { throw .multipleOtadata(subtype: name, sources: found.map(source)) }
            if let i = found.first, entries[i].size != 0x2000 {
                throw .otadataSize(name: entries[i].name, size: Int(entries[i].size), source: source(i))
            }
        }

        // OTA apps and otadata go together.
        let otaIndices = entries.indices.filter {
            entries[$0].type == PartitionEntry.Kind.app && (0x10...0x1F).contains(entries[$0].subtype)
        }
        if let first = otaIndices.first, otadata == nil {
            throw .otaAppsWithoutOtadata(name: entries[first].name, source: source(first))
        }
        if otaIndices.isEmpty, let i = entries.firstIndex(where: {
            $0.type == PartitionEntry.Kind.data && $0.subtype == PartitionEntry.DataSubtype.ota
        }) {
            warnings.append(PartitionWarning(.otadataWithoutOtaApps,
                "otadata partition '\(entries[i].name)' but no OTA app partitions (ota_0 …)", source: source(i),
                hint: "the bootloader ignores otadata without OTA apps"))
        }
        if !entries.contains(where: { $0.type == PartitionEntry.Kind.app }) {
            warnings.append(PartitionWarning(.noApp, "the table has no app partition; the bootloader has nothing to boot",
                                             source: .none))
        }
        let slots = Set(otaIndices.map { Int(entries[$0].subtype) - 0x10 })
        if !slots.isEmpty, slots != Set(0..<slots.count) {
            warnings.append(PartitionWarning(.otaSlotsNotContiguous,
                "OTA app slots \(slots.sorted().map { "ota_\($0)" }.joined(separator: ", ")) are not contiguous from ota_0",
                source: otaIndices.first.map(source) ?? .none,
                hint: "the OTA API counts slots from ota_0 up to the first missing one"))
        }
        var appSubtypes: [UInt8: Int] = [:]
        for i in entries.indices where entries[i].type == PartitionEntry.Kind.app {
            if appSubtypes[entries[i].subtype] != nil {
                let sub = PartitionKeywords.subtypeText(type: 0, subtype: entries[i].subtype)
                warnings.append(PartitionWarning(.duplicateAppSubtype,
                    "more than one app partition has subtype \(sub); the bootloader uses only one of them",
                    source: source(i)))
            }
            appSubtypes[entries[i].subtype] = i
        }

        // Flash size.
        if let flash = options.flashSize {
            for i in order where entries[i].end > flash {
                throw .pastFlashEnd(name: entries[i].name, end: entries[i].end, flashSize: flash, source: source(i))
            }
        }
        return warnings
    }

    private func checkDataSubtype(_ e: PartitionEntry, source src: PartitionSource,
                                  warnings: inout [PartitionWarning]) throws(PartitionTableError) {
        guard e.type == PartitionEntry.Kind.data else { return }
        switch e.subtype {
        case PartitionEntry.DataSubtype.ota, PartitionEntry.DataSubtype.coredump:
            if e.isReadOnly {
                throw .readOnlyNotAllowed(name: e.name, subtype: PartitionKeywords.subtypeText(type: 1, subtype: e.subtype),
                                          source: src)
            }
        case PartitionEntry.DataSubtype.nvs:
            if e.size < 0x3000, !e.isReadOnly { throw .nvsTooSmallForReadWrite(name: e.name, size: Int(e.size), source: src) }
            if e.isEncrypted {
                warnings.append(PartitionWarning(.nvsEncrypted,
                    "nvs partition '\(e.name)' is flagged encrypted: flash encryption does not apply to NVS, and the flag breaks it",
                    source: src,
                    hint: "remove 'encrypted'; protect NVS with NVS encryption (an nvs_keys partition) instead"))
            }
        case PartitionEntry.DataSubtype.nvsKeys:
            if !e.isEncrypted {
                warnings.append(PartitionWarning(.nvsKeysNotEncrypted,
                    "nvs_keys partition '\(e.name)' is not flagged encrypted: ESP-IDF requires the flag, and older releases and flashing tools that follow it leave the NVS keys in plaintext",
                    source: src, hint: "add the 'encrypted' flag"))
            }
            if e.size < 0x1000 {
                warnings.append(PartitionWarning(.nvsKeysTooSmall,
                    "nvs_keys partition '\(e.name)' has size 0x\(String(e.size, radix: 16)); it needs one 4 KiB sector (0x1000)",
                    source: src))
            }
        default:
            break
        }
    }

    private func nameWarnings(_ e: PartitionEntry, source src: PartitionSource, warnings: inout [PartitionWarning]) {
        if let t = PartitionKeywords.lookup(e.name, in: PartitionKeywords.types), e.name == e.name.lowercased(), t != e.type {
            warnings.append(PartitionWarning(.nameLooksLikeKeyword,
                "partition '\(e.name)' is named like a partition type but has type \(PartitionKeywords.typeText(e.type))",
                source: src, hint: "mistake in the partition table?"))
        } else if PartitionKeywords.allSubtypeNames.contains(e.name),
                  PartitionKeywords.subtypes(forType: e.type).first(where: { $0.name == e.name })?.value != e.subtype {
            warnings.append(PartitionWarning(.nameLooksLikeKeyword,
                "partition '\(e.name)' is named like a subtype but is \(PartitionKeywords.typeText(e.type))/\(PartitionKeywords.subtypeText(type: e.type, subtype: e.subtype))",
                source: src, hint: "mistake in the partition table?"))
        }
    }
}

/// CSV in, validated table and binary out.
public struct PartitionTableBuild: Sendable {
    public var table: PartitionTable
    public var binary: [UInt8]
    public var warnings: [PartitionWarning]

    public init(csv: String, options: PartitionTableOptions = .init()) throws(PartitionTableError) {
        let parsed = try PartitionTable.parse(csv: csv, options: options)
        var warnings = parsed.warnings
        warnings += try parsed.table.validate(options: options)
        table = parsed.table
        binary = try parsed.table.binary(md5: options.md5)
        self.warnings = warnings
    }
}
