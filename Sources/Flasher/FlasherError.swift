import ESPCore
import Loader

/// Everything that can go wrong while talking to a chip's loader.
public enum FlasherError: Error, Equatable, Sendable {
    /// No answer to SYNC after all attempts.
    case noSync(port: String, attempts: Int)
    /// No (matching) response within the timeout.
    case timeout(command: String)
    /// The loader answered with a failure status.
    case commandFailed(command: String, status: UInt8, error: UInt8)
    /// The ROM banner showed up: the chip was reset behind our back (stub and baud are gone).
    case deviceReset
    /// A response had a shape the protocol does not allow.
    case badResponse(command: String, why: String)
    /// The chip is not one espforge can flash.
    case unknownChip(magic: UInt32)
    case stubMissing(String)
    case stubInvalid(String, String)
    /// The stub did not greet with OHAI.
    case stubNotStarted
    /// Uploading or starting the stub, or its first commands, failed (`stub` = its file name).
    case stubFailed(stub: String, why: String)
    /// After all retries the flash MD5 still differs.
    case verifyFailed(address: Int, length: Int, expected: String, actual: String)
    case romUnsupported(String)
    case badArgument(String, hint: String)
    /// The safety planner refused the plan (see the findings).
    case refused(codes: [String])
    case gaveUp(port: String, why: String)
    /// A reconnect found another board (another MAC) on the port: the session stops.
    case differentBoard(port: String, expected: String, found: String)
    /// The chip's loader refused an encrypted write (FLASH_BEGIN with the encrypted-write flag):
    /// DIS_DOWNLOAD_MANUAL_ENCRYPT is burned, or no key block has an XTS-AES key purpose.
    case encryptedWriteRefused(chip: String, command: String, status: UInt8, error: UInt8)
}

extension FlasherError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .noSync(port, n):
            return Diagnostic("no answer from the serial loader on \(port) after \(n) attempt(s)",
                              hint: "check that the chip is in download mode (--before default-reset for USB-UART boards, no-reset for a pty or socket) and the port is right")
        case let .timeout(c):
            return Diagnostic("no response to \(c)", hint: "the link is noisy or the chip stopped answering; try a lower --baud")
        case let .commandFailed(c, s, e):
            let name = LoaderErrorCode(rawValue: e).map { "\($0)" } ?? "unknown"
            return Diagnostic("\(c) failed (status \(s), error 0x\(String(e, radix: 16)) \(name))",
                              hint: "the loader refused the command; see the error code")
        case .deviceReset:
            return Diagnostic("the chip reset during the session", hint: "check the power supply and the EN line")
        case let .badResponse(c, why):
            return Diagnostic("unexpected response to \(c): \(why)")
        case let .unknownChip(m):
            return Diagnostic("chip magic 0x\(String(m, radix: 16)) is not a supported chip",
                              hint: "espforge flashes ESP32 (magic 0x00f01d83), ESP32-S3 and ESP32-C3")
        case let .stubMissing(why):
            return Diagnostic("no flasher stub: \(why)", hint: "pass --stub FILE (esptool's stub JSON) or --no-stub")
        case let .stubInvalid(file, why):
            return Diagnostic("not a flasher stub: \(why)", file: file, hint: "use esptool's targets/stub_flasher/*/esp32.json")
        case .stubNotStarted:
            return Diagnostic("the flasher stub did not start (no OHAI greeting)", hint: "retry with --no-stub")
        case let .stubFailed(stub, why):
            return Diagnostic("the flasher stub did not start: \(why); try --no-stub",
                              hint: "the stub \(stub) was uploaded but does not work with this chip or link; --no-stub talks to the ROM loader (slower; uncompressed on ESP32)")
        case let .verifyFailed(a, l, e, x):
            return Diagnostic("MD5 of 0x\(String(l, radix: 16)) bytes at 0x\(String(a, radix: 16)) is \(x), expected \(e)",
                              hint: "the data did not arrive intact; nothing is reported as written")
        case let .romUnsupported(what):
            return Diagnostic("\(what) needs the flasher stub", hint: "drop --no-stub")
        case let .badArgument(what, hint):
            return Diagnostic(what, hint: hint)
        case let .refused(codes):
            return Diagnostic("the flash plan was refused before anything was written (\(codes.joined(separator: ", ")))",
                              hint: "see the findings above; each names its fix")
        case let .differentBoard(port, expected, found):
            return Diagnostic("another board answered on \(port) after a reconnect (MAC \(found), the session began with \(expected)); nothing more was written to it",
                              hint: "the board was swapped during the write: put the first board back and rerun with --resume, or start the new board on its own")
        case let .encryptedWriteRefused(chip, command, status, code):
            let name = LoaderErrorCode(rawValue: code).map { "\($0)" } ?? "unknown"
            return Diagnostic("the \(chip) refused the encrypted write (\(command) with the encrypted-write flag: status \(status), error 0x\(String(code, radix: 16)) \(name)); nothing was written by it",
                              hint: "DIS_DOWNLOAD_MANUAL_ENCRYPT is burned (release mode) or no key block has an XTS_AES key purpose: encrypt the files on the host (espforge flash-encryption encrypt) and write the ciphertext without --encrypt")
        case let .gaveUp(port, why):
            return Diagnostic("gave up on \(port): \(why)", hint: "check the link; verified regions stay written")
        }
    }
}
