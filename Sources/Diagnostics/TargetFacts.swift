import Foundation
import EFuse
import ESPCore

/// The security-relevant eFuse state of a chip, as preflight needs it. Built from an
/// ``EFuseArray`` (a virtual device's `--state`), from an `espefuse summary --format json`
/// document, or field by field in tests.
public struct SecurityFuseFacts: Sendable, Equatable, Codable {
    public var flashCryptCount: UInt8 = 0
    /// BLOCK1 holds a key (non-zero, or read-protected so it cannot be seen).
    public var flashEncryptionKeyPresent = false
    /// BLOCK2 as read (32 bytes; zeros when empty or read-protected).
    public var block2: [UInt8] = [UInt8](repeating: 0, count: 32)
    public var block2ReadProtected = false
    public var block2WriteProtected = false
    /// 0 NONE, 1 3/4, 2 REPEAT, 3 NONE.
    public var codingScheme: UInt8 = 0
    public var absDone0 = false
    public var absDone1 = false
    public var uartDownloadDisabled = false
    public var disableDLEncrypt = false
    public var disableDLDecrypt = false
    public var disableDLCache = false
    /// WR_DIS bit 2 (locks FLASH_CRYPT_CNT and UART_DOWNLOAD_DIS).
    public var flashCryptCountWriteProtected = false
    /// Minor chip revision (WAFER_VERSION_MINOR), when known.
    public var waferVersionMinor: Int?
    /// The key-purpose eFuse state of an ESP32-S3 / ESP32-C3 (nil on ESP32, whose digest is in
    /// BLK2 and key in BLK1). When set, the fields above carry that chip's equivalents
    /// (``init(fieldMap:)``): the crypt counter is SPI_BOOT_CRYPT_CNT, ``absDone1`` is
    /// SECURE_BOOT_EN, ``uartDownloadDisabled`` DIS_DOWNLOAD_MODE and ``disableDLEncrypt``
    /// DIS_DOWNLOAD_MANUAL_ENCRYPT; BLK1/BLK2 stay empty. ``ChipSecurityProfile`` names them.
    public var keyBlocks: KeyBlockFuseFacts?

    public init() {}

    /// Secure Boot V2 is enabled on the chip (ABS_DONE_1 on ESP32, SECURE_BOOT_EN on S3/C3).
    public var secureBootEnabled: Bool { absDone1 }
    /// A Secure Boot V2 key digest is burned (BLK2, or a SECURE_BOOT_DIGESTn key block).
    public var secureBootDigestBurned: Bool {
        if let kb = keyBlocks { return !kb.digestSlots.isEmpty }
        return block2Used
    }

    /// Odd number of FLASH_CRYPT_CNT bits: flash encryption is on.
    public var flashEncryptionEnabled: Bool { flashCryptCount.nonzeroBitCount % 2 == 1 }
    /// BLOCK2 holds a digest (non-zero or protected from reading).
    public var block2Used: Bool { block2ReadProtected || block2.contains { $0 != 0 } }
    public var codingSchemeIsThreeQuarters: Bool { codingScheme == 1 }

    /// From the eFuse cells of a (virtual) ESP32. Values are the physical truth; protection bits
    /// are recorded separately.
    public init(esp32 array: EFuseArray) {
        let layout = EFuseLayout.esp32
        func raw(_ name: String) -> UInt64 {
            guard let f = layout.field(named: name) else { return 0 }
            return array.value(of: f, layout: layout, raw: true).prefix(8).loadLE(UInt64.self)
        }
        func bytes(_ name: String) -> [UInt8] {
            guard let f = layout.field(named: name) else { return [] }
            return array.value(of: f, layout: layout, raw: true)
        }
        flashCryptCount = UInt8(truncatingIfNeeded: raw("FLASH_CRYPT_CNT"))
        let rdDis = raw("RD_DIS")
        let wrDis = raw("WR_DIS")
        flashEncryptionKeyPresent = bytes("BLOCK1").contains { $0 != 0 } || rdDis & 1 != 0
        // What software on the chip would read: zeros when read-protected.
        block2ReadProtected = rdDis & 2 != 0
        block2 = block2ReadProtected ? [UInt8](repeating: 0, count: 32) : bytes("BLOCK2")
        block2WriteProtected = wrDis & (1 << 8) != 0
        codingScheme = UInt8(truncatingIfNeeded: raw("CODING_SCHEME"))
        absDone0 = raw("ABS_DONE_0") != 0
        absDone1 = raw("ABS_DONE_1") != 0
        uartDownloadDisabled = raw("UART_DOWNLOAD_DIS") != 0
        disableDLEncrypt = raw("DISABLE_DL_ENCRYPT") != 0
        disableDLDecrypt = raw("DISABLE_DL_DECRYPT") != 0
        disableDLCache = raw("DISABLE_DL_CACHE") != 0
        flashCryptCountWriteProtected = wrDis & (1 << 2) != 0
        waferVersionMinor = Int(raw("WAFER_VERSION_MINOR"))
    }

    /// Major revision 0…3 as the eFuse bits alone give it (the third bit lives outside the
    /// eFuses, so 3 is reported when both eFuse bits are set).
    public static func esp32MajorRevision(_ array: EFuseArray) -> Int {
        let layout = EFuseLayout.esp32
        func bit(_ name: String) -> Bool {
            guard let f = layout.field(named: name) else { return false }
            return array.integer(f, layout: layout) != 0
        }
        switch (bit("CHIP_VER_REV1"), bit("CHIP_VER_REV2")) {
        case (true, true): return 3
        case (true, false): return 1
        default: return 0
        }
    }

    /// Reads `espefuse summary --format json` output: a JSON object mapping field names to
    /// objects with a `value` (number, boolean or hex string) and optionally `readable`.
    public init(espefuseSummary json: [String: Any]) throws(PreflightInputError) {
        func entry(_ name: String) -> [String: Any]? { json[name] as? [String: Any] }
        func intValue(_ name: String) -> UInt64? {
            guard let v = entry(name)?["value"] else { return nil }
            if let b = v as? Bool { return b ? 1 : 0 }
            if let i = v as? Int { return i >= 0 ? UInt64(i) : nil }
            if let d = v as? Double, d >= 0, d < 1e18 { return UInt64(d) }
            if let s = v as? String {
                let t = s.lowercased()
                if t == "true" { return 1 }
                if t == "false" { return 0 }
                return NumberParsing.integer(t).flatMap { $0 >= 0 ? UInt64($0) : nil }
            }
            return nil
        }
        func bytesValue(_ name: String) -> [UInt8]? {
            guard let s = entry(name)?["value"] as? String else { return nil }
            var t = s.lowercased()
            if t.hasPrefix("0x") { t.removeFirst(2) }
            return [UInt8](hexString: t.replacingOccurrences(of: " ", with: ""))
        }
        guard json["FLASH_CRYPT_CNT"] != nil || json["BLOCK2"] != nil || json["ABS_DONE_1"] != nil else {
            throw .malformed("not an ESP32 `espefuse summary --format json` document (no FLASH_CRYPT_CNT, BLOCK2 or ABS_DONE_1)")
        }
        self.init()
        flashCryptCount = UInt8(truncatingIfNeeded: intValue("FLASH_CRYPT_CNT") ?? 0)
        let key = bytesValue("BLOCK1") ?? []
        let rdDis = intValue("RD_DIS") ?? 0
        let wrDis = intValue("WR_DIS") ?? 0
        flashEncryptionKeyPresent = key.contains { $0 != 0 } || rdDis & 1 != 0
            || (entry("BLOCK1")?["readable"] as? Bool) == false
        block2ReadProtected = rdDis & 2 != 0 || (entry("BLOCK2")?["readable"] as? Bool) == false
        if let b2 = bytesValue("BLOCK2"), b2.count == 32 { block2 = b2 }
        block2WriteProtected = wrDis & (1 << 8) != 0 || (entry("BLOCK2")?["writeable"] as? Bool) == false
        if let text = entry("CODING_SCHEME")?["value"] as? String, NumberParsing.integer(text) == nil {
            // espefuse prints the scheme by name: "NONE (BLK1-3 len=256 bits)", "3/4 (…)", "REPEAT (…)".
            let t = text.uppercased()
            codingScheme = t.hasPrefix("3/4") ? 1 : t.hasPrefix("REPEAT") ? 2 : 0
        } else {
            codingScheme = UInt8(truncatingIfNeeded: intValue("CODING_SCHEME") ?? 0)
        }
        absDone0 = (intValue("ABS_DONE_0") ?? 0) != 0
        absDone1 = (intValue("ABS_DONE_1") ?? 0) != 0
        uartDownloadDisabled = (intValue("UART_DOWNLOAD_DIS") ?? 0) != 0
        disableDLEncrypt = (intValue("DISABLE_DL_ENCRYPT") ?? 0) != 0
        disableDLDecrypt = (intValue("DISABLE_DL_DECRYPT") ?? 0) != 0
        disableDLCache = (intValue("DISABLE_DL_CACHE") ?? 0) != 0
        flashCryptCountWriteProtected = wrDis & (1 << 2) != 0
        waferVersionMinor = intValue("WAFER_VERSION_MINOR").map { Int($0 & 3) }
    }
}

/// What preflight knows about the chip the plan will be written to. Every field may be unknown;
/// rules that need an unknown fact stay silent.
public struct TargetFacts: Sendable {
    public var chip: ChipSpec
    /// Real flash size in bytes.
    public var flashSize: Int?
    /// Full revision, major·100 + minor (ESP32 v3.0 = 300).
    public var chipRevision: Int?
    public var efuses: SecurityFuseFacts?
    /// Where the facts came from (`flags`, `state DIR`, `port …`), for reports.
    public var source: String

    public init(chip: ChipSpec, flashSize: Int? = nil, chipRevision: Int? = nil, efuses: SecurityFuseFacts? = nil,
                source: String = "flags") {
        self.chip = chip
        self.flashSize = flashSize
        self.chipRevision = chipRevision
        self.efuses = efuses
        self.source = source
    }

    /// `3`, `3.0`, `v3.1`, `300` → full revision (major·100 + minor).
    public static func parseRevision(_ text: String) -> Int? {
        var t = text.lowercased()
        if t.hasPrefix("v") { t.removeFirst() }
        let parts = t.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]), major >= 0, (0..<100).contains(minor) {
            return major * 100 + minor
        }
        guard parts.count == 1, let n = Int(parts[0]), n >= 0 else { return nil }
        return n < 100 ? n * 100 : n
    }
}

/// Problems with preflight's inputs (build directory, eFuse summary, sdkconfig).
public enum PreflightInputError: Error, Equatable, Sendable, DiagnosticConvertible {
    case malformed(String)
    case missing(String, hint: String)

    public var diagnostic: Diagnostic {
        switch self {
        case let .malformed(why):
            return Diagnostic(why, hint: "check the file; preflight reads the files an ESP-IDF build writes")
        case let .missing(what, hint):
            return Diagnostic(what, hint: hint)
        }
    }
}

/// Formats a revision as `v3.0`.
func revisionText(_ full: Int) -> String { "v\(full / 100).\(full % 100)" }
