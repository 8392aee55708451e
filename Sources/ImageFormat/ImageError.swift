import ESPCore

/// Everything that can be wrong with an ELF file, an ESP image, or a request to build or rewrite one.
/// Each case carries the byte offset it concerns, when there is one.
public enum ImageError: Error, Equatable, Sendable {
    /// Input ended early: `needed` bytes of `what` were expected at `offset`.
    case truncated(what: String, offset: Int, needed: Int)
    /// A field holds a value that cannot be right.
    case invalidField(String, offset: Int, hint: String?)
    /// ELF structure problem (not ELF32 LE, missing tables, bad indices).
    case invalidELF(String, offset: Int?)
    /// elf2image could not lay out the image.
    case layout(String, hint: String?)
    /// A flash parameter name this chip does not know.
    case unknownParameter(kind: String, value: String, allowed: [String])
    /// retarget refuses to touch a signed image.
    case signedImage(sectorOffset: Int)
    /// retarget refuses data after the image that might be a signature of another kind.
    case trailingData(offset: Int)
    /// retarget refuses an image whose checksum or digest is already wrong.
    case corruptInput(String, offset: Int)
    /// Header names a chip this table does not know.
    case unknownChip(id: UInt16)
    /// The file is an ESP8266 image (read by `image info` only); `reason` says how it was recognised.
    case esp8266Image(reason: String)
}

extension ImageError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .truncated(what, offset, needed):
            return Diagnostic("file is truncated: \(needed) byte(s) of \(what) expected at byte offset \(hex(offset)), but the file ends first",
                              offset: offset, hint: "the file ends early; check it was copied completely")
        case let .invalidField(message, offset, hint):
            return Diagnostic(message, offset: offset, hint: hint)
        case let .invalidELF(message, offset):
            return Diagnostic("not a usable ELF file: \(message)", offset: offset,
                              hint: "pass the ELF produced by the ESP-IDF/Zephyr build (32-bit little-endian Xtensa or RISC-V)")
        case let .layout(message, hint):
            return Diagnostic(message, hint: hint)
        case let .unknownParameter(kind, value, allowed):
            return Diagnostic("unknown \(kind) '\(value)'", hint: "choose one of: " + allowed.joined(separator: ", "))
        case let .signedImage(sectorOffset):
            return Diagnostic("image carries a Secure Boot V2 signature sector at byte offset \(hex(sectorOffset)); rewriting the header would change signed bytes, so the signature would no longer verify and the chip would refuse to boot it; a re-sign is needed after any header change",
                              offset: sectorOffset,
                              hint: "retarget the unsigned image and sign it again, or pass --strip-signature to drop the signature and re-sign the result")
        case let .trailingData(offset):
            return Diagnostic("image is followed by non-padding data at byte offset \(hex(offset)) (possibly a Secure Boot V1 signature); rewriting the header would invalidate it",
                              offset: offset, hint: "pass --strip-signature to drop everything after the image, then re-sign")
        case let .corruptInput(message, offset):
            return Diagnostic(message, offset: offset, hint: "the input image is already damaged; rebuild it instead of rewriting it")
        case let .unknownChip(id):
            return Diagnostic("unknown chip id \(id) (0x\(String(id, radix: 16))) in the extended header", offset: 12,
                              hint: "supported chips: " + ChipSpec.imageChips.map(\.displayName).joined(separator: ", "))
        case let .esp8266Image(reason):
            return Diagnostic("this is an ESP8266 image, not an ESP32-family image (\(reason))", offset: 0,
                              hint: "espforge reads ESP8266 images with `espforge image info` only; use esptool to build or flash them")
        }
    }
}

func hex(_ value: some BinaryInteger) -> String { "0x" + String(value, radix: 16) }

extension ImageError {
    static func from(_ e: ByteReaderError) -> ImageError {
        switch e {
        case let .truncated(offset, needed, what): return .truncated(what: what, offset: offset, needed: needed)
        }
    }
}
