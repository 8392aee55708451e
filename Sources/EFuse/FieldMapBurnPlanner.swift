import ESPCore

/// Burn planning for the chips described by an ``EFuseFieldMap`` (ESP32-S3, ESP32-C3): pure
/// functions from the blocks as they read now to a ``FieldMapBurnPlan`` (the bits each block
/// gets, the lines to show, never key material), or a typed refusal. Semantics follow
/// `espefuse` 5.6.0 for these chips (checked by `FieldMapBurnOracleTests`):
///
/// - `burn NAME=VALUE`: VALUE is the field's new total value (decimal, 0x/0o/0b); it must keep
///   every bit already set; a value whose bits are already all set is a no-op; 1-bit fields take
///   only 1; byte fields take hex (`0x…` reverses the byte order, as espefuse); MAC fields take
///   `aa:bb:cc:dd:ee:ff` (unicast). WR_DIS and RD_DIS take the bits to add.
/// - BLOCK1…BLOCK10 use the Reed–Solomon coding scheme: a block that already holds data takes
///   no new bits (the check value cannot be re-written).
/// - burn-key / burn-key-digest: the key block must be empty, readable and writable; its
///   KEY_PURPOSE_n must be USER (0) or the requested purpose. XTS keys are stored byte-reversed;
///   a 64-byte XTS_AES_256_KEY file goes into the named block (first half, XTS_AES_256_KEY_1) and
///   the next free key block (second half, XTS_AES_256_KEY_2). Secret purposes are read-protected
///   (unless `noReadProtect`), the block is write-protected (unless `noWriteProtect`), and
///   KEY_PURPOSE_n is always write-protected, as espefuse does.
public enum FieldMapBurnPlanner {
    /// One `BLOCK FILE PURPOSE` triple of burn-key (the file's bytes) or burn-key-digest (the
    /// 32-byte public-key digest the layer above computed).
    public struct KeyRequest: Sendable, Equatable {
        public var block: String
        public var data: [UInt8]
        public var purpose: String
        public init(block: String, data: [UInt8], purpose: String) {
            self.block = block
            self.data = data
            self.purpose = purpose
        }
    }

    // MARK: burn NAME=VALUE

    public static func burnFields(_ pairs: [(name: String, value: String)], words: EFuseBlockWords,
                                  map: EFuseFieldMap) throws(FieldMapBurnError) -> FieldMapBurnPlan {
        var plan = FieldMapBurnPlan(map: map)
        var seen = Set<String>()
        for (rawName, value) in pairs {
            let name = rawName.uppercased()
            guard seen.insert(name).inserted else { throw .duplicateName(name) }
            guard let field = map.field(named: name) else {
                if map.composites.contains(where: { $0.name == name }) { throw .notBurnable(name, reason: "it is computed from other fields") }
                throw .unknownName(name, chip: map.chip)
            }
            if field.block >= map.firstKeyBlock && field.block < map.firstKeyBlock + EFuseFieldMap.keyBlockCount {
                throw .notBurnable(name, reason: "key blocks are burned with burn-key or burn-key-digest")
            }
            let newBits = try parseValue(value, field: field)
            try plan.addField(field, bits: newBits, words: words, map: map, display: value)
        }
        for rule in FieldMapBurnRules.rules(chip: map.chip) {
            let after = plan.applied(to: words, map: map, hideReadProtected: false)
            if rule.fields.allSatisfy({ f in map.field(named: f).map { after.integer($0) != 0 } ?? false })
                && rule.fields.contains(where: { f in map.field(named: f).map { words.integer($0) == 0 } ?? false }) {
                throw .incompatible(rule.fields, reason: rule.reason)
            }
        }
        return plan
    }

    /// VALUE as espefuse takes it for `field`, as little-endian field bytes.
    static func parseValue(_ value: String, field: EFuseField) throws(FieldMapBurnError) -> [UInt8] {
        let nbytes = (field.width + 7) / 8
        if field.name.hasSuffix("MAC") && field.width == 48 {
            let parts = value.split(separator: ":", omittingEmptySubsequences: false)
            let bytes = parts.compactMap { $0.count == 2 && $0.allSatisfy(\.isHexDigit) ? UInt8($0, radix: 16) : nil }
            guard parts.count == 6, bytes.count == 6 else {
                throw .badValue(field.name, value, expected: "a MAC address aa:bb:cc:dd:ee:ff")
            }
            guard bytes[0] & 1 == 0 else { throw .badValue(field.name, value, expected: "a unicast MAC (first byte even)") }
            return field.name == "MAC" ? bytes.reversed() : bytes
        }
        if field.width > 64 {
            let hex = value.lowercased().hasPrefix("0x") ? String(value.dropFirst(2)) : value
            guard let bytes = hexBytes(hex), bytes.count == nbytes else {
                throw .badValue(field.name, value, expected: "\(2 * nbytes) hex digits (\(nbytes) bytes)")
            }
            return value.lowercased().hasPrefix("0x") ? bytes.reversed() : bytes
        }
        guard let n = parseInteger(value) else {
            throw .badValue(field.name, value, expected: "a number (decimal, 0x hex, 0o octal or 0b binary)")
        }
        if field.width == 1 && n != 1 {
            throw .badValue(field.name, value, expected: "1 (a 1-bit eFuse only goes from 0 to 1)")
        }
        if n == 0 { throw .badValue(field.name, value, expected: "a value other than 0 (0 burns nothing)") }
        if field.width < 64 && n >> UInt64(field.width) != 0 {
            throw .badValue(field.name, value, expected: "at most \(field.width) bits (≤ \((UInt64(1) << UInt64(field.width)) - 1))")
        }
        return (0..<nbytes).map { UInt8(truncatingIfNeeded: n >> UInt64(8 * $0)) }
    }

    /// Python's `int(s, 0)` for non-negative values: decimal without leading zeros, 0x, 0o, 0b,
    /// single underscores between digits.
    static func parseInteger(_ s: String) -> UInt64? {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        var radix = 10
        var digits = Substring(t)
        for (prefix, r) in [("0x", 16), ("0o", 8), ("0b", 2)] where t.hasPrefix(prefix) {
            radix = r
            digits = t.dropFirst(2)
            if digits.hasPrefix("_") { digits = digits.dropFirst() }
        }
        guard !digits.isEmpty, !digits.hasPrefix("_"), !digits.hasSuffix("_"), !digits.contains("__") else { return nil }
        let clean = digits.replacingOccurrences(of: "_", with: "")
        if radix == 10, clean.count > 1, clean.hasPrefix("0"), clean.contains(where: { $0 != "0" }) { return nil }
        return UInt64(clean, radix: radix)
    }

    static func hexBytes(_ s: String) -> [UInt8]? {
        let chars = Array(s)
        guard chars.count % 2 == 0, chars.allSatisfy(\.isHexDigit) else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            guard let b = UInt8(String(chars[i...i + 1]), radix: 16) else { return nil }
            out.append(b)
            i += 2
        }
        return out
    }

    // MARK: burn-key / burn-key-digest

    public static func burnKeys(_ requests: [KeyRequest], noReadProtect: Bool = false, noWriteProtect: Bool = false,
                                words: EFuseBlockWords, map: EFuseFieldMap) throws(FieldMapBurnError) -> FieldMapBurnPlan {
        guard !requests.isEmpty else { throw .nothingRequested("burn-key") }
        // Resolve blocks, split the XTS-AES-256 pair.
        var triples: [(block: Int, data: [UInt8], purpose: EFuseKeyPurpose)] = []
        let named = try requests.map { (r) throws(FieldMapBurnError) -> Int in try keyBlock(r.block, map: map) }
        for (r, block) in zip(requests, named) {
            let purposeName = r.purpose.uppercased()
            if purposeName == "XTS_AES_256_KEY" {
                guard let p1 = map.keyPurposes.first(where: { $0.name == "XTS_AES_256_KEY_1" }),
                      let p2 = map.keyPurposes.first(where: { $0.name == "XTS_AES_256_KEY_2" }) else {
                    throw .purposeNotOnChip(purposeName, chip: map.chip)
                }
                guard r.data.count == 64 else { throw .badKeyLength(block: map.blockNames[block], purpose: purposeName, expected: 64, actual: r.data.count) }
                let taken = Set(named).union(triples.map(\.block))
                guard let second = nextFreeKeyBlock(after: block, excluding: taken, words: words, map: map) else {
                    throw .noSecondKeyBlock(first: map.blockNames[block])
                }
                triples.append((block, Array(r.data[0..<32]), p1))
                triples.append((second, Array(r.data[32..<64]), p2))
            } else {
                guard let p = map.keyPurposes.first(where: { $0.name == purposeName }) else {
                    if FieldMapBurnRules.allPurposeNames.contains(purposeName) { throw .purposeNotOnChip(purposeName, chip: map.chip) }
                    throw .unknownPurpose(purposeName, chip: map.chip)
                }
                triples.append((block, r.data, p))
            }
        }
        var blocksSeen = Set<Int>()
        for t in triples where !blocksSeen.insert(t.block).inserted { throw .duplicateName(map.blockNames[t.block]) }

        var plan = FieldMapBurnPlan(map: map)
        let wrDis = map.field(named: "WR_DIS"), rdDis = map.field(named: "RD_DIS")
        for t in triples {
            let index = t.block - map.firstKeyBlock
            let blockName = map.blockNames[t.block]
            guard t.data.count == 32 else { throw .badKeyLength(block: blockName, purpose: t.purpose.name, expected: 32, actual: t.data.count) }
            guard let purposeField = map.field(named: "KEY_PURPOSE_\(index)"), let purposeWP = purposeField.writeProtect,
                  let blockWP = map.blockWriteProtectBits[t.block], let blockRP = map.blockReadProtectBits[t.block],
                  let wrDis, let rdDis else { throw .unknownName(blockName, chip: map.chip) }
            if index == 5 && t.purpose.name.hasPrefix("XTS_AES") {
                throw .purposeNotAllowed(block: blockName, purpose: t.purpose.name,
                                         reason: "KEY_PURPOSE_5 cannot hold an XTS-AES key (a hardware erratum); use BLOCK_KEY0…BLOCK_KEY4")
            }
            if isReadProtected(bit: blockRP, words: words, map: map) { throw .keyBlockInUse(blockName, state: "read-protected") }
            if words.isWriteProtected(bit: blockWP) { throw .writeProtected(blockName, bit: blockWP) }
            if (0..<map.blockWordCounts[t.block]).contains(where: { words.word(t.block, $0) != 0 }) {
                throw .keyBlockInUse(blockName, state: "already holds data")
            }
            let current = Int(words.integer(purposeField))
            if current != t.purpose.value {
                if current != 0 {
                    throw .purposeInUse(block: blockName, current: map.purposeName(current) ?? "\(current)", requested: t.purpose.name)
                }
                if words.isWriteProtected(bit: purposeWP) { throw .writeProtected(purposeField.name, bit: purposeWP) }
            }
            let stored = t.purpose.name.hasPrefix("XTS_AES") ? t.data.reversed() : t.data
            let isDigest = t.purpose.name.hasPrefix("SECURE_BOOT_DIGEST")
            var what = isDigest ? "digest \(t.data.hexString)" : "32-byte key (not shown)"
            if t.purpose.name.hasPrefix("XTS_AES") { what += ", stored byte-reversed as the XTS-AES peripheral reads it" }
            plan.addBits(block: t.block, field: map.field(named: blockName) ?? EFuseField(blockName, block: t.block, word: 0, bit: 0, width: 256, ""),
                         bytes: stored)
            plan.lines.append("\(blockName) (BLOCK\(t.block)): \(what)")
            if current != t.purpose.value {
                plan.addBits(block: 0, field: purposeField, bytes: [UInt8(t.purpose.value)])
                plan.lines.append("  \(purposeField.name): \(map.purposeName(current) ?? "\(current)") -> \(t.purpose.name)")
            } else {
                plan.notes.append("\(purposeField.name) is already \(t.purpose.name)")
            }
            if !words.isWriteProtected(bit: purposeWP) {
                plan.addBits(block: 0, field: wrDis, bytes: le32(1 << UInt32(purposeWP)))
                plan.lines.append("  write-protect \(purposeField.name) (WR_DIS bit \(purposeWP))")
            }
            if t.purpose.readProtected && !noReadProtect {
                if let rdWP = rdDis.writeProtect, words.isWriteProtected(bit: rdWP) { throw .writeProtected("RD_DIS", bit: rdWP) }
                plan.addBits(block: 0, field: rdDis, bytes: [UInt8(1 << blockRP)])
                plan.lines.append("  read-protect \(blockName) (RD_DIS bit \(blockRP)): the key is used by hardware only")
            }
            if !noWriteProtect {
                plan.addBits(block: 0, field: wrDis, bytes: le32(1 << UInt32(blockWP)))
                plan.lines.append("  write-protect \(blockName) (WR_DIS bit \(blockWP))")
            }
        }
        if noWriteProtect { plan.notes.append("key blocks stay writable (--no-write-protect)") }
        if noReadProtect { plan.notes.append("key blocks stay readable (--no-read-protect)") }
        return plan
    }

    /// burn-key-digest: only SECURE_BOOT_DIGEST0/1/2 purposes; `data` is the 32-byte digest.
    public static func burnKeyDigests(_ requests: [KeyRequest], noReadProtect: Bool = false, noWriteProtect: Bool = false,
                                      words: EFuseBlockWords, map: EFuseFieldMap) throws(FieldMapBurnError) -> FieldMapBurnPlan {
        for r in requests where !r.purpose.uppercased().hasPrefix("SECURE_BOOT_DIGEST") || map.purposeValue(r.purpose) == nil {
            throw .purposeNotAllowed(block: r.block.uppercased(), purpose: r.purpose.uppercased(),
                                     reason: "burn-key-digest takes SECURE_BOOT_DIGEST0, SECURE_BOOT_DIGEST1 or SECURE_BOOT_DIGEST2")
        }
        for r in requests where r.data.count != 32 {
            throw .badKeyLength(block: r.block.uppercased(), purpose: r.purpose.uppercased(), expected: 32, actual: r.data.count)
        }
        return try burnKeys(requests, noReadProtect: noReadProtect, noWriteProtect: noWriteProtect, words: words, map: map)
    }

    static func keyBlock(_ name: String, map: EFuseFieldMap) throws(FieldMapBurnError) -> Int {
        guard let b = block(named: name, map: map),
              b >= map.firstKeyBlock, b < map.firstKeyBlock + EFuseFieldMap.keyBlockCount else {
            throw .notAKeyBlock(name.uppercased(), chip: map.chip)
        }
        return b
    }

    /// `BLOCK_KEY0` style names and the `BLOCKn` aliases.
    public static func block(named name: String, map: EFuseFieldMap) -> Int? {
        let n = name.uppercased()
        if let i = map.blockNames.firstIndex(of: n) { return i }
        if n == "BLOCK1" || n == "MAC_SPI_8M_0" { return 1 }
        if n.hasPrefix("BLOCK"), let i = Int(n.dropFirst(5)), i >= 0, i < map.blockCount { return i }
        return nil
    }

    /// The next key block after `block` (wrapping) that is empty, readable, writable, with purpose
    /// USER and a writable purpose, and not named in the command.
    static func nextFreeKeyBlock(after block: Int, excluding: Set<Int>, words: EFuseBlockWords, map: EFuseFieldMap) -> Int? {
        let keys = Array(map.firstKeyBlock..<(map.firstKeyBlock + EFuseFieldMap.keyBlockCount))
        guard let start = keys.firstIndex(of: block) else { return nil }
        for b in keys[start...] + keys[..<start] where !excluding.contains(b) {
            let i = b - map.firstKeyBlock
            guard let pf = map.field(named: "KEY_PURPOSE_\(i)"), let wp = map.blockWriteProtectBits[b],
                  let rp = map.blockReadProtectBits[b] else { continue }
            if isReadProtected(bit: rp, words: words, map: map) || words.isWriteProtected(bit: wp) { continue }
            if words.integer(pf) != 0 || (pf.writeProtect.map { words.isWriteProtected(bit: $0) } ?? false) { continue }
            if (0..<map.blockWordCounts[b]).contains(where: { words.word(b, $0) != 0 }) { continue }
            return b
        }
        return nil
    }

    // MARK: write-protect / read-protect

    public static func writeProtect(_ names: [String], words: EFuseBlockWords, map: EFuseFieldMap) throws(FieldMapBurnError) -> FieldMapBurnPlan {
        guard !names.isEmpty else { throw .nothingRequested("write-protect") }
        var plan = FieldMapBurnPlan(map: map)
        var seen = Set<String>()
        guard let wrDis = map.field(named: "WR_DIS") else { throw .unknownName("WR_DIS", chip: map.chip) }
        for raw in names {
            let name = raw.uppercased()
            guard seen.insert(name).inserted else { throw .duplicateName(name) }
            let bit: Int?
            if let f = map.field(named: name) {
                bit = f.writeProtect ?? (f.block == 0 ? nil : map.blockWriteProtectBits[f.block])
            } else if let b = block(named: name, map: map) {
                bit = map.blockWriteProtectBits[b]
            } else {
                throw .unknownName(name, chip: map.chip)
            }
            guard let bit else { throw .notProtectable(name, what: "write-disabled") }
            if words.isWriteProtected(bit: bit) {
                plan.notes.append("\(name) is already write-protected (WR_DIS bit \(bit))")
                continue
            }
            plan.addBits(block: 0, field: wrDis, bytes: le32(1 << UInt32(bit)))
            plan.lines.append("write-protect \(name): WR_DIS bit \(bit) locks \(sharing(writeBit: bit, map: map).joined(separator: ", "))")
        }
        return plan
    }

    public static func readProtect(_ names: [String], words: EFuseBlockWords, map: EFuseFieldMap) throws(FieldMapBurnError) -> FieldMapBurnPlan {
        guard !names.isEmpty else { throw .nothingRequested("read-protect") }
        var plan = FieldMapBurnPlan(map: map)
        var seen = Set<String>()
        guard let rdDis = map.field(named: "RD_DIS") else { throw .unknownName("RD_DIS", chip: map.chip) }
        for raw in names {
            let name = raw.uppercased()
            guard seen.insert(name).inserted else { throw .duplicateName(name) }
            let blk: Int
            let bit: Int?
            if let f = map.field(named: name) {
                blk = f.block
                bit = f.readProtect ?? map.blockReadProtectBits[f.block]
            } else if let b = block(named: name, map: map) {
                blk = b
                bit = map.blockReadProtectBits[b]
            } else {
                throw .unknownName(name, chip: map.chip)
            }
            guard let bit else { throw .notProtectable(name, what: "read-disabled") }
            if isReadProtected(bit: bit, words: words, map: map) {
                plan.notes.append("\(name) is already read-protected (RD_DIS bit \(bit))")
                continue
            }
            if blk >= map.firstKeyBlock && blk < map.firstKeyBlock + EFuseFieldMap.keyBlockCount,
               let pf = map.field(named: "KEY_PURPOSE_\(blk - map.firstKeyBlock)") {
                let p = Int(words.integer(pf))
                if !(map.keyPurposes.first { $0.value == p }?.readProtected ?? false) {
                    throw .mustStayReadable(name, purpose: map.purposeName(p) ?? "\(p)")
                }
            }
            if let wp = rdDis.writeProtect, words.isWriteProtected(bit: wp) { throw .writeProtected("RD_DIS", bit: wp) }
            plan.addBits(block: 0, field: rdDis, bytes: [UInt8(1 << bit)])
            plan.lines.append("read-protect \(name): RD_DIS bit \(bit) hides \(map.blockNames[blk])")
        }
        return plan
    }

    static func sharing(writeBit bit: Int, map: EFuseFieldMap) -> [String] {
        var out = map.fields.filter { $0.writeProtect == bit }.map(\.name)
        for (b, wp) in map.blockWriteProtectBits.enumerated() where wp == bit { out.append(map.blockNames[b]) }
        return out
    }

    static func isReadProtected(bit: Int, words: EFuseBlockWords, map: EFuseFieldMap) -> Bool {
        guard let rd = map.field(named: "RD_DIS") else { return false }
        return words.integer(rd) & (1 << UInt64(bit)) != 0
    }

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(8 * $0)) } }
}

/// Per-chip burn rules espefuse enforces beyond the field map (data, one entry per rule).
public enum FieldMapBurnRules {
    public struct Rule: Sendable {
        public let fields: [String]
        public let reason: String
    }

    public static func rules(chip: String) -> [Rule] { table[chip] ?? [] }

    static let table: [String: [Rule]] = [
        "esp32s3": [Rule(fields: ["DIS_USB_JTAG", "DIS_USB_SERIAL_JTAG"],
                         reason: "the ESP32-S3 ROM bootloader cannot boot with both set")],
    ]

    /// Every purpose name of the family (to tell "not on this chip" from "unknown").
    static let allPurposeNames: Set<String> = ["USER", "RESERVED", "XTS_AES_256_KEY", "XTS_AES_256_KEY_1", "XTS_AES_256_KEY_2",
                                               "XTS_AES_128_KEY", "HMAC_DOWN_ALL", "HMAC_DOWN_JTAG",
                                               "HMAC_DOWN_DIGITAL_SIGNATURE", "HMAC_UP", "SECURE_BOOT_DIGEST0",
                                               "SECURE_BOOT_DIGEST1", "SECURE_BOOT_DIGEST2"]
}

/// What a burn will set: per block, the bits that go from 0 to 1 (an OR mask over the read
/// registers), plus the lines to show. Never holds key material in ``lines``/``notes``.
public struct FieldMapBurnPlan: Sendable, Equatable {
    public let chip: String
    /// Bits to burn, one array of words per block (BLOCK0 first), only new bits.
    public private(set) var bits: [[UInt32]]
    /// What the plan does, one line each (key bytes never appear).
    public var lines: [String] = []
    /// Things skipped because they are already so.
    public var notes: [String] = []

    public init(map: EFuseFieldMap) {
        chip = map.chip
        bits = map.blockWordCounts.map { [UInt32](repeating: 0, count: $0) }
    }

    public var isEmpty: Bool { bits.allSatisfy { $0.allSatisfy { $0 == 0 } } }

    /// Blocks with bits to burn, in the order they are programmed (highest first, BLOCK0 last,
    /// because BLOCK0 holds the protection bits).
    public var programOrder: [Int] { bits.indices.reversed().filter { bits[$0].contains { $0 != 0 } } }

    mutating func addBits(block: Int, field: EFuseField, bytes: [UInt8]) {
        for i in 0..<field.width where i / 8 < bytes.count && bytes[i / 8] & (1 << UInt8(i % 8)) != 0 {
            let abs = field.startBit + i
            bits[block][abs / 32] |= 1 << UInt32(abs % 32)
        }
    }

    /// espefuse's check for one field of `burn`: no-op when every bit is already set, refusal
    /// when a set bit would have to clear or the field is protected.
    mutating func addField(_ field: EFuseField, bits newBytes: [UInt8], words: EFuseBlockWords, map: EFuseFieldMap,
                           display: String) throws(FieldMapBurnError) {
        let current = words.bytes(of: field)
        let isProtectionWord = field.name == "WR_DIS" || field.name == "RD_DIS"
        if zip(newBytes, current).allSatisfy({ $0 & $1 == $0 }) {
            notes.append("\(field.name) already has \(display): nothing to burn")
            return
        }
        if !isProtectionWord, zip(newBytes, current).contains(where: { $0 | $1 != $0 }) {
            throw .wouldClearBits(field.name, current: FieldMapBurnPlan.show(current, field: field),
                                  requested: FieldMapBurnPlan.show(newBytes, field: field))
        }
        let rp = field.readProtect ?? map.blockReadProtectBits[field.block]
        if let rp, FieldMapBurnPlanner.isReadProtected(bit: rp, words: words, map: map) {
            throw .readProtected(field.name, bit: rp)
        }
        if let wp = field.writeProtect ?? (field.block == 0 ? nil : map.blockWriteProtectBits[field.block]), words.isWriteProtected(bit: wp) {
            throw .writeProtected(field.name, bit: wp)
        }
        if field.block != 0, (0..<map.blockWordCounts[field.block]).contains(where: { words.word(field.block, $0) != 0 }) {
            throw .codingSchemeForbids(field.name, block: map.blockNames[field.block])
        }
        addBits(block: field.block, field: field, bytes: newBytes)
        lines.append("\(map.blockNames[field.block]): \(field.name) \(FieldMapBurnPlan.show(current, field: field)) -> \(FieldMapBurnPlan.show(newBytes, field: field))")
    }

    static func show(_ bytes: [UInt8], field: EFuseField) -> String {
        if field.width <= 64 {
            var v: UInt64 = 0
            for (i, b) in bytes.prefix(8).enumerated() { v |= UInt64(b) << UInt64(8 * i) }
            return field.width == 1 ? String(v) : NumberParsing.hex(Int(truncatingIfNeeded: v), width: 1)
        }
        return bytes.hexString
    }

    /// The blocks after burning: every planned bit set (bits only go 0 → 1), then, as the chip
    /// shows them, read-protected blocks read as zero (unless `hideReadProtected` is false).
    public func applied(to words: EFuseBlockWords, map: EFuseFieldMap, hideReadProtected: Bool = true) -> EFuseBlockWords {
        var out = words
        for b in bits.indices {
            for w in bits[b].indices where bits[b][w] != 0 { out.setWord(b, w, out.word(b, w) | bits[b][w]) }
        }
        guard hideReadProtected, let rd = map.field(named: "RD_DIS") else { return out }
        let rdDis = out.integer(rd)
        for (b, bit) in map.blockReadProtectBits.enumerated() {
            guard let bit, rdDis & (1 << UInt64(bit)) != 0 else { continue }
            for w in 0..<map.blockWordCounts[b] { out.setWord(b, w, 0) }
        }
        return out
    }
}

/// Why a burn was refused.
public enum FieldMapBurnError: Error, Equatable, Sendable {
    case unknownName(String, chip: String)
    case duplicateName(String)
    case notBurnable(String, reason: String)
    case badValue(String, String, expected: String)
    case wouldClearBits(String, current: String, requested: String)
    case writeProtected(String, bit: Int)
    case readProtected(String, bit: Int)
    case codingSchemeForbids(String, block: String)
    case incompatible([String], reason: String)
    case notAKeyBlock(String, chip: String)
    case unknownPurpose(String, chip: String)
    case purposeNotOnChip(String, chip: String)
    case purposeNotAllowed(block: String, purpose: String, reason: String)
    case badKeyLength(block: String, purpose: String, expected: Int, actual: Int)
    case keyBlockInUse(String, state: String)
    case purposeInUse(block: String, current: String, requested: String)
    case noSecondKeyBlock(first: String)
    case notProtectable(String, what: String)
    case mustStayReadable(String, purpose: String)
    case nothingRequested(String)
}

extension FieldMapBurnError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .unknownName(n, chip):
            return Diagnostic("\(chip) has no eFuse field or block '\(n)'",
                              hint: "see `espforge efuse summary --chip \(chip) --virt-file FILE` for the names")
        case let .duplicateName(n):
            return Diagnostic("'\(n)' is named twice in one burn", hint: "name each field or block once")
        case let .notBurnable(n, reason):
            return Diagnostic("\(n) cannot be burned with `burn`: \(reason)", hint: nil)
        case let .badValue(n, v, expected):
            return Diagnostic("'\(v)' is not a value for \(n)", hint: "give \(expected)")
        case let .wouldClearBits(n, current, requested):
            return Diagnostic("\(n) is \(current); \(requested) would need bits to go from 1 to 0",
                              hint: "eFuse bits only go from 0 to 1: give a value that keeps every bit already set")
        case let .writeProtected(n, bit):
            return Diagnostic("\(n) is write-protected (WR_DIS bit \(bit) is burned)", hint: "it can never change again")
        case let .readProtected(n, bit):
            return Diagnostic("\(n) is read-protected (RD_DIS bit \(bit)): its bits read as 0 and a burn could damage what is there",
                              hint: "leave it alone")
        case let .codingSchemeForbids(n, block):
            return Diagnostic("\(block) already holds data; \(n) cannot be added to it",
                              hint: "BLOCK1…BLOCK10 are Reed–Solomon coded: each block is programmed once, all its fields in one burn")
        case let .incompatible(fields, reason):
            return Diagnostic("\(fields.joined(separator: " and ")) cannot both be set: \(reason)", hint: "burn only one of them")
        case let .notAKeyBlock(n, chip):
            return Diagnostic("'\(n)' is not a key block of the \(chip)", hint: "use BLOCK_KEY0 … BLOCK_KEY5")
        case let .unknownPurpose(p, chip):
            return Diagnostic("'\(p)' is not a key purpose", hint: "the \(chip) takes: \(EFuseFieldMap.named(chip)?.keyPurposes.map(\.name).joined(separator: ", ") ?? "")")
        case let .purposeNotOnChip(p, chip):
            return Diagnostic("the \(chip) has no key purpose \(p)",
                              hint: chip == "esp32c3" ? "the ESP32-C3 encrypts flash with XTS-AES-128 only: use XTS_AES_128_KEY" : nil)
        case let .purposeNotAllowed(block, purpose, reason):
            return Diagnostic("\(purpose) cannot go into \(block): \(reason)", hint: nil)
        case let .badKeyLength(block, purpose, expected, actual):
            return Diagnostic("the \(purpose) data for \(block) has \(actual) bytes; it must have \(expected)",
                              hint: expected == 64 ? "an XTS_AES_256_KEY file holds 64 raw bytes" : "a key file holds 32 raw bytes")
        case let .keyBlockInUse(n, state):
            return Diagnostic("\(n) is not free: it \(state == "read-protected" ? "is read-protected" : state)",
                              hint: "pick an empty key block (see the summary)")
        case let .purposeInUse(block, current, requested):
            return Diagnostic("\(block) already has purpose \(current); it cannot become \(requested)",
                              hint: "pick a key block whose purpose is USER and that is empty")
        case let .noSecondKeyBlock(first):
            return Diagnostic("XTS_AES_256_KEY needs two free key blocks; none is free after \(first)",
                              hint: "the second half goes into the next empty key block with purpose USER")
        case let .notProtectable(n, what):
            return Diagnostic("\(n) cannot be \(what)", hint: nil)
        case let .mustStayReadable(n, purpose):
            return Diagnostic("\(n) must stay readable: its purpose is \(purpose)",
                              hint: "only secret keys (XTS-AES, HMAC) are read-protected")
        case let .nothingRequested(cmd):
            return Diagnostic("\(cmd): nothing named", hint: nil)
        }
    }
}
