import EFuse
import ESPCore

/// Reads keys of one TOML table with typed getters and rejects keys nobody asked for.
struct TableReader {
    let table: TOMLTable
    let name: String   // "" for the root, else e.g. "chip" or "images.app"
    private(set) var used: Set<String> = []

    init(_ table: TOMLTable, name: String) { self.table = table; self.name = name }

    func qualified(_ key: String) -> String { name.isEmpty ? key : name + "." + key }

    mutating func node(_ key: String) -> TOMLNode? {
        used.insert(key)
        return table[key]
    }

    func typeError(_ key: String, _ node: TOMLNode, expected: String, hint: String? = nil) -> ManifestError {
        ManifestError("`\(qualified(key))` must be \(expected), not \(node.value.typeName)", at: node.position, hint: hint)
    }

    mutating func string(_ key: String) throws(ManifestError) -> (String, TOMLPosition)? {
        guard let n = node(key) else { return nil }
        guard case .string(let s) = n.value else { throw typeError(key, n, expected: "a string") }
        guard !s.isEmpty else { throw ManifestError("`\(qualified(key))` must not be empty", at: n.position) }
        return (s, n.position)
    }

    mutating func int(_ key: String) throws(ManifestError) -> (Int, TOMLPosition)? {
        guard let n = node(key) else { return nil }
        guard case .integer(let v) = n.value else { throw typeError(key, n, expected: "an integer", hint: "write e.g. 0x10000 without quotes") }
        return (v, n.position)
    }

    mutating func bool(_ key: String) throws(ManifestError) -> Bool? {
        guard let n = node(key) else { return nil }
        guard case .boolean(let v) = n.value else { throw typeError(key, n, expected: "true or false") }
        return v
    }

    mutating func strings(_ key: String) throws(ManifestError) -> [(String, TOMLPosition)]? {
        guard let n = node(key) else { return nil }
        guard case .array(let items) = n.value else { throw typeError(key, n, expected: "an array of strings", hint: "write [\"A\", \"B\"]") }
        var out: [(String, TOMLPosition)] = []
        for item in items {
            guard case .string(let s) = item.value else {
                throw ManifestError("`\(qualified(key))` must hold strings only, found \(item.value.typeName)", at: item.position)
            }
            out.append((s, item.position))
        }
        return out
    }

    mutating func table(_ key: String) throws(ManifestError) -> (TableReader, TOMLPosition)? {
        guard let n = node(key) else { return nil }
        guard case .table(let t) = n.value else { throw typeError(key, n, expected: "a table", hint: "write [\(qualified(key))] as a header") }
        return (TableReader(t, name: qualified(key)), n.position)
    }

    func required<T>(_ value: T?, _ key: String) throws(ManifestError) -> T {
        guard let value else {
            throw ManifestError("`\(qualified(key))` is missing", at: table.position,
                                hint: name.isEmpty ? "add `\(key) = …`" : "add `\(key) = …` under [\(name)]")
        }
        return value
    }

    /// Fails on the first key that was never asked for (a typo, most likely).
    func finish() throws(ManifestError) {
        for key in table.keys where !used.contains(key) {
            let at = table.keyPosition(key)
            let known = used.sorted().joined(separator: ", ")
            throw ManifestError("unknown key `\(qualified(key))`", at: at,
                                hint: known.isEmpty ? nil : "known keys here: \(known)")
        }
    }
}

extension Manifest {
    public static let chipTypes = ["esp32", "esp32s3", "esp32c3"]
    public static let imageNames = ["bootloader", "partition_table", "otadata", "app"]
    public static let flashModes = ["qio", "qout", "dio", "dout"]
    public static let flashFreqs = ["80m", "40m", "26m", "20m"]
    /// eFuses the final plan must not touch: keys, MAC, protection words, and the ones the
    /// secure boot / flash encryption steps manage themselves.
    public static let managedEFuses: Set<String> = [
        "BLOCK1", "BLOCK2", "BLOCK3", "MAC", "MAC_CRC", "CUSTOM_MAC", "CUSTOM_MAC_CRC", "WR_DIS", "RD_DIS",
        "FLASH_CRYPT_CNT", "FLASH_CRYPT_CONFIG", "ABS_DONE_0", "ABS_DONE_1", "CODING_SCHEME",
    ]

    /// Parses and validates `espforge.toml` text. Errors carry the line and column.
    public static func parse(_ bytes: [UInt8]) throws -> Manifest {
        let table: TOMLTable
        do { table = try TOML.parse(bytes) } catch { throw error }
        return try decode(table)
    }

    public static func parse(_ text: String) throws -> Manifest { try parse(Array(text.utf8)) }

    public static func decode(_ root: TOMLTable) throws(ManifestError) -> Manifest {
        var r = TableReader(root, name: "")
        let version = try r.int("version")
        guard let version else {
            throw ManifestError("`version` is missing", at: TOMLPosition(line: 1, column: 1), hint: "start the file with `version = 1`")
        }
        guard version.0 == currentVersion else {
            throw ManifestError("unsupported manifest version \(version.0)", at: version.1, hint: "this espforge reads version = \(currentVersion)")
        }

        // [chip]
        guard let (chipTable, _) = try r.table("chip") else {
            throw ManifestError("the [chip] table is missing", at: root.position, hint: "add [chip] with type = \"esp32\" and flash_size = \"4MB\"")
        }
        var c = chipTable
        let type = try c.string("type") ?? ("esp32", root.position)
        guard chipTypes.contains(type.0) else {
            throw ManifestError("unknown chip `\(type.0)`", at: type.1, hint: "use one of " + chipTypes.joined(separator: ", "))
        }
        let flashSize = try flashSizeValue(&c)
        let minRevision = try c.int("min_revision")
        if let m = minRevision, !(0...99).contains(m.0) {
            throw ManifestError("`chip.min_revision` must be 0…99", at: m.1, hint: "ESP32 v3.0 is min_revision = 3")
        }
        let mode = try c.string("flash_mode")
        if let m = mode, !flashModes.contains(m.0) {
            throw ManifestError("unknown flash mode `\(m.0)`", at: m.1, hint: "use one of " + flashModes.joined(separator: ", "))
        }
        let freq = try c.string("flash_freq")
        if let f = freq, !flashFreqs.contains(f.0) {
            throw ManifestError("unknown flash frequency `\(f.0)`", at: f.1, hint: "use one of " + flashFreqs.joined(separator: ", "))
        }
        try c.finish()
        let chip = ChipSettings(type: type.0, minRevision: minRevision?.0, flashSize: flashSize,
                                flashMode: mode?.0, flashFreq: freq?.0)

        // [build]
        var buildDir: String?
        if let (bt, _) = try r.table("build") {
            var b = bt
            buildDir = try b.required(try b.string("dir"), "dir").0
            try b.finish()
        }

        // [images.NAME]
        var images = Images()
        var seenOffsets: [Int: String] = [:]
        if let (it, itAt) = try r.table("images") {
            var i = it
            for name in it.table.keys {
                guard imageNames.contains(name) else {
                    throw ManifestError("unknown image `images.\(name)`", at: it.table[name]?.position ?? itAt,
                                        hint: "images are " + imageNames.joined(separator: ", "))
                }
                guard let (imgTable, imgAt) = try i.table(name) else { continue }
                var t = imgTable
                let file = try t.required(try t.string("file"), "file")
                let offset = try t.required(try t.int("offset"), "offset")
                try t.finish()
                guard offset.0 >= 0, offset.0 % 0x1000 == 0 else {
                    throw ManifestError("`images.\(name).offset` \(NumberParsing.hex(max(0, offset.0))) is not a multiple of 0x1000", at: offset.1,
                                        hint: "flash offsets are 4 KiB aligned")
                }
                guard offset.0 < flashSize else {
                    throw ManifestError("`images.\(name).offset` \(NumberParsing.hex(offset.0)) lies beyond the \(flashSize >> 20) MB flash", at: offset.1)
                }
                if let other = seenOffsets[offset.0] {
                    throw ManifestError("images `\(other)` and `\(name)` have the same offset \(NumberParsing.hex(offset.0))", at: offset.1)
                }
                seenOffsets[offset.0] = name
                let ref = ImageRef(path: file.0, offset: offset.0)
                switch name {
                case "bootloader": images.bootloader = ref
                case "partition_table": images.partitionTable = ref
                case "otadata": images.otadata = ref
                default: images.app = ref
                }
                _ = imgAt
            }
            try i.finish()
        }
        if buildDir == nil {
            for (key, present) in [("bootloader", images.bootloader != nil), ("partition_table", images.partitionTable != nil), ("app", images.app != nil)] where !present {
                throw ManifestError("image `\(key)` is missing and there is no [build] dir to take it from", at: root.position,
                                    hint: "add [images.\(key)] with file and offset, or [build] dir = \"build\"")
            }
        }

        // [partitions]
        var partitionsCSV: String?
        if let (pt, _) = try r.table("partitions") {
            var p = pt
            partitionsCSV = try p.required(try p.string("csv"), "csv").0
            try p.finish()
        }

        // [signing]
        var signing: Signing?
        var pkcs11 = PKCS11Settings()
        if let (st, stAt) = try r.table("signing") {
            var s = st
            let key = try s.string("key")
            let pub = try s.string("public_key")
            let bsig = try s.string("bootloader_signature")
            let asig = try s.string("app_signature")
            let presigned = try s.bool("presigned") ?? false
            let module = try s.string("pkcs11_module")
            let pinFile = try s.string("pkcs11_pin_file")
            try s.finish()
            if let extra = module ?? pinFile, !(key.map { $0.0.lowercased().hasPrefix("pkcs11:") } ?? false) {
                throw ManifestError("pkcs11_module and pkcs11_pin_file apply only to a key = \"pkcs11:…\" URI", at: extra.1,
                                    hint: "write key = \"pkcs11:token=…;object=…;type=private\", or remove them")
            }
            if let key, key.0.lowercased().hasPrefix("pkcs11:"), key.0.lowercased().contains("pin-value=") {
                throw ManifestError("the signing key URI carries pin-value; a PIN never goes into the manifest", at: key.1,
                                    hint: "set $ESPFORGE_PKCS11_PIN or pkcs11_pin_file = \"pin.txt\" (mode 0600)")
            }
            pkcs11 = PKCS11Settings(module: module?.0, pinFile: pinFile?.0)
            let externalParts = [pub, bsig, asig].compactMap { $0 }
            let ways = (key != nil ? 1 : 0) + (externalParts.isEmpty ? 0 : 1) + (presigned ? 1 : 0)
            guard ways == 1 else {
                throw ManifestError(ways == 0 ? "[signing] names no way to sign" : "[signing] names more than one way to sign",
                                    at: ways == 0 ? stAt : (key?.1 ?? externalParts.first?.1 ?? stAt),
                                    hint: "use exactly one of: key = \"signing_key.pem\"; public_key + bootloader_signature + app_signature; presigned = true")
            }
            if let key { signing = .key(path: key.0) }
            else if presigned { signing = .presigned }
            else {
                guard let pub, let bsig, let asig else {
                    let missing = [("public_key", pub), ("bootloader_signature", bsig), ("app_signature", asig)].filter { $0.1 == nil }.map(\.0)
                    throw ManifestError("external signing needs public_key, bootloader_signature and app_signature; missing: " + missing.joined(separator: ", "),
                                        at: externalParts.first?.1 ?? stAt)
                }
                signing = .external(publicKey: pub.0, bootloaderSignature: bsig.0, appSignature: asig.0)
            }
        }

        // [flash_encryption]
        var fe = FlashEncryptionSettings()
        if let (ft, _) = try r.table("flash_encryption") {
            var f = ft
            if let m = try f.string("mode") {
                guard let mode = FlashEncryptionMode(rawValue: m.0) else {
                    throw ManifestError("unknown flash encryption mode `\(m.0)`", at: m.1,
                                        hint: "use \"host\" (espforge encrypts), \"on-chip\" (the bootloader encrypts on first boot) or \"none\"")
                }
                fe.mode = mode
            }
            fe.release = try f.bool("release") ?? true
            try f.finish()
        }

        // [nvs]
        var nvs: NVSSettings?
        if let (nt, _) = try r.table("nvs") {
            var n = nt
            let config = try n.required(try n.string("config"), "config").0
            let values = try n.required(try n.string("values"), "values").0
            let partition = try n.string("partition")?.0 ?? "nvs"
            let encrypt = try n.bool("encrypt") ?? true
            let keys = try n.string("keys_partition")
            try n.finish()
            if let keys, !encrypt {
                throw ManifestError("`nvs.keys_partition` is set but `nvs.encrypt` is false", at: keys.1, hint: "remove keys_partition or set encrypt = true")
            }
            nvs = NVSSettings(config: config, values: values, partition: partition, encrypt: encrypt, keysPartition: keys?.0)
        }

        // [efuse]
        var plan = EFusePlan()
        if let (et, _) = try r.table("efuse") {
            var e = et
            let layout: EFuseLayout? = chip.type == "esp32" ? EFuseLayout.esp32 : nil
            plan.burn = try efuseNames(try e.strings("burn") ?? [], key: "efuse.burn", layout: layout, needsWriteProtectBit: false)
            plan.writeProtect = try efuseNames(try e.strings("write_protect") ?? [], key: "efuse.write_protect", layout: layout, needsWriteProtectBit: true)
            try e.finish()
        }

        // [registry]
        var registry = RegistrySettings()
        if let (gt, _) = try r.table("registry") {
            var g = gt
            if let u = try g.string("url") {
                let lower = u.0.lowercased()
                if lower.contains("://") && !(lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://")) {
                    // Whatever precedes the last `@` may hold a password: not shown.
                    let shown = u.0.lastIndex(of: "@").map { at in
                        (u.0.range(of: "://").map { String(u.0[..<$0.upperBound]) } ?? "") + "***" + String(u.0[at...])
                    } ?? u.0
                    throw ManifestError("unsupported registry URL `\(shown)`", at: u.1,
                                        hint: "use a file path, sqlite:PATH or postgres://user:pass@host:5432/db")
                }
                registry.url = u.0
            }
            registry.station = try g.string("station")?.0
            try g.finish()
        }

        // [first_boot]
        var firstBoot = FirstBoot()
        if let (bt, _) = try r.table("first_boot") {
            var b = bt
            firstBoot.readyLine = try b.string("ready_line")?.0
            if let t = try b.int("timeout") {
                guard (1...3600).contains(t.0) else {
                    throw ManifestError("`first_boot.timeout` must be 1…3600 seconds", at: t.1)
                }
                firstBoot.timeout = t.0
            }
            try b.finish()
        }

        // [escrow]
        var escrowKey: String?
        if let (et, _) = try r.table("escrow") {
            var e = et
            escrowKey = try e.required(try e.string("public_key"), "public_key").0
            try e.finish()
        }

        let stationSlots = try decodeStation(&r)

        try r.finish()
        var manifest = Manifest(version: version.0, chip: chip, buildDir: buildDir, images: images, partitionsCSV: partitionsCSV,
                                signing: signing, flashEncryption: fe, nvs: nvs, efuse: plan, registry: registry, firstBoot: firstBoot)
        manifest.pkcs11 = pkcs11
        manifest.escrowPublicKey = escrowKey
        manifest.stationSlots = stationSlots
        return manifest
    }

    static func flashSizeValue(_ c: inout TableReader) throws(ManifestError) -> Int {
        guard let n = c.node("flash_size") else {
            throw ManifestError("`chip.flash_size` is missing", at: c.table.position, hint: "add flash_size = \"4MB\" under [chip]")
        }
        let size: Int?
        switch n.value {
        case .string(let s): size = NumberParsing.size(s)
        case .integer(let v): size = v
        default: throw c.typeError("flash_size", n, expected: "a size such as \"4MB\"")
        }
        guard let size, size >= 1 << 20, size <= 128 << 20, size & (size - 1) == 0 else {
            throw ManifestError("`chip.flash_size` must be a power of two from 1MB to 128MB", at: n.position,
                                hint: "write e.g. flash_size = \"4MB\"")
        }
        return size
    }

    static func efuseNames(_ items: [(String, TOMLPosition)], key: String, layout: EFuseLayout?,
                           needsWriteProtectBit: Bool) throws(ManifestError) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for (name, at) in items {
            guard seen.insert(name).inserted else {
                throw ManifestError("eFuse `\(name)` is listed twice in `\(key)`", at: at)
            }
            if let layout {
                guard let field = layout.field(named: name) else {
                    let close = layout.fields.map(\.name).filter { $0.hasPrefix(String(name.prefix(4)).uppercased()) }
                    throw ManifestError("unknown eFuse `\(name)` in `\(key)`", at: at,
                                        hint: close.isEmpty ? "names are as espefuse summary prints them, e.g. JTAG_DISABLE"
                                                            : "did you mean " + close.joined(separator: ", ") + "?")
                }
                if !needsWriteProtectBit && managedEFuses.contains(field.name) {
                    throw ManifestError("eFuse `\(name)` cannot be in the final plan", at: at,
                                        hint: "keys, MAC, protection words, secure boot and flash encryption fuses are burned by their own steps")
                }
                if needsWriteProtectBit && field.writeProtect == nil {
                    throw ManifestError("eFuse `\(name)` has no write-protection bit", at: at)
                }
            }
            out.append(name)
        }
        return out
    }
}
