import ESPCore

/// Command opcodes of the ESP serial loader (ROM and flasher stub).
public enum Opcode: UInt8, Sendable, CaseIterable {
    case flashBegin = 0x02
    case flashData = 0x03
    case flashEnd = 0x04
    case memBegin = 0x05
    case memEnd = 0x06
    case memData = 0x07
    case sync = 0x08
    case writeReg = 0x09
    case readReg = 0x0A
    case spiSetParams = 0x0B
    case spiAttach = 0x0D
    case readFlashSlow = 0x0E
    case changeBaudrate = 0x0F
    case flashDeflBegin = 0x10
    case flashDeflData = 0x11
    case flashDeflEnd = 0x12
    case spiFlashMD5 = 0x13
    case getSecurityInfo = 0x14
    // Stub-only commands.
    case eraseFlash = 0xD0
    case eraseRegion = 0xD1
    case readFlash = 0xD2
    case runUserCode = 0xD3
    case flashEncryptData = 0xD4

    public var name: String {
        switch self {
        case .flashBegin: "FLASH_BEGIN"
        case .flashData: "FLASH_DATA"
        case .flashEnd: "FLASH_END"
        case .memBegin: "MEM_BEGIN"
        case .memEnd: "MEM_END"
        case .memData: "MEM_DATA"
        case .sync: "SYNC"
        case .writeReg: "WRITE_REG"
        case .readReg: "READ_REG"
        case .spiSetParams: "SPI_SET_PARAMS"
        case .spiAttach: "SPI_ATTACH"
        case .readFlashSlow: "READ_FLASH_SLOW"
        case .changeBaudrate: "CHANGE_BAUDRATE"
        case .flashDeflBegin: "FLASH_DEFL_BEGIN"
        case .flashDeflData: "FLASH_DEFL_DATA"
        case .flashDeflEnd: "FLASH_DEFL_END"
        case .spiFlashMD5: "SPI_FLASH_MD5"
        case .getSecurityInfo: "GET_SECURITY_INFO"
        case .eraseFlash: "ERASE_FLASH"
        case .eraseRegion: "ERASE_REGION"
        case .readFlash: "READ_FLASH"
        case .runUserCode: "RUN_USER_CODE"
        case .flashEncryptData: "FLASH_ENCRYPT_DATA"
        }
    }
}

/// Well-known constants of the protocol.
public enum LoaderProtocol {
    /// Seed of the data checksum.
    public static let checksumSeed: UInt8 = 0xEF
    /// SYNC request payload: `07 07 12 20` and 32 × `55`.
    public static let syncPayload: [UInt8] = [0x07, 0x07, 0x12, 0x20] + [UInt8](repeating: 0x55, count: 32)
    /// Value the ROM puts in SYNC replies (non-zero: "this is the ROM, not a stub").
    public static let romSyncValue: UInt32 = 0x2012_0707
    public static let romWriteBlock = 0x400
    public static let stubWriteBlock = 0x4000
    public static let ramBlock = 0x1800
    public static let flashSector = 0x1000

    /// XOR of `payload` seeded with 0xEF: the checksum of *_DATA commands.
    public static func checksum<C: Collection>(_ payload: C) -> UInt8 where C.Element == UInt8 {
        var s = checksumSeed
        for b in payload { s ^= b }
        return s
    }
}

/// Error codes in the status bytes of a response.
public enum LoaderErrorCode: UInt8, Sendable {
    case undefined = 0x00
    case invalidParameter = 0x01
    case mallocFailed = 0x02
    case sendFailed = 0x03
    case receiveFailed = 0x04
    case invalidMessage = 0x05
    case executionFailed = 0x06
    case checksum = 0x07
    case flashWrite = 0x08
    case flashRead = 0x09
    case flashReadLength = 0x0A
    case deflate = 0x0B
    case deflateAdler = 0x0C
    case deflateParameter = 0x0D
    case invalidRAMSize = 0x0E
    case invalidRAMAddress = 0x0F
    // Stub codes.
    case stubBadDataLength = 0xC0
    case stubBadChecksum = 0xC1
    case stubBadBlockSize = 0xC2
    case stubInvalidCommand = 0xC3
    case stubSPIFailed = 0xC4
    case stubSPIUnlock = 0xC5
    case stubNotInFlashMode = 0xC6
    case stubInflate = 0xC7
    case stubNotEnoughData = 0xC8
    case stubTooMuchData = 0xC9
    case stubNotImplemented = 0xFF
}

/// A request (host → chip): `00 op size(u16) checksum(u32) data`.
public struct CommandPacket: Sendable, Equatable {
    public var opcode: UInt8
    public var checksum: UInt32
    public var data: [UInt8]

    public init(opcode: UInt8, data: [UInt8] = [], checksum: UInt32 = 0) {
        self.opcode = opcode
        self.data = data
        self.checksum = checksum
    }

    public init(_ op: Opcode, data: [UInt8] = [], checksum: UInt32 = 0) {
        self.init(opcode: op.rawValue, data: data, checksum: checksum)
    }

    /// A *_DATA command: 16-byte sub-header (len, seq, 0, 0), the payload, and its checksum.
    public static func dataBlock(_ op: Opcode, sequence: UInt32, payload: [UInt8]) -> CommandPacket {
        var d: [UInt8] = []
        d.reserveCapacity(16 + payload.count)
        d.appendLE(UInt32(payload.count))
        d.appendLE(sequence)
        d.appendLE(UInt32(0))
        d.appendLE(UInt32(0))
        d.append(contentsOf: payload)
        return CommandPacket(op, data: d, checksum: UInt32(LoaderProtocol.checksum(payload)))
    }

    public var op: Opcode? { Opcode(rawValue: opcode) }

    /// The unframed packet bytes (SLIP-encode them for the wire).
    public func encode() -> [UInt8] {
        var out: [UInt8] = [0x00, opcode]
        out.appendLE(UInt16(truncatingIfNeeded: data.count))
        out.appendLE(checksum)
        out.append(contentsOf: data)
        return out
    }

    /// Parses a frame body. The size field must not claim more bytes than present; extra bytes
    /// beyond it are dropped.
    public static func decode(_ frame: [UInt8]) throws(PacketError) -> CommandPacket {
        guard frame.count >= 8 else { throw .tooShort(frame.count) }
        guard frame[0] == 0x00 else { throw .wrongDirection(frame[0]) }
        let size = Int(frame[2...3].loadLE(UInt16.self))
        guard 8 + size <= frame.count else { throw .sizeMismatch(declared: size, actual: frame.count - 8) }
        return CommandPacket(opcode: frame[1], data: Array(frame[8..<(8 + size)]),
                             checksum: frame[4...7].loadLE(UInt32.self))
    }

    /// Little-endian u32 parameter `index` of the data (nil if the data is too short).
    public func word(_ index: Int) -> UInt32? {
        let o = index * 4
        guard index >= 0, o + 4 <= data.count else { return nil }
        return data[o..<(o + 4)].loadLE(UInt32.self)
    }
}

/// A response (chip → host): `01 op size(u16) value(u32) data`, the status bytes at the end of data.
public struct ResponsePacket: Sendable, Equatable {
    public var opcode: UInt8
    public var value: UInt32
    public var data: [UInt8]

    public init(opcode: UInt8, value: UInt32 = 0, data: [UInt8] = []) {
        self.opcode = opcode
        self.value = value
        self.data = data
    }

    /// Success or failure with `output` followed by the status bytes (4 for the ESP32 ROM, 2 for stubs).
    public init(opcode: UInt8, value: UInt32 = 0, output: [UInt8] = [], error: LoaderErrorCode? = nil,
                statusLength: Int) {
        var d = output
        d.append(error == nil ? 0 : 1)
        d.append(error?.rawValue ?? 0)
        if statusLength > 2 { d.append(contentsOf: [UInt8](repeating: 0, count: statusLength - 2)) }
        self.init(opcode: opcode, value: value, data: d)
    }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [0x01, opcode]
        out.appendLE(UInt16(truncatingIfNeeded: data.count))
        out.appendLE(value)
        out.append(contentsOf: data)
        return out
    }

    public static func decode(_ frame: [UInt8]) throws(PacketError) -> ResponsePacket {
        guard frame.count >= 8 else { throw .tooShort(frame.count) }
        guard frame[0] == 0x01 else { throw .wrongDirection(frame[0]) }
        let size = Int(frame[2...3].loadLE(UInt16.self))
        guard 8 + size <= frame.count else { throw .sizeMismatch(declared: size, actual: frame.count - 8) }
        return ResponsePacket(opcode: frame[1], value: frame[4...7].loadLE(UInt32.self),
                              data: Array(frame[8..<(8 + size)]))
    }

    /// Status (`status`, `error`) read after `outputLength` bytes of output, as esptool reads it.
    public func status(outputLength: Int = 0) -> (status: UInt8, error: UInt8)? {
        if data.count >= outputLength + 2 { return (data[outputLength], data[outputLength + 1]) }
        if data.count >= 2 { return (data[0], data[1]) }
        return nil
    }
}

public enum PacketError: Error, Equatable, Sendable {
    case tooShort(Int)
    case wrongDirection(UInt8)
    case sizeMismatch(declared: Int, actual: Int)
}

extension PacketError: DiagnosticConvertible {
    public var diagnostic: Diagnostic {
        switch self {
        case let .tooShort(n):
            return Diagnostic("loader packet of \(n) byte(s) is shorter than its 8-byte header", offset: 0,
                              hint: "the serial stream is corrupted or not the ESP loader protocol")
        case let .wrongDirection(d):
            return Diagnostic("loader packet direction byte is 0x\(String(d, radix: 16))", offset: 0,
                              hint: "requests start with 0x00 and responses with 0x01")
        case let .sizeMismatch(declared, actual):
            return Diagnostic("loader packet declares \(declared) data byte(s) but carries \(actual)", offset: 2,
                              hint: "the frame was truncated on the wire")
        }
    }
}
