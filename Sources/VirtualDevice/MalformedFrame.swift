import Loader

/// How the loaders answer a SLIP frame that is not a well-formed request (shorter than the 8-byte
/// header, or declaring more data than it carries — a truncated frame, or a size field hit by
/// noise), instead of ignoring it.
///
/// Facts relied on (docs/robustness.md has the sources):
/// - The flasher stub answers every frame it receives: a response header echoing the frame's
///   opcode byte, then an error and a status byte. It takes the data length from the header,
///   not from the bytes received; a length check failing gives "bad data length" (0xC0), a
///   payload whose checksum does not match gives "bad data checksum" (0xC1) — what a truncated
///   *_DATA frame meets, since the stub checks the checksum over the declared length.
/// - The ROM loader reports error 0x05, "received message is invalid (parameters or length field
///   is invalid)", with status 1; a ROM was seen answering 0x0105 to a FLASH_DATA frame damaged
///   on the wire.
/// - Frames of 0 or 1 bytes carry no opcode to answer for (the real loaders would act on stale
///   buffer contents); they get no answer here.
enum MalformedFrame {
    /// Opcodes whose payload the stub checksums (FLASH_DATA, FLASH_DEFL_DATA, FLASH_ENCRYPT_DATA).
    static let checksummedData: Set<UInt8> = [Opcode.flashData.rawValue, Opcode.flashDeflData.rawValue,
                                              Opcode.flashEncryptData.rawValue]

    /// The opcode to answer for and the error, or nil when the frame gets no answer.
    static func answer(to frame: [UInt8], stub: Bool) -> (opcode: UInt8, error: LoaderErrorCode)? {
        guard frame.count >= 2 else { return nil }
        let op = frame[1]
        guard stub else { return (op, .invalidMessage) }
        return (op, checksummedData.contains(op) && frame.count >= 8 ? .stubBadChecksum : .stubBadDataLength)
    }
}
