import Flasher
import Foundation
import Loader
import Testing
import TestSupport
import Transport
import VirtualDevice

/// Issue 15 §3: the ROM's run sequence (SYNC, FLASH_BEGIN, FLASH_END(run)) on links without modem
/// lines rides through a FLASH_BEGIN damaged on the wire: the ROM refuses it (0x05 invalid
/// message), so the chip is still in its loader and the sequence is repeated after a re-sync.
@Suite(.serialized) struct RunFirmwareRetryTests {
    static let chips: [(chip: String, mac: String)] = [("esp32", "24:0a:c4:11:22:51"), ("esp32s3", "7c:df:a1:00:15:51")]

    /// A virtual device whose first `damaged` FLASH_BEGIN requests arrive cut short.
    func port(_ chip: String, mac: String, damaged: Int) throws -> (TamperingPort, URL) {
        let dir = try TestEnvironment.temporaryDirectory("espforge-runfw")
        try DeviceStore(directory: dir.path).create(try Device.create(DeviceDescription(chip: chip, chipRevision: 0, mac: mac)), force: true)
        var left = damaged
        let port = TamperingPort(try VirtualPorts.opener().open("virtual:" + dir.path)) { p in
            guard p.op == .flashBegin, left > 0 else { return p }
            left -= 1
            var q = p
            q.data = Array(q.data.prefix(12)) // a frame that lost bytes: the ROM answers 0x05
            return q
        }
        return (port, dir)
    }

    /// The replies the device sent after the run sequence.
    func replies(_ port: ChipPort) throws -> [ResponsePacket] {
        var decoder = SLIPDecoder(maxFrameLength: 1 << 20)
        return decoder.frames(try port.read(timeout: 0)).compactMap { try? ResponsePacket.decode($0) }
    }

    @Test("a FLASH_BEGIN refused as damaged is sent again after a re-sync; FLASH_END(run) once",
          arguments: [0, 1])
    func refusedBeginIsRetried(index: Int) throws {
        let (chip, mac) = Self.chips[index]
        let (port, dir) = try port(chip, mac: mac, damaged: 1)
        defer { try? FileManager.default.removeItem(at: dir) }
        let rom = LoaderClient(port: port)
        try rom.sync()
        try rom.runFirmware(encryptFlagWord: chip != "esp32", attempts: 3)
        let ops = port.sent.compactMap(\.op).filter { $0 == .flashBegin || $0 == .flashEnd || $0 == .sync }
        #expect(ops == [.sync, .flashBegin, .sync, .flashBegin, .flashEnd], "\(ops)")
        #expect(rom.retries == 1 && rom.resyncs == 1)
        let end = try replies(port).last { $0.opcode == Opcode.flashEnd.rawValue }
        #expect(end != nil, "the loader accepted FLASH_END(run)")
    }

    @Test("without retries (or when every try is refused) the refusal is reported and FLASH_END is never sent",
          arguments: [0, 1])
    func refusalIsReportedWithoutRun(index: Int) throws {
        let (chip, mac) = Self.chips[index]
        for (attempts, damaged) in [(1, 1), (3, 3)] {
            let (port, dir) = try port(chip, mac: mac, damaged: damaged)
            defer { try? FileManager.default.removeItem(at: dir) }
            let rom = LoaderClient(port: port)
            try rom.sync()
            #expect(throws: FlasherError.commandFailed(command: "FLASH_BEGIN", status: 1, error: 0x05)) {
                try rom.runFirmware(encryptFlagWord: chip != "esp32", attempts: attempts)
            }
            #expect(port.sent.filter { $0.op == .flashBegin }.count == damaged)
            #expect(!port.sent.contains { $0.op == .flashEnd }, "never leave the loader after a refused FLASH_BEGIN")
        }
    }
}
