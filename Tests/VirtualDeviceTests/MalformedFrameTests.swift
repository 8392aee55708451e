import Loader
import Testing
import TestSupport
import VirtualDevice

/// Issue 15 §3: a truncated or malformed frame gets the error answer the ROM / stub gives, not
/// silence (which cost the host a full timeout per damaged frame).
@Suite("Malformed frames")
struct MalformedFrameTests {
    /// A READ_REG request whose size field claims 8 data bytes but carries 4 (truncated on the wire).
    let truncatedReadReg: [UInt8] = [0x00, Opcode.readReg.rawValue, 8, 0, 0, 0, 0, 0, 0x00, 0x10, 0x00, 0x40]

    @Test func romAnswersInvalidMessage() throws {
        let host = try Host()
        let frames = host.send(raw: truncatedReadReg)
        #expect(frames.count == 1)
        let r = try ResponsePacket.decode(frames[0])
        #expect(r.opcode == Opcode.readReg.rawValue)
        #expect(r.data == [1, LoaderErrorCode.invalidMessage.rawValue, 0, 0])   // 4 status bytes in the ROM
        // Shorter than the header, too.
        let short = try ResponsePacket.decode(host.send(raw: [0x00, Opcode.sync.rawValue, 0x24])[0])
        #expect(short.opcode == Opcode.sync.rawValue && short.data.prefix(2) == [1, 0x05])
        // The loader still works afterwards.
        #expect(host.ok(try host.command(.readReg, [0x4000_1000])))
    }

    @Test func stubAnswersBadLengthOrBadChecksum() throws {
        let host = try Host()
        try host.startStub()
        let r = try ResponsePacket.decode(host.send(raw: truncatedReadReg)[0])
        #expect(r.opcode == Opcode.readReg.rawValue && r.data == [1, LoaderErrorCode.stubBadDataLength.rawValue])
        // A FLASH_DATA block cut short: the stub's checksum over the declared length fails.
        let block = CommandPacket.dataBlock(.flashData, sequence: 0, payload: [UInt8](repeating: 0x5A, count: 1024)).encode()
        let cut = try ResponsePacket.decode(host.send(raw: Array(block.prefix(600)))[0])
        #expect(cut.opcode == Opcode.flashData.rawValue && cut.data == [1, LoaderErrorCode.stubBadChecksum.rawValue])
        #expect(host.ok(try host.command(.readReg, [0x4000_1000])))
    }

    @Test func framesWithoutAnOpcodeGetNoAnswer() throws {
        let host = try Host()
        #expect(host.send(raw: [0x00]).isEmpty)
    }
}
