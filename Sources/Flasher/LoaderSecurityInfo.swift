import ESPCore
import Loader
import Transport

/// GET_SECURITY_INFO of an ESP32-S3 / ESP32-C3 (ROM and stub): what the chip says about its
/// security eFuses. It is all a host can learn once ENABLE_SECURITY_DOWNLOAD is burned (Secure
/// Download Mode refuses READ_REG): no MAC, no key block contents, no protection bits.
///
/// Layout (20 bytes, little-endian): flags u32, SPI_BOOT_CRYPT_CNT u8, KEY_PURPOSE_0…5 and one
/// zero byte, chip id u32, eco version u32 (facts from esptool 5.6.0's `get_security_info`).
/// Flag bits common to both chips: 0 SECURE_BOOT_EN, 1 SECURE_BOOT_AGGRESSIVE_REVOKE,
/// 2 ENABLE_SECURITY_DOWNLOAD, 3…5 SECURE_BOOT_KEY_REVOKE0…2.
public struct LoaderSecurityInfo: Sendable, Equatable {
    public var flags: UInt32
    public var cryptCount: Int
    public var keyPurposes: [Int]
    public var chipID: UInt32
    public var ecoVersion: UInt32

    public var secureBootEnabled: Bool { flags & 1 != 0 }
    public var aggressiveRevoke: Bool { flags & 2 != 0 }
    public var secureDownloadMode: Bool { flags & 4 != 0 }
    public var revokedDigestSlots: [Int] { (0..<3).filter { flags & (1 << UInt32(3 + $0)) != 0 } }
    public var flashEncryptionEnabled: Bool { cryptCount.nonzeroBitCount % 2 == 1 }
    /// The chip's detection row (nil: a chip id espforge has no row for).
    public var chip: FieldMapChipFacts? { FieldMapChipFacts.table.first { $0.chipID == chipID } }

    public init?(_ data: [UInt8]) {
        guard data.count >= 20 else { return nil }
        flags = Array(data[0..<4]).loadLE(UInt32.self)
        cryptCount = Int(data[4])
        keyPurposes = data[5..<11].map(Int.init)
        chipID = Array(data[12..<16]).loadLE(UInt32.self)
        ecoVersion = Array(data[16..<20]).loadLE(UInt32.self)
    }

    /// Asks the loader behind `client`; nil when it does not answer the command (an ESP32 ROM).
    public static func read(_ client: LoaderClient) -> LoaderSecurityInfo? {
        guard let r = try? client.command(.getSecurityInfo, outputLength: 20) else { return nil }
        return LoaderSecurityInfo(r.data)
    }

    /// A fresh connection to the ROM loader on `portName` (reset as `options.before` says, no
    /// stub, nothing else sent), GET_SECURITY_INFO, closed again.
    public static func read(port portName: String, options: SessionOptions) throws -> LoaderSecurityInfo? {
        let port = try options.ports.open(portName)
        defer { port.close() }
        let c = LoaderClient(port: port)
        c.timeout = options.timeout
        try c.enterLoaderAndSync(before: options.before, portName: portName)
        return read(c)
    }
}
