import EFuse
import ESPCore

/// What the host learns about a chip before it writes anything: identity, flash, and the
/// security state from the eFuses. Codable for `chip info --json`.
public struct ChipInfo: Sendable, Codable, Equatable {
    public var chip: String
    public var description: String
    public var revision: String
    public var majorRevision: Int
    public var minorRevision: Int
    public var mac: String
    public var crystalMHz: Int
    public var features: [String]
    public var flashID: String
    public var flashManufacturer: String
    public var flashDevice: String
    public var flashSize: Int
    public var flashSizeName: String
    public var security: SecurityState
    public var loader: String
    /// ESP32-S3/C3: the eFuses decoded through the chip's field map (key blocks, purposes, digest
    /// slots, revocations); `security` then carries the closest ESP32-shaped view. nil on an ESP32.
    public var fieldMapSummary: EFuseFieldMapSummary? = nil
}

public struct SecurityState: Sendable, Codable, Equatable {
    /// Secure Boot V2 public key digest present in BLOCK2 (non-zero).
    public var secureBootDigestBurned: Bool
    /// The BLOCK2 digest (hex), when readable and non-zero.
    public var secureBootDigest: String?
    public var absDone0: Bool
    public var absDone1: Bool
    public var flashCryptCnt: Int
    public var flashEncryptionEnabled: Bool
    public var flashCryptConfig: Int
    public var disableDLEncrypt: Bool
    public var disableDLDecrypt: Bool
    public var disableDLCache: Bool
    public var uartDownloadDisabled: Bool
    public var jtagDisabled: Bool
    public var consoleDebugDisabled: Bool
    public var codingScheme: String
    public var writeProtect: Int
    public var readProtect: Int
    /// Names of the fields that WR_DIS / RD_DIS currently lock or hide.
    public var writeProtected: [String]
    public var readProtected: [String]
}

/// The facts the safety planner needs, read once per device.
public struct ChipFacts: Sendable {
    public var spec: ChipSpec
    public var flashSize: Int
    public var efuses: EFuseArray
    public var layout: EFuseLayout

    public init(spec: ChipSpec, flashSize: Int, efuses: EFuseArray, layout: EFuseLayout = .esp32) {
        self.spec = spec
        self.flashSize = flashSize
        self.efuses = efuses
        self.layout = layout
    }

    func field(_ name: String) -> UInt64 {
        guard let f = layout.field(named: name) else { return 0 }
        return efuses.integer(f, layout: layout)
    }

    public var flashCryptCnt: Int { Int(field("FLASH_CRYPT_CNT")) }
    /// Flash encryption is on when an odd number of FLASH_CRYPT_CNT bits is set.
    public var encryptionEnabled: Bool { flashCryptCnt.nonzeroBitCount % 2 == 1 }
    public var secureBootV2Enabled: Bool { field("ABS_DONE_1") != 0 }
    public var downloadEncryptDisabled: Bool { field("DISABLE_DL_ENCRYPT") != 0 }
    /// BLOCK2 as bytes (word 0 little-endian first): the Secure Boot V2 key digest. nil = all zero.
    public var secureBootDigest: [UInt8]? {
        guard let f = layout.field(named: "BLOCK2") else { return nil }
        let v = efuses.value(of: f, layout: layout)
        return v.allSatisfy { $0 == 0 } ? nil : v
    }
    public var block2ReadProtected: Bool { efuses.isReadProtected(bit: 1) }

    /// Decodes the chip description from the eFuses and APB_CTRL_DATE, as esptool does.
    public func info(apbCtrlDate: UInt32, uartClkDiv: UInt32, baud: Int, flashID: UInt32, loader: String) -> ChipInfo {
        let w3 = efuses.rawWordReadable(0, 3, layout), w5 = efuses.rawWordReadable(0, 5, layout)
        let pkg = Int((w3 >> 9) & 7) + Int(((w3 >> 2) & 1) << 3)
        let bits = ((apbCtrlDate >> 31) & 1, (w5 >> 20) & 1, (w3 >> 15) & 1)
        let major: Int
        switch bits {
        case (1, 1, 1): major = 3
        case (0, 1, 1): major = 2
        case (0, 0, 1): major = 1
        default: major = 0
        }
        let minor = Int((w5 >> 24) & 3)
        let pkgNames = [0: "ESP32-D0WDQ6", 1: "ESP32-D0WD", 2: "ESP32-D2WD", 4: "ESP32-U4WDH", 5: "ESP32-PICO-D4", 6: "ESP32-PICO-V3-02", 7: "ESP32-D0WDR2-V3"]
        var desc = pkgNames[pkg] ?? "unknown ESP32"
        if major == 3, pkg == 0 || pkg == 1 { desc += "-V3" }
        var features = ["Wi-Fi"]
        if w3 & 2 == 0 { features.append("BT") }
        features.append(w3 & 1 != 0 ? "Single Core" : "Dual Core")
        if w3 & (1 << 13) != 0 { features.append(w3 & (1 << 12) != 0 ? "160MHz" : "240MHz") }
        if (efuses.rawWordReadable(0, 4, layout) >> 8) & 0x1F != 0 { features.append("Vref calibration in eFuse") }
        if w3 & (1 << 14) != 0 { features.append("BLK3 partially reserved") }
        let coding = Int(field("CODING_SCHEME"))
        let codingName = ["None", "3/4", "Repeat (UNSUPPORTED)", "None"][coding & 3]
        features.append("Coding Scheme \(codingName)")
        let xtal = Double(baud) * Double(uartClkDiv & 0xFFFFF) / 1e6
        let norm = [26, 40, 48].min { abs(Double($0) - xtal) < abs(Double($1) - xtal) } ?? 40
        let macBytes = efuses.esp32MAC()
        let sizeCode = Int((flashID >> 16) & 0xFF)
        let size = (0x12...0x1C).contains(sizeCode) ? 1 << sizeCode : flashSize
        var wp: [String] = [], rp: [String] = []
        for f in layout.fields {
            if let b = f.writeProtect, efuses.isWriteProtected(bit: b) { wp.append(f.name) }
            if let b = f.readProtect, efuses.isReadProtected(bit: b) { rp.append(f.name) }
        }
        let sec = SecurityState(
            secureBootDigestBurned: secureBootDigest != nil, secureBootDigest: secureBootDigest?.hexString,
            absDone0: field("ABS_DONE_0") != 0, absDone1: secureBootV2Enabled,
            flashCryptCnt: flashCryptCnt, flashEncryptionEnabled: encryptionEnabled,
            flashCryptConfig: Int(field("FLASH_CRYPT_CONFIG")),
            disableDLEncrypt: downloadEncryptDisabled, disableDLDecrypt: field("DISABLE_DL_DECRYPT") != 0,
            disableDLCache: field("DISABLE_DL_CACHE") != 0, uartDownloadDisabled: field("UART_DOWNLOAD_DIS") != 0,
            jtagDisabled: field("JTAG_DISABLE") != 0, consoleDebugDisabled: field("CONSOLE_DEBUG_DISABLE") != 0,
            codingScheme: codingName, writeProtect: Int(field("WR_DIS")), readProtect: Int(field("RD_DIS")),
            writeProtected: wp, readProtected: rp)
        return ChipInfo(
            chip: spec.displayName, description: desc, revision: "v\(major).\(minor)", majorRevision: major,
            minorRevision: minor, mac: MACAddress.format(macBytes), crystalMHz: norm, features: features,
            flashID: NumberParsing.hex(flashID, width: 6),
            flashManufacturer: String(format2(flashID & 0xFF)),
            flashDevice: String(format4(((flashID >> 8) & 0xFF) << 8 | ((flashID >> 16) & 0xFF))),
            flashSize: size, flashSizeName: size >= 1 << 20 ? "\(size >> 20)MB" : "\(size >> 10)KB",
            security: sec, loader: loader)
    }
}

private func format2(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return s.count < 2 ? "0" + s : s
}

private func format4(_ v: UInt32) -> String {
    var s = String(v, radix: 16)
    while s.count < 4 { s = "0" + s }
    return s
}

extension EFuseArray {
    /// A word as the read registers show it (read protection applied).
    func rawWordReadable(_ block: Int, _ word: Int, _ layout: EFuseLayout) -> UInt32 {
        let words = readable(block: block, layout: layout)
        return word < words.count ? words[word] : 0
    }
}

/// Reads the identity and eFuses of a chip through its loader.
public enum ChipProbe {
    public static let romMagicAddress: UInt32 = 0x4000_1000

    /// The chip whose ROM magic matches.
    public static func detect(_ client: LoaderClient) throws -> ChipSpec {
        let magic: UInt32
        do { magic = try client.readRegister(romMagicAddress) } catch {
            // An S3/C3 in Secure Download Mode refuses READ_REG but still answers GET_SECURITY_INFO.
            if let r = try? client.command(.getSecurityInfo, outputLength: 20), r.data.count >= 20,
               Array(r.data[0..<4]).loadLE(UInt32.self) & (1 << 2) != 0 {
                throw FlasherError.gaveUp(port: client.port.name, why: "the chip is in Secure Download Mode "
                                          + "(ENABLE_SECURITY_DOWNLOAD): it refuses register reads, so its eFuses cannot be read")
            }
            throw error
        }
        guard let spec = ChipSpec.all.first(where: { $0.romChipMagic.contains(magic) }), spec.name == "esp32" else {
            throw FlasherError.unknownChip(magic: magic)
        }
        return spec
    }

    /// All eFuse read registers, as an array (read-protected bits read as zero, as on the chip).
    /// Register reads carry no checksum: the whole set is read again until two readings in a row
    /// agree (at most 6), so one flipped bit on a noisy link cannot change the MAC the registry
    /// keys the device by, nor the security state the line decides on. Readings that never agree
    /// are a link failure (``FlasherError/badResponse(command:why:)``).
    public static func readEFuses(_ access: RegisterAccess, layout: EFuseLayout = .esp32) throws -> EFuseArray {
        func reading() throws -> [UInt8] {
            var bytes: [UInt8] = []
            for (block, count) in layout.blockWordCounts.enumerated() {
                for w in 0..<count {
                    bytes.appendLE(try access.readRegister(layout.registerBase + layout.readRegisterOffsets[block] + UInt32(4 * w)))
                }
            }
            return bytes
        }
        guard let bytes = try RegisterReadings.agreeing(maxReadings: 6, reading) else {
            throw FlasherError.badResponse(command: "READ_REG (eFuses)", why: "no two readings of the eFuses agreed")
        }
        return try EFuseArray(layout: layout, bytes: bytes)
    }
}
