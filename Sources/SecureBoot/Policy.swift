/// What a chip's ROM and bootloader accept in Secure Boot V2, as data.
///
/// ESP32 (rev ≥ 3.0): RSA-3072 only, and only signature block 0 is honoured (one trusted key
/// digest in BLK2). ESP32-S3 and ESP32-C3: RSA-3072 only, up to three blocks (three digest slots).
/// `generic` applies only the format limits (any scheme espforge can sign, three blocks) — for
/// chips with ECDSA Secure Boot (C2, C6, H2, P4…) and interoperability work.
public struct SecureBootPolicy: Sendable, Equatable {
    public let chip: String
    public let displayName: String
    public let schemes: [SignatureScheme]
    /// How many leading blocks the device checks.
    public let honouredBlocks: Int

    public static let esp32 = SecureBootPolicy(chip: "esp32", displayName: "ESP32", schemes: [.rsa3072], honouredBlocks: 1)
    public static let esp32s3 = SecureBootPolicy(chip: "esp32s3", displayName: "ESP32-S3", schemes: [.rsa3072], honouredBlocks: 3)
    public static let esp32c3 = SecureBootPolicy(chip: "esp32c3", displayName: "ESP32-C3", schemes: [.rsa3072], honouredBlocks: 3)
    public static let generic = SecureBootPolicy(chip: "generic", displayName: "generic Secure Boot V2",
                                                 schemes: [.rsa3072, .ecdsa192, .ecdsa256, .ecdsa384], honouredBlocks: 3)

    public static let all: [SecureBootPolicy] = [.esp32, .esp32s3, .esp32c3, .generic]

    /// Looks a policy up by chip name (case-insensitive, `-`/`_` ignored).
    public static func named(_ name: String) -> SecureBootPolicy? {
        let key = name.lowercased().filter { $0 != "-" && $0 != "_" }
        return all.first { $0.chip == key }
    }

    public func check(_ scheme: SignatureScheme) throws {
        guard schemes.contains(scheme) else {
            throw SecureBootError.schemeNotAllowed(scheme: scheme, chip: displayName, allowed: schemes)
        }
    }
}
