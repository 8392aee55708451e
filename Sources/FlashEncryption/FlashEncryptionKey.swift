import Crypto
import ESPCore

/// A flash encryption key as read from a key file, normalized the way espsecure loads it.
///
/// The bytes are never printed: `description` shows only the algorithm and length.
public struct FlashEncryptionKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public let scheme: FlashEncryptionScheme
    /// Length of the key file.
    public let fileLength: Int
    /// The key actually used: 32 bytes for ESP32 (a 24-byte 3/4-coding key K becomes
    /// K ‖ K[8..<16]); 32 or 64 bytes of XTS key material (data key ‖ tweak key) for XTS (a
    /// 16-byte key becomes its SHA-256).
    let material: [UInt8]

    /// Key file lengths espsecure accepts for a scheme.
    public static func acceptedLengths(for scheme: FlashEncryptionScheme) -> [Int] {
        switch scheme {
        case .esp32Tweak: return [32, 24]
        case .xtsAES: return [32, 64, 16]
        }
    }

    /// Accepts every length espsecure accepts for `scheme`.
    public init(_ bytes: [UInt8], scheme: FlashEncryptionScheme) throws {
        let accepted = Self.acceptedLengths(for: scheme)
        guard accepted.contains(bytes.count) else {
            throw FlashEncryptionError.keyLength(actual: bytes.count, accepted: accepted, scheme: scheme,
                                                 target: scheme == .esp32Tweak ? "ESP32 flash encryption" : "XTS-AES flash encryption")
        }
        self.scheme = scheme
        fileLength = bytes.count
        switch (scheme, bytes.count) {
        case (.esp32Tweak, 24):
            material = bytes + bytes[8..<16]
        case (.xtsAES, 16):
            material = Array(SHA256.hash(data: bytes))
        default:
            material = bytes
        }
    }

    /// Accepts only the lengths `chip`'s eFuses can hold (e.g. ESP32-C3: 32 bytes only).
    public init(_ bytes: [UInt8], chip: ChipSpec) throws {
        guard chip.flashEncryptionKeyLengths.contains(bytes.count) else {
            throw FlashEncryptionError.keyLength(actual: bytes.count, accepted: chip.flashEncryptionKeyLengths,
                                                 scheme: chip.flashEncryption, target: chip.displayName + " flash encryption")
        }
        try self.init(bytes, scheme: chip.flashEncryption)
    }

    /// `AES-256 (ESP32 key tweak)`, `XTS-AES-128`, `XTS-AES-256`.
    public var algorithm: String {
        switch scheme {
        case .esp32Tweak: return fileLength == 24 ? "AES-256 (ESP32, 192-bit 3/4-coding key)" : "AES-256 (ESP32 key tweak)"
        case .xtsAES: return material.count == 64 ? "XTS-AES-256" : (fileLength == 16 ? "XTS-AES-128 (SHA-256 of 128-bit key)" : "XTS-AES-128")
        }
    }

    public var description: String { "FlashEncryptionKey(\(algorithm), \(fileLength) bytes)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["algorithm": algorithm, "fileLength": fileLength]) }

    static func describeLength(_ length: Int, scheme: FlashEncryptionScheme) -> String {
        switch (scheme == .esp32Tweak, length) {
        case (true, 32): return "AES-256"
        case (true, 24): return "192-bit, 3/4 coding scheme"
        case (false, 32): return "XTS-AES-128"
        case (false, 64): return "XTS-AES-256"
        case (false, 16): return "128-bit, extended with SHA-256"
        default: return "\(length * 8)-bit"
        }
    }

    /// `bits / 8` bytes from the system CSPRNG. `bits` must be 256 or 512.
    public static func generate(bits: Int) throws -> [UInt8] {
        guard bits == 256 || bits == 512 else { throw FlashEncryptionError.unsupportedKeySize(bits: bits) }
        let key = SymmetricKey(size: SymmetricKeySize(bitCount: bits))
        return key.withUnsafeBytes { Array($0) }
    }
}
