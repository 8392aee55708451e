// The FlashEncryption core. See README.md, section Architecture.
//
// Host-side flash encryption, byte-identical to espsecure `encrypt-flash-data` /
// `decrypt-flash-data` (esptool 5.6.0):
// - ESP32: AES-256 whose key is tweaked from the flash address every 32 bytes (FLASH_CRYPT_CONFIG
//   selects which key bits are tweaked); each 16-byte chunk is byte-reversed and, to ENCRYPT, run
//   through the AES inverse cipher (`ESP32FlashTweak`, `FlashCipher`).
// - XTS-AES chips: IEEE 1619 XTS over 128-byte data units with the unit's flash address as tweak,
//   each unit byte-reversed (`FlashCipher`).
// - Which regions of a flash layout the bootloader expects encrypted (`EncryptionRules`).
// Facts: ../shared/spec/flash-encryption.md. Pure: bytes in, bytes out.
import ESPCore

/// Problems with flash encryption input. Key problems say what lengths the chip accepts.
public enum FlashEncryptionError: Error, DiagnosticConvertible, Equatable, Sendable {
    /// The key file has `actual` bytes; `accepted` lists the lengths for this chip/scheme.
    case keyLength(actual: Int, accepted: [Int], scheme: FlashEncryptionScheme, target: String)
    /// The start address is not a multiple of `alignment`.
    case misalignedAddress(address: Int, alignment: Int)
    /// Data length is not a multiple of 16 bytes.
    case lengthNotMultipleOf16(length: Int)
    /// Nothing to encrypt.
    case emptyData
    /// The data does not fit in the 32-bit flash address space.
    case addressOutOfRange(address: Int, length: Int)
    /// FLASH_CRYPT_CONFIG is a 4-bit eFuse.
    case invalidFlashCryptConfig(Int)
    /// Two regions of a flash plan overlap.
    case overlappingRegions(first: Int, second: Int)
    /// A plan region covers both flash the bootloader expects encrypted and flash it does not.
    case regionStraddlesEncryptionBoundary(address: Int, length: Int, boundary: Int)
    /// An output buffer whose size differs from the input's.
    case outputSizeMismatch(input: Int, output: Int)
    /// Key generation size not supported.
    case unsupportedKeySize(bits: Int)

    public var diagnostic: Diagnostic {
        switch self {
        case let .keyLength(actual, accepted, scheme, target):
            let list = accepted.map { "\($0) bytes (\(FlashEncryptionKey.describeLength($0, scheme: scheme)))" }
            return Diagnostic("flash encryption key is \(actual) bytes; \(target) needs "
                                + list.joined(separator: " or "),
                              hint: "generate one with `espforge flash-encryption keygen`"
                                + (accepted.contains(64) ? " (--bits 512 for XTS-AES-256)" : ""))
        case let .misalignedAddress(address, alignment):
            if address < 0 { return Diagnostic("flash address \(address) is negative") }
            return Diagnostic("flash address \(NumberParsing.hex(address)) is not a multiple of \(alignment)",
                              hint: "use the offset the data will be written to; it must be \(alignment)-byte aligned")
        case let .lengthNotMultipleOf16(length):
            return Diagnostic("data length \(length) is not a multiple of 16 bytes",
                              hint: "pad the input to a multiple of 16 bytes (e.g. with 0xFF, like erased flash); "
                                + "espforge never pads with random bytes")
        case .emptyData:
            return Diagnostic("input is empty; there is nothing to encrypt or decrypt")
        case let .addressOutOfRange(address, length):
            return Diagnostic("data of \(length) bytes at \(NumberParsing.hex(address)) does not fit in the 32-bit flash address space",
                              hint: "flash offsets are below 0x100000000")
        case let .invalidFlashCryptConfig(value):
            return Diagnostic("FLASH_CRYPT_CONFIG \(value) is out of range",
                              hint: "it is a 4-bit eFuse: 0x0..0xF (ESP-IDF burns 0xF)")
        case let .overlappingRegions(first, second):
            return Diagnostic("flash plan regions at \(NumberParsing.hex(first)) and \(NumberParsing.hex(second)) overlap",
                              hint: "each flash byte may be written by one region only")
        case let .regionStraddlesEncryptionBoundary(address, length, boundary):
            return Diagnostic("region at \(NumberParsing.hex(address)) (\(length) bytes) crosses \(NumberParsing.hex(boundary)), "
                                + "the boundary between encrypted and plaintext flash",
                              hint: "split the region at the partition boundary")
        case let .outputSizeMismatch(input, output):
            return Diagnostic("output buffer holds \(output) bytes but the input has \(input)")
        case let .unsupportedKeySize(bits):
            return Diagnostic("cannot generate a \(bits)-bit flash encryption key",
                              hint: "use 256 (ESP32 AES-256, XTS-AES-128) or 512 (XTS-AES-256)")
        }
    }
}

/// Encrypt (plaintext → flash contents) or decrypt (flash contents → plaintext).
public enum FlashCipherDirection: String, Sendable, Hashable, Codable {
    case encrypt
    case decrypt
}
