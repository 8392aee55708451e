import ESPCore

/// The OTA data partition (data/ota, 0x2000 bytes): two flash sectors, each starting with an
/// `esp_ota_select_entry_t`. The bootloader picks the valid copy with the higher sequence number
/// and boots OTA slot `(seq − 1) mod (number of OTA app partitions)`.
/// Facts: ../shared/spec/partitions-nvs.md §3, ESP-IDF bootloader_support and app_update.
public enum Otadata {
    public static let size = 0x2000
    public static let sectorSize = 0x1000
    public static let entrySize = 32

    /// `esp_ota_img_states_t`.
    public enum State: UInt32, Sendable, CaseIterable, Codable {
        case new = 0x0
        case pendingVerify = 0x1
        case valid = 0x2
        case invalid = 0x3
        case aborted = 0x4
        case undefined = 0xFFFF_FFFF

        public var name: String {
            switch self {
            case .new: return "new"
            case .pendingVerify: return "pending-verify"
            case .valid: return "valid"
            case .invalid: return "invalid"
            case .aborted: return "aborted"
            case .undefined: return "undefined"
            }
        }

        public init?(name: String) {
            guard let s = State.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
            self = s
        }
    }

    /// CRC the bootloader expects: CRC-32 over the 4 little-endian bytes of `ota_seq`, computed
    /// as `esp_rom_crc32_le(0xFFFFFFFF, …)` (zlib `crc32(data, 0xFFFFFFFF)`).
    public static func crc(sequence: UInt32) -> UInt32 {
        var bytes = [UInt8]()
        bytes.appendLE(sequence)
        return CRC32.update(0xFFFF_FFFF, bytes)
    }

    /// One 32-byte select entry: seq, 20 bytes of label (0xFF, unused), state, CRC.
    public static func entry(sequence: UInt32, state: State = .undefined) -> [UInt8] {
        var b = [UInt8]()
        b.appendLE(sequence)
        b += [UInt8](repeating: 0xFF, count: 20)
        b.appendLE(state.rawValue)
        b.appendLE(crc(sequence: sequence))
        return b
    }

    /// An erased (all 0xFF) otadata partition: the bootloader boots the factory app, or ota_0
    /// when there is none.
    public static func blank() -> [UInt8] { [UInt8](repeating: 0xFF, count: size) }

    /// otadata that selects OTA slot `slot` (0 = ota_0): what `esp_ota_set_boot_partition` writes
    /// to an erased partition — sequence `slot + 1` in the first sector, the second left erased.
    public static func build(bootSlot slot: Int, state: State = .undefined) -> [UInt8] {
        build(sequence: UInt32(clamping: slot + 1), state: state)
    }

    /// otadata with `sequence` in the first sector and the second erased.
    public static func build(sequence: UInt32, state: State = .undefined) -> [UInt8] {
        var out = blank()
        out.replaceSubrange(0..<entrySize, with: entry(sequence: sequence, state: state))
        return out
    }

    /// One decoded copy.
    public struct Copy: Sendable, Equatable, Codable {
        /// Byte offset of the copy within the partition.
        public var offset: Int
        public var sequence: UInt32
        /// Raw `ota_state`; `state` when it is a known value.
        public var stateValue: UInt32
        public var state: State? { State(rawValue: stateValue) }
        public var storedCRC: UInt32
        public var crcValid: Bool { storedCRC == Otadata.crc(sequence: sequence) }
        /// The whole 32-byte entry is 0xFF (erased).
        public var isErased: Bool
        /// Valid as the bootloader sees it: seq ≠ 0xFFFFFFFF, state not invalid/aborted, CRC right.
        public var isValid: Bool {
            sequence != 0xFFFF_FFFF && stateValue != State.invalid.rawValue
                && stateValue != State.aborted.rawValue && crcValid
        }
    }

    public enum Boot: Sendable, Equatable {
        /// Boot OTA slot `n` (ota_n).
        case ota(Int)
        /// Boot the factory app (no valid copy, or no OTA apps).
        case factory
        /// No valid copy and no factory app: the bootloader tries ota_0.
        case firstOTA
        /// Both copies are unusable, but not erased: the bootloader falls back to factory or
        /// scans all partitions.
        case invalidFallback(hasFactory: Bool)
    }

    public struct Parsed: Sendable, Equatable {
        public var copies: [Copy]
        /// Index (0 or 1) of the copy the bootloader uses, if any is valid.
        public var activeCopy: Int?

        /// The slot the bootloader boots (without rollback/anti-rollback processing), given the
        /// number of OTA app partitions and whether there is a factory app.
        public func boot(otaAppCount: Int, hasFactory: Bool) -> Boot {
            let bothInvalidRaw = copies.allSatisfy {
                $0.sequence == 0xFFFF_FFFF || $0.stateValue == State.invalid.rawValue || $0.stateValue == State.aborted.rawValue
            }
            if bothInvalidRaw || otaAppCount <= 0 { return hasFactory ? .factory : .firstOTA }
            guard let a = activeCopy, a < copies.count else { return .invalidFallback(hasFactory: hasFactory) }
            return .ota(Int((copies[a].sequence &- 1) % UInt32(otaAppCount)))
        }
    }

    public enum ParseError: Error, Equatable, Sendable, DiagnosticConvertible {
        case tooShort(length: Int)

        public var diagnostic: Diagnostic {
            switch self {
            case let .tooShort(length):
                return Diagnostic("otadata is \(length) bytes; it needs two copies (at 0x0 and 0x1000), at least 0x1020 bytes",
                                  offset: length, hint: "read the whole 0x2000-byte otadata partition")
            }
        }
    }

    /// Decodes both copies. Any bytes are accepted as long as both entries are present.
    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> Parsed {
        guard bytes.count >= sectorSize + entrySize else { throw .tooShort(length: bytes.count) }
        var copies: [Copy] = []
        for offset in [0, sectorSize] {
            let e = bytes[offset..<(offset + entrySize)]
            let s = e.startIndex
            copies.append(Copy(offset: offset,
                               sequence: e[s..<(s + 4)].loadLE(UInt32.self),
                               stateValue: e[(s + 24)..<(s + 28)].loadLE(UInt32.self),
                               storedCRC: e[(s + 28)..<(s + 32)].loadLE(UInt32.self),
                               isErased: e.allSatisfy { $0 == 0xFF }))
        }
        // bootloader_common_select_otadata: both valid → the larger sequence (copy 0 on a tie).
        var active: Int?
        if copies[0].isValid, copies[1].isValid {
            active = copies[0].sequence >= copies[1].sequence ? 0 : 1
        } else if copies[0].isValid {
            active = 0
        } else if copies[1].isValid {
            active = 1
        }
        return Parsed(copies: copies, activeCopy: active)
    }
}
