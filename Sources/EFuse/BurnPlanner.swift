import ESPCore

/// One thing to burn, as a user asks for it.
public enum EFuseBurnRequest: Sendable, Equatable {
    /// `NAME=VALUE`: the field's new total value (decimal or 0x hex; a MAC for CUSTOM_MAC; 64 hex
    /// digits in block order for BLOCK3). Bits can only be added.
    case field(name: String, value: String)
    /// A Secure Boot V2 public-key digest (32 bytes) into BLOCK2, natural byte order;
    /// `writeProtect` also burns WR_DIS bit 8.
    case secureBootDigest([UInt8], writeProtect: Bool)
    /// A flash encryption key file (32 bytes) into BLOCK1, byte-reversed as the chip and espsecure
    /// expect; `protect` also burns RD_DIS bit 0 and WR_DIS bit 7.
    case flashEncryptionKey([UInt8], protect: Bool)
    /// Burn the WR_DIS bit of a field or block.
    case writeProtect(String)
    /// Burn the RD_DIS bit of a field or block.
    case readProtect(String)
}

/// A field-level change in a plan. Key material is never kept in printable form: `secret`
/// changes describe themselves by length only.
public struct EFusePlannedChange: Sendable, Equatable {
    public var name: String
    public var block: Int
    public var secret: Bool
    public var before: String
    public var after: String
    /// Bits this change sets, per word of `block`.
    public var mask: [UInt32]
    public var bitCount: Int { mask.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// `BLOCK0 word 6 bit 6` style list of the bits (empty for secret changes).
    public var bitList: [String] {
        guard !secret else { return [] }
        var out: [String] = []
        for (w, m) in mask.enumerated() {
            for b in 0..<32 where m & (1 << UInt32(b)) != 0 { out.append("BLOCK\(block) word \(w) bit \(b)") }
        }
        return out
    }
}

public struct EFuseProtectionChange: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case write, read }
    public var kind: Kind
    /// WR_DIS bit (0…15) or RD_DIS bit (0…3).
    public var bit: Int
    /// Every field this bit locks or hides (the bit is shared).
    public var fields: [String]

    public init(kind: Kind, bit: Int, fields: [String]) {
        self.kind = kind
        self.bit = bit
        self.fields = fields
    }
}

/// A validated burn: what changes, which protections are added, in which program cycles.
public struct EFuseBurnPlan: Sendable, Equatable {
    public var before: EFuseSnapshot
    public var changes: [EFusePlannedChange]
    public var protections: [EFuseProtectionChange]
    /// Consequences worth reading before saying yes.
    public var notes: [String]
    /// Program cycles in order: block and the bits to set (BLOCK3 → BLOCK1, then BLOCK0, then the
    /// BLOCK0 bits that lock or cut things off: WR_DIS, RD_DIS, FLASH_CRYPT_CNT, ABS_DONE_1,
    /// UART_DOWNLOAD_DIS).
    public var cycles: [(block: Int, words: [UInt32])] {
        get { cycleBlocks.enumerated().map { ($0.element, cycleWords[$0.offset]) } }
    }
    var cycleBlocks: [Int] = []
    var cycleWords: [[UInt32]] = []

    public var isEmpty: Bool { cycleBlocks.isEmpty }
    /// Number of fuse bits that go from 0 to 1.
    public var bitCount: Int { cycleWords.reduce(0) { $0 + $1.reduce(0) { $0 + $1.nonzeroBitCount } } }

    /// The plan for people: never prints key material.
    public var lines: [String] {
        var out: [String] = []
        if isEmpty {
            out.append("nothing to burn: every requested bit is already set")
        }
        for c in changes {
            out.append("  \(c.name): \(c.before) -> \(c.after)  (\(c.bitCount) bit\(c.bitCount == 1 ? "" : "s") to burn)")
            if !c.secret {
                let bits = c.bitList
                if bits.count <= 16 { for b in bits { out.append("      \(b)") } } else {
                    out.append("      \(bits.count) bits in BLOCK\(c.block)")
                }
            }
        }
        for p in protections {
            let what = p.kind == .write ? "write-protect: WR_DIS bit \(p.bit)" : "read-protect: RD_DIS bit \(p.bit)"
            let verb = p.kind == .write ? "locks" : "hides (reads as 0)"
            out.append("  \(what) \(verb) \(p.fields.joined(separator: ", "))")
        }
        if !isEmpty {
            out.append("  program cycles: " + cycleBlocks.map { "BLOCK\($0)" }.joined(separator: ", ")
                       + " (\(bitCount) fuse bits in total)")
        }
        for n in notes { out.append("  note: " + n) }
        return out
    }
}

/// Why a burn request was refused (before anything was sent to the chip).
public enum EFusePlanError: Error, Equatable, Sendable {
    case unknownField(String)
    case badValue(field: String, text: String, reason: String)
    case wouldClearBits(field: String, current: String, requested: String)
    case writeProtected(field: String, bit: Int)
    case readProtected(field: String)
    case keyBlockNotEmpty(block: Int)
    case factoryField(String)
    case useProtectCommand(String)
    case duplicate(String)
    case revisionTooLow(revision: Int)
    case codingSchemeNotNone(raw: Int)
    case readProtectBlock2
    case cannotWriteProtect(String)
    case cannotReadProtect(String)
    case protectionLocked(String)
    case badKeyLength(what: String, length: Int)
    case encryptionWithoutKey
    case secureBootWithoutDigest
    case secureBootV1
    case codingSchemeHidden
}

extension EFusePlanError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case .unknownField(let n):
            let known = EFuseLayout.esp32.fields.map(\.name)
            let close = known.filter { $0.contains(n.uppercased()) || n.uppercased().contains($0) }.prefix(4)
            return Diagnostic("no eFuse field named '\(n)' on the ESP32",
                              hint: close.isEmpty ? "see `espforge efuse summary` for the field names"
                                  : "did you mean \(close.joined(separator: ", "))?")
        case let .badValue(field, text, reason):
            return Diagnostic("'\(text)' is not a valid value for \(field): \(reason)",
                              hint: "write NAME=VALUE with VALUE in decimal or 0x hex, e.g. FLASH_CRYPT_CONFIG=0xF")
        case let .wouldClearBits(field, current, requested):
            return Diagnostic("\(field) is \(current) on the chip; \(requested) would need bits to go from 1 to 0, which eFuses cannot do",
                              hint: "the new value must keep every bit that is already set (e.g. \(field)=\(current) or a value with more bits)")
        case let .writeProtected(field, bit):
            return Diagnostic("\(field) is write-protected (WR_DIS bit \(bit) is burned); it can never change again",
                              hint: "nothing can be burned into it; check `espforge efuse summary`")
        case .readProtected(let field):
            return Diagnostic("\(field) is read-protected: it reads as zero, so its content is unknown and cannot be checked",
                              hint: "a read-protected field cannot be burned safely; leave it as it is")
        case .keyBlockNotEmpty(let b):
            return Diagnostic("BLOCK\(b) is not empty: a key or digest is already burned there",
                              hint: "burning more bits would corrupt it; use a chip whose BLOCK\(b) is blank")
        case .factoryField(let n):
            return Diagnostic("\(n) is programmed in the factory and cannot be burned",
                              hint: n.hasPrefix("MAC") ? "to set another MAC use CUSTOM_MAC=aa:bb:cc:dd:ee:ff (BLOCK3)" : nil)
        case .useProtectCommand(let n):
            return Diagnostic("\(n) is not burned with NAME=VALUE",
                              hint: n == "WR_DIS" ? "use `espforge efuse write-protect NAME`" : "use `espforge efuse read-protect NAME`")
        case .duplicate(let n):
            return Diagnostic("\(n) is requested more than once", hint: "give each field once")
        case .revisionTooLow(let rev):
            return Diagnostic("Secure Boot V2 needs chip revision v3.0 or later; this chip is v\(rev / 100).\(rev % 100)",
                              hint: "ESP32 before ECO3 only has Secure Boot V1, which espforge does not burn")
        case .codingSchemeNotNone(let raw):
            return Diagnostic("CODING_SCHEME is \(raw == 1 ? "3/4" : "REPEAT") (\(raw)); keys and digests need coding scheme NONE (256-bit blocks)",
                              hint: "this chip cannot hold a 256-bit key or an SBv2 digest; espforge does not burn 3/4-coded blocks")
        case .readProtectBlock2:
            return Diagnostic("refusing to read-protect BLOCK2: the ROM and the bootloader must read the Secure Boot V2 key digest from it",
                              hint: "a read-protected BLOCK2 reads as zeros, every signature check fails and the chip never boots again; write-protect it instead")
        case .cannotWriteProtect(let n):
            return Diagnostic("\(n) has no write-protect bit", hint: "only fields listed with a WR_DIS bit in the summary can be write-protected")
        case .cannotReadProtect(let n):
            return Diagnostic("\(n) has no read-protect bit", hint: "read protection exists for BLOCK1, BLOCK2, BLOCK3 and the RD_DIS bit 3 group")
        case .protectionLocked(let n):
            return Diagnostic("\(n) itself is write-protected, so no further \(n == "WR_DIS" ? "write" : "read") protection can be added",
                              hint: "the protection state of this chip is final")
        case let .badKeyLength(what, length):
            return Diagnostic("\(what) has \(length) bytes; it must be 32 bytes (256 bits)",
                              hint: "generate one with `espforge flash-encryption keygen` / `espforge secure-boot digest`")
        case .encryptionWithoutKey:
            return Diagnostic("this FLASH_CRYPT_CNT turns flash encryption on, but BLOCK1 holds no key",
                              hint: "burn the key first: `espforge efuse burn-key flash_encryption KEY.bin`")
        case .secureBootWithoutDigest:
            return Diagnostic("ABS_DONE_1 turns Secure Boot V2 on, but BLOCK2 holds no key digest (or is unreadable)",
                              hint: "burn the digest first: `espforge efuse burn-key-digest --key KEY.pem`")
        case .codingSchemeHidden:
            return Diagnostic("CODING_SCHEME is read-protected (RD_DIS bit 3), so it is unknown whether key blocks hold 256 bits",
                              hint: "espforge only burns key blocks when the coding scheme is known to be NONE")
        case .secureBootV1:
            return Diagnostic("ABS_DONE_0 enables Secure Boot V1, which espforge does not support",
                              hint: "for Secure Boot V2 burn the key digest and ABS_DONE_1")
        }
    }
}

/// Turns requests into a validated plan against what the chip shows now. Pure.
public enum EFuseBurnPlanner {
    static let lateFields: Set<String> = ["WR_DIS", "RD_DIS", "FLASH_CRYPT_CNT", "ABS_DONE_1", "UART_DOWNLOAD_DIS"]

    public static func plan(_ requests: [EFuseBurnRequest], snapshot s: EFuseSnapshot,
                            layout: EFuseLayout = .esp32) throws(EFusePlanError) -> EFuseBurnPlan {
        var pending = layout.blockWordCounts.map { [UInt32](repeating: 0, count: $0) }
        var changes: [EFusePlannedChange] = []
        var notes: [String] = []
        var seen: Set<String> = []
        var wrBits: Set<Int> = [], rdBits: Set<Int> = []
        var keyPlanned = false, digestPlanned = false

        func fieldNamed(_ n: String) throws(EFusePlanError) -> EFuseField {
            guard let f = layout.field(named: n) else { throw .unknownField(n) }
            return f
        }
        func noteOnce(_ n: String) { if !notes.contains(n) { notes.append(n) } }
        func addChange(_ f: EFuseField, newBytes: [UInt8], secret: Bool, label: String? = nil,
                       after: String) throws(EFusePlanError) {
            guard seen.insert(f.name).inserted else { throw .duplicate(f.name) }
            guard s.isWriteable(f, layout: layout) else { throw .writeProtected(field: f.name, bit: s.writeProtectBit(of: f, layout: layout) ?? -1) }
            guard s.isReadable(f, layout: layout) else { throw .readProtected(field: f.name) }
            let current = s.bytes(of: f)
            for (a, b) in zip(current, newBytes) where a & ~b != 0 {
                throw .wouldClearBits(field: f.name, current: display(f, current), requested: secret ? "the requested value" : display(f, newBytes))
            }
            var mask = [UInt32](repeating: 0, count: layout.blockWordCounts[f.block])
            for i in 0..<f.width where i / 8 < newBytes.count && newBytes[i / 8] & (1 << UInt8(i % 8)) != 0 {
                let abs = f.startBit + i
                mask[abs / 32] |= 1 << UInt32(abs % 32)
            }
            for w in mask.indices {
                mask[w] &= ~s.word(f.block, w)
                pending[f.block][w] |= mask[w]
            }
            guard mask.contains(where: { $0 != 0 }) else { return }
            changes.append(EFusePlannedChange(name: label ?? f.name, block: f.block, secret: secret,
                                              before: secret ? "empty" : display(f, current), after: after, mask: mask))
        }
        func protect(_ kind: EFuseProtectionChange.Kind, name: String) throws(EFusePlanError) {
            let f = try fieldNamed(name)
            if kind == .write {
                guard let bit = s.writeProtectBit(of: f, layout: layout) else { throw .cannotWriteProtect(f.name) }
                if s.isWriteProtected(bit: bit) { noteOnce("\(f.name) is already write-protected (WR_DIS bit \(bit))"); return }
                guard !s.isWriteProtected(bit: 1) else { throw .protectionLocked("WR_DIS") }
                wrBits.insert(bit)
            } else {
                guard let bit = s.readProtectBit(of: f, layout: layout) else { throw .cannotReadProtect(f.name) }
                if f.block == 2 || bit == 1 { throw .readProtectBlock2 }
                if s.isReadProtected(bit: bit) { noteOnce("\(f.name) is already read-protected (RD_DIS bit \(bit))"); return }
                guard !s.isWriteProtected(bit: 0) else { throw .protectionLocked("RD_DIS") }
                rdBits.insert(bit)
            }
        }
        func requireKeyBlockUsable(_ block: Int) throws(EFusePlanError) {
            guard !s.isReadProtected(bit: 3) else { throw .codingSchemeHidden }
            guard s.codingSchemeIsNone else { throw .codingSchemeNotNone(raw: s.codingSchemeRaw) }
            let f = try fieldNamed("BLOCK\(block)")
            guard s.isWriteable(f, layout: layout) else { throw .writeProtected(field: f.name, bit: layout.blockWriteProtectBits[block] ?? -1) }
            guard s.isReadable(f, layout: layout) else { throw .readProtected(field: f.name) }
            guard s.blockBytes(block).allSatisfy({ $0 == 0 }) else { throw .keyBlockNotEmpty(block: block) }
        }

        for r in requests {
            switch r {
            case let .field(name, text):
                let f = try fieldNamed(name)
                if f.name == "MAC" || f.name == "MAC_CRC" || f.name.hasPrefix("CHIP_") || f.name == "WAFER_VERSION_MINOR"
                    || f.name == "CLK8M_FREQ" || f.name == "ADC_VREF" { throw .factoryField(f.name) }
                if f.name == "WR_DIS" || f.name == "RD_DIS" { throw .useProtectCommand(f.name) }
                if f.name == "ABS_DONE_0" { throw .secureBootV1 }
                if f.name == "CUSTOM_MAC" {
                    let mac: [UInt8]
                    do { mac = try MACAddress.parse(text) } catch { throw .badValue(field: f.name, text: text, reason: "expected six hex bytes aa:bb:cc:dd:ee:ff") }
                    guard mac[0] & 1 == 0 else { throw .badValue(field: f.name, text: text, reason: "a custom MAC must be unicast (first byte even)") }
                    guard s.codingSchemeIsNone else { throw .codingSchemeNotNone(raw: s.codingSchemeRaw) }
                    try addChange(f, newBytes: mac, secret: false, after: MACAddress.format(mac))
                    let crc = try fieldNamed("CUSTOM_MAC_CRC"), ver = try fieldNamed("MAC_VERSION")
                    if !seen.contains(crc.name) {
                        let c = MACAddress.crc8(mac)
                        try addChange(crc, newBytes: [c], secret: false, after: NumberParsing.hex(c, width: 2))
                    }
                    if !seen.contains(ver.name), s.integer(ver) == 0 {
                        try addChange(ver, newBytes: [1], secret: false, after: "0x1")
                    }
                    continue
                }
                if f.width > 64 {
                    guard !text.lowercased().hasPrefix("0x"), let bytes = [UInt8](hexString: text) else {
                        throw .badValue(field: f.name, text: text, reason: "expected \(f.width / 8) bytes as hex digits in block order (byte 0 first), without 0x")
                    }
                    guard bytes.count == f.width / 8 else {
                        throw .badValue(field: f.name, text: text, reason: "\(bytes.count) bytes given, the block holds \(f.width / 8)")
                    }
                    if f.block == 1 || f.block == 2 {
                        throw .badValue(field: f.name, text: text, reason: "key blocks are burned with `burn-key` / `burn-key-digest` (byte order and protection matter)")
                    }
                    try requireKeyBlockUsable(f.block)
                    try addChange(f, newBytes: bytes, secret: false, after: bytes.hexString)
                    continue
                }
                guard let v = NumberParsing.integer(text), v >= 0 else {
                    throw .badValue(field: f.name, text: text, reason: "not a non-negative integer")
                }
                guard f.width >= 63 || UInt64(v) < (UInt64(1) << UInt64(f.width)) else {
                    throw .badValue(field: f.name, text: text, reason: "does not fit in \(f.width) bit\(f.width == 1 ? "" : "s") (maximum \(NumberParsing.hex((UInt64(1) << UInt64(f.width)) - 1, width: 1)))")
                }
                if f.block == 3, !s.codingSchemeIsNone { throw .codingSchemeNotNone(raw: s.codingSchemeRaw) }
                var bytes: [UInt8] = []
                for i in 0..<((f.width + 7) / 8) { bytes.append(UInt8(truncatingIfNeeded: UInt64(v) >> UInt64(8 * i))) }
                try addChange(f, newBytes: bytes, secret: false, after: NumberParsing.hex(UInt64(v), width: 1))
                switch f.name {
                case "FLASH_CRYPT_CNT":
                    let before = s.flashCryptCount.nonzeroBitCount % 2 == 1, after = v.nonzeroBitCount % 2 == 1
                    if after && !before {
                        let keyPresent = s.isReadProtected(bit: 0) || s.blockBytes(1).contains { $0 != 0 } || keyPlanned
                            || requests.contains { if case .flashEncryptionKey = $0 { return true } else { return false } }
                        guard keyPresent else { throw .encryptionWithoutKey }
                        notes.append("FLASH_CRYPT_CNT \(s.flashCryptCount) -> \(v): flash encryption turns ON (odd number of bits); the chip decrypts every flash read with the BLOCK1 key from the next boot")
                    } else if before && !after {
                        notes.append("FLASH_CRYPT_CNT \(s.flashCryptCount) -> \(v): flash encryption turns OFF (even number of bits); encrypted flash contents become unreadable to the CPU")
                    } else {
                        notes.append("FLASH_CRYPT_CNT \(s.flashCryptCount) -> \(v): flash encryption stays \(after ? "on" : "off")")
                    }
                    if v == 0x7F { notes.append("FLASH_CRYPT_CNT = 0x7F uses all 7 bits: the encryption state can never change again") }
                case "ABS_DONE_1":
                    guard s.majorRevision >= 3 else { throw .revisionTooLow(revision: s.revision) }
                    let digest = !s.isReadProtected(bit: 1) && (s.blockBytes(2).contains { $0 != 0 } || digestPlanned
                        || requests.contains { if case .secureBootDigest = $0 { return true } else { return false } })
                    guard digest else { throw .secureBootWithoutDigest }
                    notes.append("ABS_DONE_1: from the next boot the ROM only runs a bootloader signed by the key whose digest is in BLOCK2")
                case "UART_DOWNLOAD_DIS":
                    if s.majorRevision >= 3 {
                        notes.append("UART_DOWNLOAD_DIS: after the next reset the chip never enters UART download mode again; espforge, esptool and espefuse can no longer talk to it")
                    }
                case "JTAG_DISABLE": notes.append("JTAG_DISABLE: JTAG debugging is disabled for good")
                default: break
                }
            case let .secureBootDigest(digest, writeProtect):
                guard digest.count == 32 else { throw .badKeyLength(what: "the key digest", length: digest.count) }
                guard s.majorRevision >= 3 else { throw .revisionTooLow(revision: s.revision) }
                try requireKeyBlockUsable(2)
                try addChange(try fieldNamed("BLOCK2"), newBytes: digest, secret: false,
                              label: "BLOCK2 (Secure Boot V2 key digest)", after: digest.hexString)
                digestPlanned = true
                if writeProtect { try protect(.write, name: "BLOCK2") } else {
                    notes.append("BLOCK2 is left writable (--no-write-protect): more bits could still be burned into the digest")
                }
            case let .flashEncryptionKey(key, protectKey):
                guard key.count == 32 else { throw .badKeyLength(what: "the flash encryption key", length: key.count) }
                try requireKeyBlockUsable(1)
                try addChange(try fieldNamed("BLOCK1"), newBytes: Array(key.reversed()), secret: true,
                              label: "BLOCK1 (flash encryption key, byte-reversed)", after: "32-byte key (not shown)")
                keyPlanned = true
                if protectKey {
                    try protect(.read, name: "BLOCK1")
                    try protect(.write, name: "BLOCK1")
                } else {
                    notes.append("the key is left readable and writable (--no-protect-key): software on the chip can read it")
                }
                if s.isReadable(try fieldNamed("FLASH_CRYPT_CONFIG"), layout: layout), s.integer(named: "FLASH_CRYPT_CONFIG") == 0,
                   !requests.contains(.field(name: "FLASH_CRYPT_CONFIG", value: "0xF")) {
                    notes.append("FLASH_CRYPT_CONFIG is 0 (no key tweak); ESP-IDF uses 0xF: `espforge efuse burn FLASH_CRYPT_CONFIG=0xF`")
                }
            case .writeProtect(let n):
                try protect(.write, name: n)
            case .readProtect(let n):
                try protect(.read, name: n)
                if layout.field(named: n)?.readProtect == 3 {
                    noteOnce("RD_DIS bit 3 hides FLASH_CRYPT_CONFIG, CODING_SCHEME, KEY_STATUS and BLK3_PART_RESERVE (they read as 0 afterwards)")
                }
            }
        }

        // Protection bits, as changes of WR_DIS / RD_DIS.
        var protections: [EFuseProtectionChange] = []
        for bit in wrBits.sorted() {
            let names = layout.fields.filter { s.writeProtectBit(of: $0, layout: layout) == bit }.map(\.name)
            protections.append(EFuseProtectionChange(kind: .write, bit: bit, fields: names))
            pending[0][0] |= 1 << UInt32(bit)
        }
        for bit in rdBits.sorted() {
            let names = layout.fields.filter { s.readProtectBit(of: $0, layout: layout) == bit }.map(\.name)
            protections.append(EFuseProtectionChange(kind: .read, bit: bit, fields: names))
            pending[0][0] |= 1 << UInt32(16 + bit)
        }

        var plan = EFuseBurnPlan(before: s, changes: changes, protections: protections, notes: notes)
        var lateMask = [UInt32](repeating: 0, count: layout.blockWordCounts[0])
        for f in layout.fields where lateFields.contains(f.name) {
            for (i, m) in layout.mask(of: f).enumerated() { lateMask[i] |= m }
        }
        for b in stride(from: layout.blockCount - 1, through: 1, by: -1) where pending[b].contains(where: { $0 != 0 }) {
            plan.cycleBlocks.append(b)
            plan.cycleWords.append(pending[b])
        }
        let early = zip(pending[0], lateMask).map { $0 & ~$1 }, late = zip(pending[0], lateMask).map { $0 & $1 }
        for words in [early, late] where words.contains(where: { $0 != 0 }) {
            plan.cycleBlocks.append(0)
            plan.cycleWords.append(words)
        }
        return plan
    }

    static func display(_ f: EFuseField, _ bytes: [UInt8]) -> String {
        if f.width > 64 { return bytes.allSatisfy { $0 == 0 } ? "empty" : bytes.hexString }
        if f.name == "CUSTOM_MAC" { return MACAddress.format(bytes) }
        var v: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { v |= UInt64(b) << UInt64(8 * i) }
        return NumberParsing.hex(v, width: 1)
    }
}
