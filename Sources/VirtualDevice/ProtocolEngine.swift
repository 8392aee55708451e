import Crypto
import EFuse
import ESPCore
import Loader

/// The ESP32 serial loader as a pure state machine: bytes from the host in, bytes to the host out.
///
/// It starts as the ROM download mode (4 status bytes, 0x400 flash blocks, READ_FLASH_SLOW, MD5
/// as hex text, no stub-only commands). After a RAM upload ending in MEM_END with an entry point
/// it answers as esptool's flasher stub does ("OHAI", 2 status bytes, ERASE_FLASH/ERASE_REGION/
/// READ_FLASH, 0x4000 blocks, raw MD5) without executing the uploaded code.
/// What a firmware run printed and how long it took (see ``ProtocolEngine/firmware``).
public struct FirmwareRun: Sendable {
    public var console: [UInt8]
    /// Virtual time of the run (charged by the engine; the firmware must not also add it to
    /// `device.stats`), and its flash work.
    public var seconds: Double
    public var sectorErases: Int
    public var pagePrograms: Int
    public var efusePrograms: Int
    public init(console: [UInt8], seconds: Double, sectorErases: Int = 0, pagePrograms: Int = 0, efusePrograms: Int = 0) {
        self.console = console; self.seconds = seconds; self.sectorErases = sectorErases; self.pagePrograms = pagePrograms
        self.efusePrograms = efusePrograms
    }
}

public final class ProtocolEngine {
    public enum Mode: String, Sendable { case rom, stub, userCode }

    public var device: Device
    public let timing: TimeModel
    public private(set) var mode: Mode = .rom
    public private(set) var baud = 115_200
    /// Counters of the current connection (see ``beginConnection()``).
    public private(set) var connection = DeviceCounters()
    /// Set when the eFuse array changed (persist it).
    public var efusesDirty = false
    /// Log of unusual events (unknown register reads, refused commands), newest last, bounded.
    public private(set) var log: [String] = []

    /// The chip's flash encryption engine for encrypted writes through the stub (FLASH_BEGIN with
    /// the encrypt flag): given the eFuses, the flash address and plaintext, return ciphertext of
    /// the same length (nil = failure, e.g. DISABLE_DL_ENCRYPT). Installed by default with
    /// ``VirtualEncryptionEngine/esp32``; set to nil and encrypted writes are refused rather than
    /// silently stored as plaintext.
    public var flashEncryption: (@Sendable (EFuseArray, Int, [UInt8]) -> [UInt8]?)?

    /// What the chip runs when it leaves the loader for its firmware (ROM `FLASH_END` with the
    /// run flag, `RUN_USER_CODE`): a first boot. Given the device it may change flash and eFuses
    /// (a bootloader encrypting in place) and returns the console output and the virtual time it
    /// took. nil: the chip runs silently (the default; `espforge device serve` installs the boot
    /// simulator).
    public var firmware: (@Sendable (inout Device) -> FirmwareRun)?

    private var decoder = SLIPDecoder()
    private var efuse: EFuseController
    /// ESP32-S3/C3: the chip's loader facts and its eFuse controller (nil on an ESP32).
    public let chip: VirtualChip?
    private var fieldEFuse: FieldMapController? {
        didSet { if fieldEFuse != nil, fieldEFuse?.stuckBits != stuckEFuseBits { fieldEFuse?.stuckBits = stuckEFuseBits } }
    }
    /// ESP32-S3/C3 fault: fuses that never burn through the loader (``FaultPlan/stuckEFuseBits``).
    public var stuckEFuseBits: [FieldMapController.FuseWord: UInt32] = [:] {
        didSet { fieldEFuse?.stuckBits = stuckEFuseBits }
    }
    /// Registers of an S3/C3 that read back what was written (watchdog, OPTION1…).
    private var plainRegisters: [UInt32: UInt32] = [:]
    private var spi = SPIFlashEngine()
    private var memory: [UInt32: UInt32] = [:]
    private var rtcSDIOConf: UInt32 = 0
    private var attached = false
    private var flashParamsSize: Int
    private var flashOp: FlashOperation?
    private var memOp: (size: Int, received: Int)?
    private var readOp: ReadOperation?
    private var output: [UInt8] = []
    private var connected = false
    /// The ROM loader's 32 KiB decompression window for FLASH_DEFL_* (zeroed by a reset, kept
    /// between regions). See ``ROMDeflateWindow``.
    private var romWindow = ROMDeflateWindow()
    /// The stub's work behind its replies, on this connection's clock (``DeviceCounters/virtualSeconds``).
    /// esptool's flasher stub (esp-flasher-stub, and the legacy stub before it) answers a data
    /// block once its checksum is checked and writes it afterwards, while the next block comes
    /// in; the next command waits for that work. `stubFreeAt`: when the stub's CPU is done with
    /// the last block (page programs, and erases the block had to wait for); `flashFreeAt`: when
    /// the flash chip finishes the erase it was last given (erases are started without waiting).
    private var stubFreeAt = 0.0
    private var flashFreeAt = 0.0
    /// An error of that later work, answered to the next command instead of running it (as
    /// esp-flasher-stub's carried result does).
    private var carriedError: LoaderErrorCode?

    struct FlashOperation {
        var compressed: Bool
        var offset: Int
        var blockSize: Int
        var total: Int
        var written: Int = 0
        var inflater: Inflater?
        var encrypted = false
        var failed = false
        /// The stub's erase front: the next sector-aligned address to erase and the end of the
        /// announced range rounded up to a sector (equal once all is erased; the ROM erases the
        /// whole range at FLASH_BEGIN).
        var eraseNext = 0
        var eraseEnd = 0
    }

    struct ReadOperation {
        var offset: Int
        var length: Int
        var packet: Int
        var maxInFlight: Int
        var sent = 0
        var acked = 0
        var md5 = Insecure.MD5()
    }

    public init(device: Device, timing: TimeModel = .w25q32jv) {
        self.device = device
        self.timing = timing
        efuse = EFuseController(layout: .esp32, array: device.efuses)
        flashParamsSize = device.description.flashSize
        chip = device.chip
        if let chip {
            fieldEFuse = FieldMapController(map: chip.efuseMap, registers: chip.efuseRegisters,
                                            cells: device.cells ?? EFuseBlockWords(map: chip.efuseMap))
            spi = SPIFlashEngine(layout: chip.spi)
            flashEncryption = nil
        } else {
            flashEncryption = VirtualEncryptionEngine.esp32
        }
    }

    /// An S3/C3's eFuses as its read registers show them (what the ROM checks: after a burn, only
    /// once the controller has reloaded).
    private var shownEFuses: EFuseBlockWords? { fieldEFuse?.shown }

    /// The ROM of an S3/C3 accepts FLASH_BEGIN's fifth word (encrypted write) too.
    private var acceptsEncryptFlag: Bool { mode == .stub || chip != nil }

    // MARK: Registers

    static let romMagicAddress: UInt32 = 0x4000_1000
    static let apbCtrlDate: UInt32 = 0x3FF6_607C
    static let uart0ClkDiv: UInt32 = 0x3FF4_0014
    static let rtcCaliCfg1: UInt32 = 0x3FF5_F06C
    static let rtcSDIOConfAddress: UInt32 = 0x3FF4_8074
    static let gpioStrap: UInt32 = 0x3FF4_4038

    /// What READ_REG returns for `address`.
    public func readRegister(_ address: UInt32) -> UInt32 {
        if let chip { return readRegister(address, chip: chip) }
        if address == Self.romMagicAddress { return 0x00F0_1D83 }
        if efuse.contains(address) { return efuse.read(address) }
        if spi.contains(address) { return spi.read(address) }
        switch address {
        case Self.apbCtrlDate: return device.description.chipRevision >= 3 ? 0x9604_2000 : 0x1604_2000
        case Self.uart0ClkDiv:
            let xtal = UInt64(device.description.crystalHz)
            let b = UInt64(max(1, baud))
            let whole = xtal / b
            let frac = (xtal * 16 / b) & 0xF
            return UInt32(truncatingIfNeeded: (frac << 20) | (whole & 0xFFFFF))
        case Self.rtcCaliCfg1:
            // cali_value (bits 31:7) such that value·15625·CLK8M/40 equals the crystal frequency.
            let clk8m = UInt64(efuse.read(efuse.base + 0x10) & 0xFF)
            guard clk8m > 0 else { return 0 }
            let cali = UInt64(device.description.crystalHz) * 40 / (15625 * clk8m)
            return UInt32(truncatingIfNeeded: (cali & 0x1FF_FFFF) << 7)
        case Self.rtcSDIOConfAddress: return rtcSDIOConf
        case Self.gpioStrap: return 0x0000_0003
        default:
            return memory[address] ?? 0
        }
    }

    /// READ_REG on an S3/C3: magic word, eFuse controller, SPI1, UART divider, strapping, plain
    /// registers; anything else reads as RAM (0 until written).
    private func readRegister(_ address: UInt32, chip: VirtualChip) -> UInt32 {
        if address == Self.romMagicAddress { return chip.magicValue }
        if let f = fieldEFuse, f.contains(address) { return f.read(address) }
        if spi.contains(address) { return spi.read(address) }
        switch address {
        case chip.uartClockDivider:
            let xtal = UInt64(device.description.crystalHz), b = UInt64(max(1, baud))
            return UInt32(truncatingIfNeeded: (((xtal * 16 / b) & 0xF) << 20) | ((xtal / b) & 0xFFFFF))
        case chip.gpioStrap: return chip.gpioStrapDownload
        default: return plainRegisters[address] ?? memory[address] ?? 0
        }
    }

    private func writeRegister(_ address: UInt32, _ value: UInt32, chip: VirtualChip) {
        if var f = fieldEFuse, f.contains(address) {
            let effect = f.write(address, value)
            fieldEFuse = f
            switch effect {
            case let .programmed(_, changed):
                connection.efusePrograms += 1
                advance(timing.efuseProgram)
                if changed {
                    device.cells = f.cells
                    efusesDirty = true
                }
            case let .checkValueMismatch(block):
                note("eFuse program of block \(block) refused: PGM_CHECK_VALUE is not the block's RS check")
            case .none, .reloaded: break
            }
            return
        }
        if spi.contains(address) {
            spi.write(address, value, flashID: device.description.flashID, flash: device.flash)
            return
        }
        if address == Self.romMagicAddress || address == chip.gpioStrap || address == chip.uartDate { return }
        if chip.plainRegisters.contains(address) { plainRegisters[address] = value; return }
        if memory.count < 65_536 || memory[address] != nil { memory[address] = value }
    }

    /// A register write with the side effects of the eFuse controller and the SPI engine.
    public func writeRegister(_ address: UInt32, _ value: UInt32) {
        if let chip { return writeRegister(address, value, chip: chip) }
        if efuse.contains(address) {
            if efuse.write(address, value) {
                efusesDirty = true
                device.efuses = efuse.array
                connection.efusePrograms += 1
                advance(timing.efuseProgram)
            }
            return
        }
        if spi.contains(address) {
            spi.write(address, value, flashID: device.description.flashID, flash: device.flash)
            return
        }
        switch address {
        case Self.romMagicAddress, Self.apbCtrlDate, Self.uart0ClkDiv, Self.rtcCaliCfg1, Self.gpioStrap: return
        case Self.rtcSDIOConfAddress: rtcSDIOConf = value
        default:
            if memory.count < 65_536 || memory[address] != nil { memory[address] = value }
        }
    }

    // MARK: Connection life cycle

    /// A new host connection: the chip is (re)entered into ROM download mode at 115200 baud.
    public func beginConnection() {
        connection = DeviceCounters()
        resetToROM()
        connected = true
        device.stats.connections += 1
        if downloadModeDisabled {
            // UART_DOWNLOAD_DIS (v3 and later): after a reset the ROM no longer enters download
            // mode; it boots from flash and the loader never answers.
            note("UART download mode is disabled by eFuse; not answering")
            mode = .userCode
        }
    }

    /// UART_DOWNLOAD_DIS is burned and the chip honours it (revision 3 and later); on an S3/C3,
    /// DIS_DOWNLOAD_MODE.
    public var downloadModeDisabled: Bool {
        if let chip { return chip.downloadModeDisabled(device.cells ?? EFuseBlockWords(map: chip.efuseMap)) }
        return device.description.chipRevision >= 3 && device.efuses.rawWord(block: 0, word: 0) & (1 << 27) != 0
    }

    /// Hardware reset into download mode (stub, baud and SPI attach are forgotten).
    public func resetToROM() {
        mode = .rom
        baud = 115_200
        attached = false
        flashOp = nil
        memOp = nil
        readOp = nil
        decoder = SLIPDecoder()
        efuse.reload()
        fieldEFuse?.powerOn()
        plainRegisters = [:]
        if let hook = chip?.secureBootStubHook { memory[hook.address] = hook.romValue }
        spi = SPIFlashEngine(layout: chip?.spi ?? .esp32)
        romWindow = ROMDeflateWindow()
        stubFreeAt = connection.virtualSeconds
        flashFreeAt = connection.virtualSeconds
        carriedError = nil
        // The ROM assumes a 2 MB chip until SPI_SET_PARAMS says otherwise.
        flashParamsSize = min(2 << 20, device.description.flashSize)
    }

    /// Statistics with the current connection folded in.
    public var stats: DeviceStats {
        var s = device.stats
        if connected {
            s.total = s.total + connection
            s.lastConnection = connection
        }
        return s
    }

    /// Folds this connection's counters into the totals (call when it ends).
    public func endConnection() {
        device.stats.total = device.stats.total + connection
        device.stats.lastConnection = connection
        connection = DeviceCounters()
        connected = false
    }

    /// Flash sectors changed since the last call.
    public func takeDirtySectors() -> [Int] { device.flash.takeDirtySectors() }

    /// A transport stall of `seconds` (fault injection) passes virtual time too.
    public func stall(seconds: Double) { advance(seconds) }

    /// Counts injected faults into the persistent statistics.
    public func recordFaults(_ f: FaultCounters, spec: String?, seed: UInt64?) {
        device.stats.faults = device.stats.faults + f
        device.stats.lastConnectionFaults = f
        device.stats.faultSpec = spec
        device.stats.faultSeed = seed
    }

    // MARK: Bytes in, bytes out

    /// Feeds bytes received from the host; returns the bytes to send back.
    public func receive<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        output.removeAll(keepingCapacity: true)
        connection.bytesIn += bytes.count
        advanceWire(bytes.count)
        guard mode != .userCode else { return [] }
        for event in decoder.feed(bytes) {
            guard case let .frame(frame) = event else {
                note("dropped non-SLIP input: \(event)")
                continue
            }
            handleFrame(frame)
        }
        return output
    }

    private func handleFrame(_ frame: [UInt8]) {
        if var r = readOp, frame.count == 4 {
            // READ_FLASH acknowledgement: total bytes received so far.
            r.acked = Int(frame.loadLE(UInt32.self))
            readOp = r
            pumpRead()
            return
        }
        guard let packet = try? CommandPacket.decode(frame) else {
            // Answered as the ROM / stub answer it (see MalformedFrame), not silently dropped.
            note("malformed frame of \(frame.count) bytes")
            if let answer = MalformedFrame.answer(to: frame, stub: mode == .stub) {
                connection.commands += 1
                waitUntil(stubFreeAt)
                advance(timing.commandTurnaround)
                reply(answer.opcode, error: answer.error)
            }
            return
        }
        connection.commands += 1
        // The stub reaches a command once the previous block's write is done; any command but a
        // data block also waits for the flash to finish its erase.
        let dataBlock = packet.op == .flashData || packet.op == .flashDeflData
        waitUntil(dataBlock ? stubFreeAt : max(stubFreeAt, flashFreeAt))
        advance(timing.commandTurnaround)
        if mode == .stub, let carried = carriedError {
            carriedError = nil
            note("error of the previous block's write answered to command 0x\(String(packet.opcode, radix: 16))")
            return reply(packet.opcode, error: carried)
        }
        handle(packet)
    }

    private func waitUntil(_ t: Double) {
        if t > connection.virtualSeconds { advance(t - connection.virtualSeconds) }
    }

    private var statusLength: Int { mode == .stub ? 2 : 4 }

    private func reply(_ op: UInt8, value: UInt32 = 0, output out: [UInt8] = [], error: LoaderErrorCode? = nil) {
        send(ResponsePacket(opcode: op, value: value, output: out, error: error, statusLength: statusLength).encode())
    }

    private func send(_ body: [UInt8]) {
        let framed = SLIP.encode(body)
        output.append(contentsOf: framed)
        connection.bytesOut += framed.count
        advanceWire(framed.count)
    }

    private func advanceWire(_ n: Int) {
        let t = timing.wireTime(bytes: n, baud: baud)
        connection.wireSeconds += t
        connection.virtualSeconds += t
    }

    private func advance(_ t: Double) { connection.virtualSeconds += t }

    private func advanceFlash(_ t: Double) {
        connection.flashSeconds += t
        connection.virtualSeconds += t
    }

    private func note(_ s: String) {
        if log.count >= 200 { log.removeFirst(100) }
        log.append(s)
    }

    // MARK: Commands

    private func handle(_ p: CommandPacket) {
        let op = p.opcode
        guard let known = p.op else { return unsupported(op) }
        if let chip, mode == .rom, let shown = shownEFuses, chip.secureDownloadMode(shown),
           !VirtualChip.secureDownloadCommands.contains(known) {
            // ENABLE_SECURITY_DOWNLOAD: the ROM keeps only SYNC, SPI setup, baud, plain flash
            // writes and GET_SECURITY_INFO (ESP-IDF "Secure Download Mode"; documentation only).
            note("command 0x\(String(op, radix: 16)) refused in secure download mode")
            return reply(op, error: .invalidMessage)
        }
        switch known {
        case .sync:
            guard p.data == LoaderProtocol.syncPayload else { return note("SYNC with a wrong payload ignored") }
            // The ROM answers one SYNC eight times with a non-zero value; a running stub answers
            // with 0, which tells esptool that no upload is needed.
            let value = mode == .rom ? LoaderProtocol.romSyncValue : 0
            for _ in 0..<8 { reply(op, value: value) }
        case .readReg:
            guard let a = p.word(0) else { return reply(op, error: badMessage) }
            reply(op, value: readRegister(a))
        case .writeReg:
            guard !p.data.isEmpty, p.data.count % 16 == 0 else { return reply(op, error: badMessage) }
            for k in 0..<(p.data.count / 16) {
                let addr = p.word(4 * k) ?? 0, value = p.word(4 * k + 1) ?? 0
                let mask = p.word(4 * k + 2) ?? 0, delay = p.word(4 * k + 3) ?? 0
                if mask != 0 {
                    let old = readRegister(addr)
                    writeRegister(addr, (old & ~mask) | (value & mask))
                }
                advance(Double(delay) * 1e-6)
            }
            reply(op)
        case .spiAttach:
            guard p.data.count == (mode == .rom ? 8 : 4) || p.data.count == 8 else { return reply(op, error: badMessage) }
            attached = true
            reply(op)
        case .spiSetParams:
            guard p.data.count == 24, let total = p.word(1) else { return reply(op, error: badMessage) }
            flashParamsSize = Int(total)
            reply(op)
        case .changeBaudrate:
            guard let newBaud = p.word(0), newBaud >= 300, newBaud <= 5_000_000 else {
                return reply(op, error: mode == .stub ? .stubBadDataLength : .invalidParameter)
            }
            reply(op) // answered at the old rate
            baud = Int(newBaud)
        case .flashBegin, .flashDeflBegin: flashBegin(p, compressed: known == .flashDeflBegin)
        case .flashData, .flashDeflData: flashData(p, compressed: known == .flashDeflData)
        case .flashEnd, .flashDeflEnd: flashEnd(p)
        case .spiFlashMD5: md5(p)
        case .readFlashSlow:
            guard mode == .rom else { return unsupported(op) }
            if let hook = chip?.secureBootStubHook, let ptr = memory[hook.address], ptr != hook.romValue, ptr != 0 {
                // The ROM's legacy read now points into uploaded RAM: it runs the stub (no reply).
                mode = .stub
                send(Array("OHAI".utf8))
                return
            }
            guard let off = p.word(0), let len = p.word(1) else { return reply(op, error: badMessage) }
            guard len <= 64 else { return reply(op, error: .flashReadLength) }
            guard let data = device.flash.read(Int(off), Int(len)) else { return reply(op, error: .flashRead) }
            advanceFlash(timing.flashRead(bytes: Int(len)))
            reply(op, output: data + [UInt8](repeating: 0, count: 64 - data.count))
        case .memBegin:
            guard let size = p.word(0) else { return reply(op, error: badMessage) }
            memOp = (Int(size), 0)
            reply(op)
        case .memData:
            guard var m = memOp else { return reply(op, error: mode == .stub ? .stubNotInFlashMode : .invalidMessage) }
            guard let len = p.word(0), p.data.count == 16 + Int(len) else {
                return reply(op, error: mode == .stub ? .stubBadDataLength : .invalidMessage)
            }
            guard UInt32(LoaderProtocol.checksum(p.data[16...])) == p.checksum else {
                return reply(op, error: mode == .stub ? .stubBadChecksum : .checksum)
            }
            m.received += Int(len)
            memOp = m
            reply(op)
        case .memEnd:
            let noExec = p.word(0) ?? 1, entry = p.word(1) ?? 0
            memOp = nil
            reply(op)
            if let chip, chip.secureBootStubHook != nil, let shown = shownEFuses, chip.secureBootEnabled(shown) {
                // ESP32-S3 ROM with Secure Boot on: uploaded code is not run from MEM_END.
                note("MEM_END entry ignored: Secure Boot is enabled (ESP32-S3 ROM)")
                return
            }
            if noExec == 0 && entry != 0 {
                // The uploaded code "runs": we take it to be esptool's flasher stub and emulate it.
                mode = .stub
                send(Array("OHAI".utf8))
            }
        case .eraseFlash:
            guard mode == .stub else { return unsupported(op) }
            advanceFlash(device.flash.eraseChip(timing: timing))
            connection.chipErases += 1
            reply(op)
        case .eraseRegion:
            guard mode == .stub else { return unsupported(op) }
            guard let off = p.word(0), let size = p.word(1) else { return reply(op, error: .stubBadDataLength) }
            guard off % 0x1000 == 0, size % 0x1000 == 0 else { return reply(op, error: .stubBadDataLength) }
            eraseRegion(Int(off), Int(size), op: op)
        case .readFlash:
            guard mode == .stub else { return unsupported(op) }
            guard let off = p.word(0), let len = p.word(1), let pkt = p.word(2), let inflight = p.word(3),
                  pkt > 0, pkt <= 0x10000, inflight > 0 else { return reply(op, error: .stubBadDataLength) }
            guard device.flash.read(Int(off), Int(len)) != nil else { return reply(op, error: .stubSPIFailed) }
            reply(op)
            readOp = ReadOperation(offset: Int(off), length: Int(len), packet: Int(pkt), maxInFlight: Int(inflight))
            pumpRead()
        case .runUserCode:
            guard mode == .stub else { return unsupported(op) }
            startFirmware()
        case .getSecurityInfo:
            // ROM and stub of the S3/C3 answer with 20 bytes computed from the eFuses; the ESP32
            // ROM does not know the command.
            guard let chip else { return unsupported(op) }
            reply(op, output: chip.securityInfo(shownEFuses ?? EFuseBlockWords(map: chip.efuseMap)))
        case .flashEncryptData:
            unsupported(op)
        }
    }

    private var badMessage: LoaderErrorCode { mode == .stub ? .stubBadDataLength : .invalidMessage }

    /// The ROM answers commands it does not implement with status 1 / error 0x05.
    private func unsupported(_ op: UInt8) {
        note("unsupported command 0x\(String(op, radix: 16)) in \(mode.rawValue) mode")
        reply(op, error: mode == .stub ? .stubInvalidCommand : .invalidMessage)
    }

    private func eraseRegion(_ off: Int, _ size: Int, op: UInt8) {
        let before = device.flash
        guard let t = device.flash.eraseRegion(off, size, timing: timing) else {
            return reply(op, error: .stubSPIFailed)
        }
        countErases(before)
        advanceFlash(t)
        reply(op)
    }

    private func countErases(_ before: NORFlash) {
        connection.sectorErases += device.flash.sectorErases - before.sectorErases
        connection.blockErases += device.flash.blockErases - before.blockErases
    }

    private func flashBegin(_ p: CommandPacket, compressed: Bool) {
        let op = p.opcode
        let okSize = !acceptsEncryptFlag ? p.data.count == 16 : (p.data.count == 16 || p.data.count == 20)
        guard okSize, let size = p.word(0), let blocks = p.word(1), let blockSize = p.word(2), let offset = p.word(3) else {
            return reply(op, error: badMessage)
        }
        let encrypted = acceptsEncryptFlag && (p.word(4) ?? 0) != 0
        if encrypted, let chip {
            // The S3/C3 engine in download mode: refused under DIS_DOWNLOAD_MANUAL_ENCRYPT or
            // without an XTS key purpose (ROM and stub alike).
            let cells = device.cells ?? EFuseBlockWords(map: chip.efuseMap)
            let disabled = chip.manualEncryptDisabled(shownEFuses ?? cells)
            if disabled || chip.flashEncryptionKey(cells) == nil {
                note(disabled ? "encrypted write refused: DIS_DOWNLOAD_MANUAL_ENCRYPT"
                                                       : "encrypted write refused: no XTS key in the eFuses")
                return reply(op, error: mode == .stub ? .stubNotImplemented : .invalidParameter)
            }
        } else if encrypted, flashEncryption == nil {
            // Encrypted writes need the on-chip flash encryption engine (see `flashEncryption`).
            note("encrypted write refused: no flash encryption engine installed")
            return reply(op, error: .stubNotImplemented)
        }
        _ = blocks
        let off = Int(offset), total = Int(size)
        let limit = mode == .rom ? min(flashParamsSize, device.flash.size) : device.flash.size
        guard blockSize > 0, blockSize <= 0x10000, off + total <= limit else {
            return reply(op, error: mode == .stub ? .stubBadDataLength : .invalidParameter)
        }
        var f = FlashOperation(compressed: compressed, offset: off, blockSize: Int(blockSize), total: total,
                               inflater: compressed ? Inflater() : nil, encrypted: encrypted)
        let sector = NORFlash.sectorSize
        f.eraseNext = off / sector * sector
        f.eraseEnd = total > 0 ? min(device.flash.size, (off + total + sector - 1) / sector * sector) : f.eraseNext
        if mode == .rom {
            // The ROM erases the whole announced range, sector by sector, before it answers.
            let before = device.flash
            advanceFlash(device.flash.eraseSectors(off, total, timing: timing) ?? 0)
            countErases(before)
            f.eraseNext = f.eraseEnd
        } else {
            // The stub (esp-flasher-stub, esptool's default stub) only records the range and starts
            // its first erase; the rest is erased as the data comes (see `stubErase`).
            stubErase(&f, through: f.eraseNext + 1, clock: connection.virtualSeconds)
        }
        flashOp = f
        reply(op)
    }

    /// Starts erases of the stub's erase front until it covers `[.., end)`: one 64 KiB block erase
    /// where the front is block-aligned and a whole block of the range is left, otherwise a 4 KiB
    /// sector (as the stub's `start_next_erase` does). Each erase starts once the flash is free
    /// and is not waited for here (``flashFreeAt``); a write waits for the flash before it
    /// programs. `opportunistic`: start at most one, and only if the flash is idle at `clock`
    /// (esp-flasher-stub starts one while it inflates, so a compressed stream's front runs ahead
    /// of its data while the flash has time).
    private func stubErase(_ f: inout FlashOperation, through end: Int, clock: Double, opportunistic: Bool = false) {
        let before = device.flash
        if opportunistic {
            if flashFreeAt <= clock, f.eraseNext < f.eraseEnd,
               let step = device.flash.eraseStep(at: f.eraseNext, end: f.eraseEnd, timing: timing) {
                f.eraseNext = step.next
                flashFreeAt = clock + step.seconds
                connection.flashSeconds += step.seconds
            }
        } else {
            while f.eraseNext < min(end, f.eraseEnd) {
                guard let step = device.flash.eraseStep(at: f.eraseNext, end: f.eraseEnd, timing: timing) else {
                    f.eraseNext = f.eraseEnd
                    break
                }
                f.eraseNext = step.next
                flashFreeAt = max(clock, flashFreeAt) + step.seconds
                connection.flashSeconds += step.seconds
            }
        }
        countErases(before)
    }

    private func flashData(_ p: CommandPacket, compressed: Bool) {
        let op = p.opcode
        guard let f = flashOp, f.compressed == compressed else {
            return reply(op, error: mode == .stub ? .stubNotInFlashMode : .invalidMessage)
        }
        guard let len = p.word(0), let seq = p.word(1), p.data.count == 16 + Int(len) else {
            return reply(op, error: mode == .stub ? .stubBadDataLength : .invalidMessage)
        }
        let payload = Array(p.data[16...])
        guard UInt32(LoaderProtocol.checksum(payload)) == p.checksum else {
            return reply(op, error: mode == .stub ? .stubBadChecksum : .checksum)
        }
        if mode == .stub {
            // The stub answers a block it checked at once and writes it afterwards, while the next
            // one comes in (esp-flasher-stub's post-processing; the legacy stub did the same): the
            // write's time runs on the stub's own clock, and a write error answers the next command.
            reply(op)
            stubWrite(payload, compressed: compressed)
            return
        }
        romWrite(op, payload, sequence: Int(seq), compressed: compressed)
    }

    /// The ROM loader: inflates (FLASH_DEFL_DATA), writes, then answers.
    private func romWrite(_ op: UInt8, _ payload: [UInt8], sequence seq: Int, compressed: Bool) {
        guard var f = flashOp else { return reply(op, error: .invalidMessage) }
        var toWrite: [UInt8]
        let at: Int
        if compressed {
            guard let inflater = f.inflater else { return reply(op, error: .deflate) }
            do { toWrite = try inflater.feed(payload) } catch {
                f.failed = true
                flashOp = f
                return reply(op, error: error == .adler ? .deflateAdler : .deflate)
            }
            at = f.offset + f.written
            if chip == nil {
                romWindow.append(toWrite, at: f.written)
                if inflater.finished, !f.encrypted {
                    // Recorded ROM behaviour: the last window is written out whole, so the stale
                    // bytes behind the end of the stream land on flash after the region.
                    let stale = romWindow.staleTail(streamLength: f.written + toWrite.count)
                    toWrite += stale.prefix(max(0, device.flash.size - at - toWrite.count))
                }
            }
            f.written += toWrite.count
        } else {
            at = f.offset + seq * f.blockSize
            toWrite = payload
            f.written = max(f.written, at - f.offset + toWrite.count)
        }
        flashOp = f
        if f.encrypted {
            guard let ciphertext = encryptForDownload(at, toWrite) else { return reply(op, error: .flashWrite) }
            toWrite = ciphertext
        }
        let before = device.flash.pagePrograms
        guard let t = device.flash.program(at, toWrite, timing: timing) else { return reply(op, error: .flashWrite) }
        connection.pagePrograms += device.flash.pagePrograms - before
        advanceFlash(t)
        reply(op)
    }

    /// The stub's work on a block it already answered: inflate (FLASH_DEFL_DATA), erase what the
    /// data needs, program. The stub ignores the sequence number and FLASH_BEGIN's block size:
    /// each packet's payload goes where the previous one ended (a block sent twice is written
    /// twice), and only the announced number of bytes is written (esptool pads the last block).
    private func stubWrite(_ payload: [UInt8], compressed: Bool) {
        guard var f = flashOp else { return }
        var clock = max(connection.virtualSeconds, stubFreeAt)
        defer { stubFreeAt = clock }
        var toWrite: [UInt8]
        let at = f.offset + f.written
        if compressed {
            stubErase(&f, through: 0, clock: clock, opportunistic: true)
            guard let inflater = f.inflater else { return carry(.stubInflate, f) }
            do { toWrite = try inflater.feed(payload) } catch {
                f.failed = true
                return carry(.stubInflate, f)
            }
            if f.written + toWrite.count > f.total { return carry(.stubTooMuchData, f) }
        } else {
            toWrite = Array(payload.prefix(max(0, f.total - f.written)))
        }
        f.written += toWrite.count
        stubErase(&f, through: at + toWrite.count, clock: clock)
        flashOp = f
        if f.encrypted {
            guard let ciphertext = encryptForDownload(at, toWrite) else { return carry(.stubSPIFailed, f) }
            toWrite = ciphertext
        }
        let before = device.flash.pagePrograms
        guard let t = device.flash.program(at, toWrite, timing: timing) else { return carry(.stubSPIFailed, f) }
        connection.pagePrograms += device.flash.pagePrograms - before
        connection.flashSeconds += t
        // The write waits for the flash (its own erases, one started earlier) before it programs.
        clock = max(clock, flashFreeAt) + t
        flashFreeAt = clock
    }

    private func carry(_ error: LoaderErrorCode, _ f: FlashOperation) {
        flashOp = f
        carriedError = error
        note("stub write failed after its reply (\(error)): answered to the next command")
    }

    /// Ciphertext of an encrypted write (the S3/C3 XTS engine or the ESP32's), nil when refused.
    private func encryptForDownload(_ at: Int, _ plaintext: [UInt8]) -> [UInt8]? {
        let ciphertext: [UInt8]?
        if let chip {
            ciphertext = chip.encryptForDownload(device.cells ?? EFuseBlockWords(map: chip.efuseMap), address: at, plaintext: plaintext)
        } else {
            ciphertext = flashEncryption?(device.efuses, at, plaintext)
        }
        guard let ciphertext, ciphertext.count == plaintext.count else { return nil }
        return ciphertext
    }

    private func flashEnd(_ p: CommandPacket) {
        let op = p.opcode
        let runUserCode = (p.word(0) ?? 0) != 0
        if mode == .stub {
            if let f = flashOp, f.compressed, !(f.inflater?.finished ?? true) {
                flashOp = nil
                return reply(op, error: .stubNotEnoughData)
            }
            flashOp = nil
            reply(op)
            if !runUserCode { resetToROMKeepingOutput() }
            return
        }
        flashOp = nil
        reply(op)
        // The ROM leaves download mode: it boots from flash (flag 1) or reboots (flag 0).
        startFirmware()
    }

    /// A reset with IO0 high (EN pulse on the auto-reset circuit): the chip boots from flash and
    /// runs ``firmware``; returns what it printed.
    public func resetIntoFirmware() -> [UInt8] {
        resetToROM()
        output.removeAll()
        startFirmware()
        let out = output
        output.removeAll()
        return out
    }

    /// Leaves the loader and runs ``firmware`` (its console output follows the last reply).
    private func startFirmware() {
        mode = .userCode
        guard let firmware else { return }
        let run = firmware(&device)
        efuse = EFuseController(layout: .esp32, array: device.efuses)
        if let chip {
            fieldEFuse = FieldMapController(map: chip.efuseMap, registers: chip.efuseRegisters,
                                            cells: device.cells ?? EFuseBlockWords(map: chip.efuseMap))
        }
        efusesDirty = true
        advance(run.seconds)
        output += run.console
        connection.firmwareRuns += 1
        connection.firmwareSeconds += run.seconds
        connection.sectorErases += run.sectorErases
        connection.pagePrograms += run.pagePrograms
        connection.efusePrograms += run.efusePrograms
    }

    private func resetToROMKeepingOutput() {
        let saved = output
        resetToROM()
        output = saved
    }

    private func md5(_ p: CommandPacket) {
        let op = p.opcode
        guard let addr = p.word(0), let size = p.word(1) else { return reply(op, error: badMessage) }
        guard let data = device.flash.read(Int(addr), Int(size)) else {
            return reply(op, error: mode == .stub ? .stubSPIFailed : .flashRead)
        }
        advanceFlash(timing.flashRead(bytes: data.count))
        let digest = Array(Insecure.MD5.hash(data: data))
        if mode == .stub {
            reply(op, output: digest)
        } else {
            reply(op, output: Array(digest.hexString.utf8))
        }
    }

    private func pumpRead() {
        guard var r = readOp else { return }
        while r.sent < r.length, (r.sent - r.acked) < r.packet * r.maxInFlight {
            let n = min(r.packet, r.length - r.sent)
            let chunk = device.flash.read(r.offset + r.sent, n) ?? []
            advanceFlash(timing.flashRead(bytes: n))
            r.md5.update(data: chunk)
            r.sent += n
            send(chunk)
        }
        if r.sent >= r.length, r.acked >= r.length {
            send(Array(r.md5.finalize()))
            readOp = nil
        } else {
            readOp = r
        }
    }
}
